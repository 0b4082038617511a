"""Benchmark the devices list at fleet scale: content search, and what open browsers cost.

Fills a database (PostgreSQL, and with --sqlite also a SQLite file) with `--configs`
configs of about 1 KB (bench/run.py's sample), starts `iotsupport serve`, and measures
over HTTP (with Brotli, as a browser asks):

1. the cost of open browsers. A background load runs throughout: devices fetching their
   config (`--device-rate` per second, each a check-in the list must show) and an admin
   saving a config now and then (`--edit-rate`). Three phases of `--seconds` each:
   the background alone; plus `--browsers` lists that, after loading once, ask every
   `--poll` seconds what changed (what the web UI does); plus the same browsers
   downloading the whole list every `--poll` seconds instead (the alternative).
   For each: the server's CPU time per second of wall time (its processes, from /proc),
   the requests' latency, and the rows and compressed bytes per poll;
2. one request at a time: the whole list, a content search (`?q=`) that matches one
   config, one that matches every config, none, a non-ASCII one, and a poll of the
   changes since a cursor (`?since=`; it still holds the background load's last seconds).

    .venv/bin/python bench/listing.py [--configs 10000] [--browsers 20] [--seconds 30]
"""

from __future__ import annotations

import os
import statistics
import tempfile
import threading
import time
import typing as t
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path

import httpx
from run import TOKENS
from run import Server
from run import bench_arguments
from run import fill
from run import recreate_database
from run import serve_options
from sqlalchemy import create_engine

HERE = Path(__file__).resolve().parent
BROWSER_HEADERS = {"Accept-Encoding": "br, gzip", "Accept": "application/json"}
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(server: Server) -> float:
    """User and system CPU time of the server's processes so far."""
    total = 0.0
    for pid in [server.process.pid, *server.worker_pids()]:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return total


def timed(client: httpx.Client, path: str) -> tuple[float, httpx.Response]:
    start = time.perf_counter()
    response = client.get(path)
    response.raise_for_status()
    return (time.perf_counter() - start) * 1000, response


def percentile(values: list[float], share: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def single_requests(base: str, rounds: int) -> None:
    """Each read alone, `rounds` times: p50 and max in ms, rows, bytes as sent."""
    with httpx.Client(base_url=base, headers=BROWSER_HEADERS, timeout=60) as client:
        cursor = client.get("/api/configs").json()["cursor"]
        reads = {
            "whole list": "/api/configs",
            "search, 1 match (q=bench_00042)": "/api/configs?q=sensor.bench_00042",
            "search, every config (q=homelab-iot)": "/api/configs?q=HOMELAB-IOT",
            "search, no match": "/api/configs?q=no-such-text",
            "search, non-ASCII (q=küche)": "/api/configs?q=k%C3%BCche",
            "changes since a cursor": f"/api/configs?since={cursor}",
        }
        print(f"{'read':<40} {'p50 ms':>8} {'max ms':>8} {'rows':>6} {'KB sent':>8}")
        for label, path in reads.items():
            times = []
            for _ in range(rounds):
                elapsed, response = timed(client, path)
                times.append(elapsed)
            rows = len(response.json()["configs"])
            sent = response.num_bytes_downloaded / 1024
            print(
                f"{label:<40} {statistics.median(times):>8.1f} {max(times):>8.1f} "
                f"{rows:>6} {sent:>8.1f}"
            )


@dataclass
class Tally:
    """What the browsers of a phase saw."""

    latencies: list[float] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)
    kilobytes: list[float] = field(default_factory=list)
    errors: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    loaded: int = 0  # browsers that have their first list
    recording: threading.Event = field(default_factory=threading.Event)

    def add(self, elapsed: float, response: httpx.Response) -> None:
        rows = len(response.json()["configs"])
        if not self.recording.is_set():
            return
        with self.lock:
            self.latencies.append(elapsed)
            self.rows.append(rows)
            self.kilobytes.append(response.num_bytes_downloaded / 1024)


def background(base: str, stop: threading.Event, device_rate: float, edit_rate: float) -> None:
    """Devices fetching their configs and an admin saving one now and then, paced."""
    macs = list(TOKENS)

    def devices() -> None:
        with httpx.Client(base_url=base, timeout=30) as client:
            index = 0
            while not stop.wait(1 / device_rate):
                mac = macs[index % len(macs)]
                index += 7919  # a prime: every device in turn, not in MAC order
                client.get(
                    f"/api/configs/{mac}.json", headers={"Authorization": f"Bearer {TOKENS[mac]}"}
                )

    def admin() -> None:
        with httpx.Client(base_url=base, timeout=30) as client:
            edit = 0
            while not stop.wait(1 / edit_rate):
                edit += 1
                config_id = 1 + (edit * 104729) % len(macs)
                body = {"content": f'{{"deviceName": "Edited {edit}", "mqttBroker": "10.0.0.5"}}'}
                client.put(f"/api/configs/{config_id}", json=body)

    for work in (devices, admin):
        threading.Thread(target=work, daemon=True).start()


def browser(base: str, stop: threading.Event, tally: Tally, poll: float, whole: bool) -> None:
    """One open devices list: loads the list, then every `poll` s asks what changed (or,
    `whole`, downloads the whole list again)."""
    with httpx.Client(base_url=base, headers=BROWSER_HEADERS, timeout=60) as client:
        cursor = client.get("/api/configs").json()["cursor"]
        with tally.lock:
            tally.loaded += 1
        # Browsers opened at different moments: their polls are spread over the period.
        if stop.wait(poll * (hash(threading.current_thread().name) % 1000) / 1000):
            return
        while not stop.is_set():
            started = time.monotonic()
            path = "/api/configs" if whole else f"/api/configs?since={cursor}"
            try:
                elapsed, response = timed(client, path)
            except httpx.HTTPError:
                with tally.lock:
                    tally.errors += tally.recording.is_set()
            else:
                tally.add(elapsed, response)
                cursor = response.json()["cursor"]
            stop.wait(max(0.0, poll - (time.monotonic() - started)))


def phase(
    server: Server, base: str, label: str, seconds: float, browsers: int, poll: float, whole: bool
) -> None:
    stop = threading.Event()
    tally = Tally()
    threads = [
        threading.Thread(
            target=browser, args=(base, stop, tally, poll, whole), name=f"browser-{index}"
        )
        for index in range(browsers)
    ]
    for thread in threads:
        thread.start()
    # Steady state only: every browser has its first list, and has polled once since.
    while tally.loaded < browsers:
        time.sleep(0.1)
    time.sleep(poll)
    tally.recording.set()
    before, start = cpu_seconds(server), time.monotonic()
    time.sleep(seconds)
    used, wall = cpu_seconds(server) - before, time.monotonic() - start
    tally.recording.clear()
    stop.set()
    for thread in threads:
        thread.join(60)
    polls = len(tally.latencies)
    print(
        f"{label:<44} {used / wall:>6.3f} {polls / wall:>7.1f} "
        f"{percentile(tally.latencies, 0.5):>7.1f} {percentile(tally.latencies, 0.99):>7.1f} "
        f"{statistics.mean(tally.rows) if polls else 0:>8.1f} "
        f"{statistics.mean(tally.kilobytes) if polls else 0:>8.1f} {tally.errors:>6}"
    )


def browsers_cost(server: Server, base: str, args: t.Any) -> None:
    stop = threading.Event()
    background(base, stop, args.device_rate, args.edit_rate)
    print(
        f"background: {args.device_rate:g} device fetches/s, {args.edit_rate:g} admin saves/s; "
        f"{args.browsers} browsers, one request each every {args.poll:g} s; {args.seconds:g} s "
        "per phase"
    )
    print(
        f"{'phase':<44} {'CPU s/s':>6} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'rows/req':>8} {'KB/req':>8} {'errors':>6}"
    )
    try:
        phase(server, base, "background only", args.seconds, 0, args.poll, False)
        phase(server, base, "+ browsers asking what changed (?since=)", args.seconds,
              args.browsers, args.poll, False)  # fmt: skip
        phase(server, base, "+ browsers downloading the whole list", args.seconds,
              args.browsers, args.poll, True)  # fmt: skip
    finally:
        stop.set()


def main() -> None:
    parser = bench_arguments(__doc__, "iotsupport_bench_list", 3298)
    parser.add_argument("--configs", type=int, default=10_000)
    parser.add_argument("--browsers", type=int, default=20)
    parser.add_argument("--poll", type=float, default=5.0, help="seconds (the web UI's)")
    parser.add_argument("--seconds", type=float, default=30.0, help="per phase")
    parser.add_argument("--device-rate", type=float, default=20.0)
    parser.add_argument("--edit-rate", type=float, default=0.2)
    parser.add_argument("--rounds", type=int, default=5, help="of each single request")
    parser.add_argument("--sqlite", action="store_true", help="also time the reads on SQLite")
    parser.add_argument("--reads-only", action="store_true", help="skip the browser phases")
    args = parser.parse_args()
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    log = results / "listing-server.log"
    options = serve_options(args)
    base = f"http://127.0.0.1:{args.port}"

    print(f"== PostgreSQL, {args.configs} configs ==")
    url = recreate_database(args.admin_url, args.database, args.configs)
    server = Server(url, args.port, options, log)
    try:
        if args.reads_only:
            time.sleep(15)  # the fill is older than the changes' overlap
        else:
            browsers_cost(server, base, args)
        # After the phases, so "changes since" holds what the overlap keeps of the
        # background load (configs/listing.py), as a browser's poll does.
        single_requests(base, args.rounds)
        server.print_memory("VmHWM", "peak RSS (VmHWM)")
    finally:
        server.stop()

    if args.sqlite:
        print(f"\n== SQLite, {args.configs} configs ==")
        with tempfile.TemporaryDirectory() as folder:
            sqlite_url = f"sqlite:///{folder}/bench.db"
            engine = create_engine(sqlite_url)
            fill(engine, args.configs)
            engine.dispose()
            server = Server(sqlite_url, args.port, options, log)
            try:
                time.sleep(15)  # the fill is older than the changes' overlap
                single_requests(base, args.rounds)
            finally:
                server.stop()


if __name__ == "__main__":
    main()
