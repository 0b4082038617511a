"""Device fetches while slow clients hold connections, this code beside a baseline.

Starts `iotsupport serve` (SQLite in a temp folder, WORKERS=2, THREADS=4 by default)
with a few hundred configs, then for each server measures the device fetch
(`GET /api/configs/<mac>.json`, PROBES keep-alive clients, one request every few ms
each, 2 s timeout) first quiet, then while another process holds SLOW connections
that sent a `PUT /api/configs/1` head and 5 bytes of its body and then trickle a
byte every 2 s (spread over the 2 s), plus IDLE keep-alive connections that
made one request and say nothing. Phases alternate quiet/loaded ROUNDS times; each
line is one phase.

    .venv/bin/python bench/slow_clients.py --baseline main
    .venv/bin/python bench/slow_clients.py --slow 1000 --idle 1000 --seconds 10

The machine's other load shows in both columns alike: compare within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from dataclasses import replace
from pathlib import Path

from baseline import source_of

HERE = Path(__file__).resolve().parent
CONFIGS = 300


@dataclass(frozen=True)
class Phase:
    label: str
    answered: int
    timeouts: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    server_cpu_s: float = 0.0  # the workers' CPU time during the phase


class Server:
    """`iotsupport serve` of this checkout or of `source` (bench/baseline.py)."""

    def __init__(self, url: str, port: int, options: list[str], log: Path, source: Path | None):
        env = {**os.environ, "DATABASE_URL": url, "LOG_LEVEL": "WARNING"}
        env.pop("MQTT_URL", None)
        if source is not None:
            env["PYTHONPATH"] = str(source / "src")  # ahead of the editable install
        command = [str(Path(sys.executable).with_name("iotsupport")), "serve", "--port", str(port)]
        self.process = subprocess.Popen(
            [*command, *options],
            env=env,
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 120  # a loaded machine starts workers slowly
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2).close()
                return
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise SystemExit(f"server did not come up; see {log}")

    def stop(self) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def mac(index: int) -> str:
    return f"02:be:00:00:{index // 256:02x}:{index % 256:02x}"


def create_configs(port: int) -> None:
    for index in range(CONFIGS):
        body = json.dumps({"mac_address": mac(index), "content": {"n": index, "pad": "x" * 800}})
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/configs",
            data=body.encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        try:
            urllib.request.urlopen(request, timeout=30).close()
        except urllib.error.HTTPError as error:
            raise SystemExit(f"creating a config: {error.code} {error.read()[:200]!r}") from None


def probe(port: int, seconds: float, probes: int, label: str) -> Phase:
    latencies: list[float] = []
    timeouts = [0]
    lock = threading.Lock()
    end = time.monotonic() + seconds

    def client(which: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        index = which
        while time.monotonic() < end:
            index = (index + probes) % CONFIGS
            begun = time.perf_counter()
            try:
                connection.request("GET", f"/api/configs/{mac(index)}.json")
                response = connection.getresponse()
                response.read()
                assert response.status == 200, response.status
                with lock:
                    latencies.append(time.perf_counter() - begun)
            except (TimeoutError, OSError, http.client.HTTPException):
                with lock:
                    timeouts[0] += 1
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            time.sleep(0.005)
        connection.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(probes)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if not latencies:
        return Phase(label, 0, timeouts[0], float("nan"), float("nan"), float("nan"))
    ordered = sorted(latencies)
    return Phase(
        label,
        len(ordered),
        timeouts[0],
        statistics.median(ordered) * 1000,
        ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
        ordered[-1] * 1000,
    )


# --- the slow clients, in their own process (`--hold PORT SLOW IDLE`) -----------------


async def hold(port: int, slow: int, idle: int) -> None:
    writers: list[asyncio.StreamWriter] = []
    slow_writers: list[asyncio.StreamWriter] = []
    for _ in range(idle):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /api/health/live HTTP/1.1\r\nHost: localhost\r\n\r\n")
        await writer.drain()
        await reader.readuntil(b"\r\n\r\n")  # the head; the small body follows
        writers.append(writer)
    for _ in range(slow):
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"PUT /api/configs/1 HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100000\r\n\r\n{"con'
        )
        slow_writers.append(writer)
    print(f"holding {len(slow_writers)} slow, {len(writers)} idle", flush=True)
    # Each connection's byte every 2 s, spread over the 2 s in 100 groups (not all at once).
    group = max(1, len(slow_writers) // 100)
    while True:
        for start in range(0, len(slow_writers), group):
            for writer in slow_writers[start : start + group]:
                if not writer.is_closing():
                    writer.write(b"x")
            await asyncio.sleep(0.02)


def start_holder(port: int, slow: int, idle: int) -> subprocess.Popen[str]:
    holder = subprocess.Popen(
        [sys.executable, __file__, "--hold", str(port), str(slow), str(idle)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None
    line = holder.stdout.readline()
    if not line.startswith("holding"):
        holder.kill()
        raise SystemExit("the slow clients could not connect")
    time.sleep(2.0)  # every slow body has begun to trickle
    return holder


def cpu_seconds(parent: int) -> float:
    """User and system CPU time of `parent`'s child processes (the workers)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == parent:
                total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def timed_probe(server: Server, port: int, args: argparse.Namespace, label: str) -> Phase:
    before = cpu_seconds(server.process.pid)
    phase = probe(port, args.seconds, args.probes, label)
    return replace(phase, server_cpu_s=cpu_seconds(server.process.pid) - before)


def measure(server_label: str, server: Server, port: int, args: argparse.Namespace) -> list[Phase]:
    phases = []
    for round_ in range(args.rounds):
        phases.append(timed_probe(server, port, args, f"{server_label} quiet {round_}"))
        holder = start_holder(port, args.slow, args.idle)
        try:
            label = f"{server_label} loaded {round_}"
            phases.append(timed_probe(server, port, args, label))
        finally:
            holder.kill()
            holder.wait()
        time.sleep(2.0)
    return phases


def throughput(port: int, seconds: float) -> str:
    """wrk at 32 connections on one device's fetch (quiet): requests/s and p99."""
    if shutil.which("wrk") is None:
        return "wrk not installed"
    out = subprocess.run(
        ["wrk", "-t2", "-c32", f"-d{seconds:g}s", "--latency", "--timeout", "2s"]
        + [f"http://127.0.0.1:{port}/api/configs/{mac(7)}.json"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rate = next(line.split()[1] for line in out.splitlines() if "Requests/sec" in line)
    p99 = next(line.split()[1] for line in out.splitlines() if line.strip().startswith("99%"))
    return f"{float(rate):.0f} req/s, p99 {p99} (wrk, 32 connections)"


def print_phases(phases: list[Phase]) -> None:
    print(
        f"{'phase':<22} {'answered':>8} {'timeouts':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}"
    )
    for phase in phases:
        print(
            f"{phase.label:<22} {phase.answered:>8} {phase.timeouts:>8} "
            f"{phase.p50_ms:>8.2f} {phase.p99_ms:>8.2f} {phase.max_ms:>8.1f} "
            f"{phase.server_cpu_s:>6.2f}"
        )


def summary(label: str, phases: list[Phase]) -> None:
    quiet = [p.p99_ms for p in phases if " quiet " in p.label]
    loaded = [p.p99_ms for p in phases if " loaded " in p.label]
    lost = sum(p.timeouts for p in phases if " loaded " in p.label)
    print(
        f"{label}: p99 quiet {statistics.median(quiet):.2f} ms, loaded "
        f"{statistics.median(loaded):.2f} ms (median over rounds), timeouts loaded {lost}"
    )


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--hold":
        asyncio.run(hold(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", help="also measure this revision (e.g. main)")
    parser.add_argument("--slow", type=int, default=1000)
    parser.add_argument("--idle", type=int, default=1000)
    parser.add_argument("--probes", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="iotsupport-slow-bench-"))
    options = ["--workers", str(args.workers), "--threads", str(args.threads)]
    results: list[tuple[str, list[Phase]]] = []
    rates: list[tuple[str, str]] = []
    servers: list[tuple[str, Path | None]] = [("this", None)]
    if args.baseline:
        servers.insert(0, ("baseline", source_of(args.baseline)))
    for label, source in servers:
        port = free_port()
        # A database per server, made by that server's own migrations (same data).
        url = f"sqlite:///{folder / f'{label}.sqlite'}"
        env = {"DATABASE_URL": url, "PATH": "/usr/bin:/bin"}
        if source is not None:
            env["PYTHONPATH"] = str(source / "src")
        subprocess.run(
            [str(Path(sys.executable).with_name("iotsupport")), "upgrade-db"],
            env=env,
            check=True,
            capture_output=True,
        )
        print(f"-- {label} ({source or 'this checkout'}) on port {port}", flush=True)
        server = Server(url, port, options, folder / f"{label}.log", source=source)
        try:
            create_configs(port)
            time.sleep(3.0)  # every worker's device cache has the new configs
            phases = measure(label, server, port, args)
            rates.append((label, throughput(port, args.seconds)))
        finally:
            server.stop()
        print_phases(phases)
        results.append((label, phases))
    print(f"\n{args.slow} slow-body + {args.idle} idle connections; {args.probes} probes")
    for label, phases in results:
        summary(label, phases)
    for label, rate in rates:
        print(f"{label}: device fetch throughput, quiet: {rate}")


if __name__ == "__main__":
    main()
