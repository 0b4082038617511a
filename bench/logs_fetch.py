"""Device logs beside device fetches, as production runs them (part of bench/logs.py).

Starts `iotsupport serve` on a fresh PostgreSQL database of `--devices` devices with
tokens (bench/run.py's setup), measures the device fetch with wrk alone, then again
while the devices send `--lines-per-second` log lines over HTTP (each device a batch
every 10 s, as a firmware's buffered vprintf hook would), and prints fetch req/s and
p99 both ways, the lines the server stored per second meanwhile, and the workers' peak
memory.

    .venv/bin/python bench/logs_fetch.py --lines-per-second 5000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import threading
import time
from pathlib import Path

from run import TOKENS
from run import Server
from run import print_table
from run import recreate_database
from run import run_wrk
from run import write_path_files
from sqlalchemy import create_engine
from sqlalchemy import text

from iotsupport.simulator.http import HttpPool

LINE = "I (123456) app: status: heap 123456 free, rssi -61 dBm, temperature 21.4 C"


async def send_logs(port: int, rate: float, stop: threading.Event, sent: list[int]) -> None:
    """Each device a batch every 10 s; `rate` lines/s over the fleet."""
    macs = list(TOKENS)
    per_batch = max(1, round(rate * 10 / len(macs)))
    body = ("\n".join([LINE] * per_batch) + "\n").encode()
    pool = HttpPool(f"http://127.0.0.1:{port}", 32)
    interval = 10.0 / len(macs)
    started = time.monotonic()
    index = 0

    async def one(mac: str) -> None:
        headers = {"Authorization": f"Bearer {TOKENS[mac]}", "Content-Type": "text/plain"}
        answer = await pool.request("POST", "/api/device/logs", headers, body)
        if answer.status == 202:
            sent[0] += per_batch

    tasks: set[asyncio.Task[None]] = set()
    while not stop.is_set():
        due = started + index * interval
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        task = asyncio.create_task(one(macs[index % len(macs)]))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        index += 1
    await asyncio.gather(*tasks, return_exceptions=True)
    await pool.close()


def stored_lines(url: str) -> int:
    engine = create_engine(url)
    with engine.connect() as connection:
        count = int(connection.execute(text("SELECT count(*) FROM device_logs")).scalar() or 0)
    engine.dispose()
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--lines-per-second", type=float, default=5000)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--port", type=int, default=3291)
    parser.add_argument("--workers", default="2")
    parser.add_argument("--threads", default="4")
    parser.add_argument(
        "--database-url",
        default=os.environ.get(
            "TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
        ),
    )
    args = parser.parse_args()
    name = "iotsupport_bench_logs_fetch"
    url = recreate_database(args.database_url, name, args.devices)
    folder = Path(tempfile.mkdtemp())
    paths = write_path_files(url, folder)
    options = [f"--workers={args.workers}", f"--threads={args.threads}"]
    server = Server(url, args.port, options, folder / "serve.log")
    try:
        run_wrk("warm-up", args.port, paths.device, 8, 2, 200)
        alone = run_wrk(
            "device fetch, no logs", args.port, paths.device, args.connections, args.seconds, 200
        )
        stop = threading.Event()
        sent = [0]
        sender = threading.Thread(
            target=lambda: asyncio.run(send_logs(args.port, args.lines_per_second, stop, sent))
        )
        before = stored_lines(url)
        started = time.monotonic()
        sender.start()
        time.sleep(3)  # the senders at their pace
        with_logs = run_wrk(
            f"device fetch, {args.lines_per_second:.0f} log lines/s",
            args.port,
            paths.device,
            args.connections,
            args.seconds,
            200,
        )
        stop.set()
        sender.join()
        elapsed = time.monotonic() - started
        time.sleep(4)  # the last batches written (CHECKIN_FLUSH_SECONDS)
        stored = stored_lines(url) - before
        print_table([alone, with_logs])
        print(
            f"log lines: sent {sent[0]:,} in {elapsed:.1f} s ({sent[0] / elapsed:,.0f}/s), "
            f"stored {stored:,} ({stored / elapsed:,.0f}/s)"
        )
        change = (with_logs.p99_ms / alone.p99_ms - 1) * 100 if alone.p99_ms else 0.0
        print(f"fetch p99 with logs: {change:+.0f} %")
        server.print_memory("VmHWM", "peak memory")
    finally:
        server.stop()
        admin = create_engine(args.database_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
