"""Benchmark device queries (`GET /api/configs?where=`) over a fleet, on PostgreSQL and
SQLite, side by side with the plain text search (`?q=`) as the baseline.

Fills each database with `--configs` configs of about 1 KB (bench/run.py's sample; every
100th has display.brightness 90, the others 70), starts `iotsupport serve`, and times
each read alone over HTTP, `--rounds` times: p50 and max in ms, and the rows answered.
The goal: a content query under 200 ms at 10,000 configs on both databases.

    .venv/bin/python bench/query.py [--configs 10000] [--rounds 7]
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import httpx
from run import Server
from run import bench_arguments
from run import fill
from run import recreate_database
from run import serve_options
from sqlalchemy import Engine
from sqlalchemy import create_engine
from sqlalchemy import text

HERE = Path(__file__).resolve().parent
HEADERS = {"Accept-Encoding": "br, gzip", "Accept": "application/json"}
READS = {
    "baseline: q, 1 match (q=sensor.bench_00042)": {"q": "sensor.bench_00042"},
    "baseline: q, no match (q=old.local)": {"q": "old.local"},
    "baseline: q, every config (q=homelab-iot)": {"q": "homelab-iot"},
    "where display.brightness > 80 (1%)": {"where": "display.brightness > 80"},
    'where mqtt.broker == "old.local" (none)': {"where": 'mqtt.broker == "old.local"'},
    "where brightness > 80 in two spellings": {
        "where": "display.brightness > 80 or led.brightness > 80"
    },
    'where sensors[*].type == "bme280" (none)': {"where": 'sensors[*].type == "bme280"'},
    "where name == Sensor 0004* and exists(wifi)": {
        "where": 'name == "Sensor 0004*" and exists(wifi)'
    },
    'where sensors[*].type == "sht40" (every config)': {"where": 'sensors[*].type == "sht40"'},
}


def brighten(engine: Engine) -> None:
    """Every 100th config: brightness 90 (so `> 80` picks 1% of the fleet)."""
    with engine.begin() as connection:
        connection.execute(
            text(
                "UPDATE device_configs SET content = REPLACE(content, "
                "'\"brightness\": 70', '\"brightness\": 90') WHERE id % 100 = 0"
            )
        )


def single_reads(base: str, rounds: int) -> None:
    with httpx.Client(base_url=base, headers=HEADERS, timeout=120) as client:
        print(f"{'read':<52} {'p50 ms':>8} {'max ms':>8} {'rows':>7}")
        for name, params in READS.items():
            times = []
            rows = 0
            for _ in range(rounds):
                start = time.perf_counter()
                response = client.get("/api/configs", params=params)
                times.append((time.perf_counter() - start) * 1000)
                response.raise_for_status()
                rows = response.json()["count"]
            print(f"{name:<52} {statistics.median(times):>8.1f} {max(times):>8.1f} {rows:>7}")


def main() -> None:
    parser = bench_arguments(__doc__, "iotsupport_bench_query", 3311)
    parser.add_argument("--configs", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    log = results / "query-server.log"
    options = serve_options(args)
    base = f"http://127.0.0.1:{args.port}"

    print(f"== PostgreSQL, {args.configs} configs ==")
    url = recreate_database(args.admin_url, args.database, args.configs)
    engine = create_engine(url)
    brighten(engine)
    engine.dispose()
    server = Server(url, args.port, options, log)
    try:
        single_reads(base, args.rounds)
    finally:
        server.stop()

    print(f"\n== SQLite, {args.configs} configs ==")
    with tempfile.TemporaryDirectory() as folder:
        sqlite_url = f"sqlite:///{folder}/bench.db"
        engine = create_engine(sqlite_url)
        fill(engine, args.configs)
        brighten(engine)
        engine.dispose()
        server = Server(sqlite_url, args.port, options, log)
        try:
            single_reads(base, args.rounds)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
