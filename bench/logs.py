"""Benchmark device logs on PostgreSQL (and SQLite): the writer, the reads, retention.

    .venv/bin/python bench/logs.py --rows 10000000          # PostgreSQL (TEST_DATABASE_URL)
    .venv/bin/python bench/logs.py --rows 1000000 --sqlite  # SQLite, a temp file

Per database, in a fresh database of its own:
1. ingest: the worker's real writer (the intake's `LogLines` kind, batched and flushed as
   under `iotsupport serve`) writing lines of `--devices` devices; lines/s of one writer,
   and the process's peak memory (the worker memory goal is 150 MB);
2. a table of `--rows` lines over `--days` days (one partition a day on PostgreSQL), made
   in SQL (generate_series: the writer's rate is figure 1), messages of ESP-IDF firmware;
3. newest 100 lines of one device; a text search over the fleet's last 24 h; a level
   filter; the devices with errors in the last hour (each the median of 5 runs, warm);
4. retention: dropping the oldest day (a partition on PostgreSQL; rows on SQLite).

The numbers depend on the machine: run it beside a baseline (`git stash`), not alone.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import time
import typing as t
import uuid
from datetime import UTC
from datetime import datetime
from datetime import timedelta

from prometheus_client import CollectorRegistry
from sqlalchemy import Engine
from sqlalchemy import create_engine
from sqlalchemy import insert
from sqlalchemy import make_url
from sqlalchemy import text
from sqlalchemy.orm import sessionmaker

from iotsupport import migrate
from iotsupport.configs.tables import DeviceConfig
from iotsupport.db.base import utcnow
from iotsupport.device_logs.intake import LogLines
from iotsupport.device_logs.parsing import parse_text_line
from iotsupport.device_logs.query import Selection
from iotsupport.device_logs.query import devices_at_level
from iotsupport.device_logs.query import read
from iotsupport.device_logs.storage import drop_before
from iotsupport.device_logs.storage import ensure_partition
from iotsupport.device_logs.storage import partition_name
from iotsupport.device_reports.intake import ReportIntake

MESSAGES = [
    "status: heap 123456 free, rssi -61 dBm",
    "MQTT_EVENT_DATA topic=iotsupport/devices/+/desired",
    "temperature 21.4 C, humidity 44 %",
    "config up to date (etag 9f3a71c2)",
    "beacon timeout, rssi -88 dBm",
    "Disconnected, reason: 201 (NO_AP_FOUND), retrying",
    "sensor i2c read failed: ESP_ERR_TIMEOUT",
]
TAGS = ["app", "mqtt_client", "sensor", "app", "wifi", "wifi", "app"]


def median_ms(action: t.Callable[[], object], runs: int = 5) -> float:
    action()  # warm
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def fresh_postgres(admin_url: str) -> tuple[str, Engine]:
    name = f"iotsupport_bench_logs_{uuid.uuid4().hex[:6]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    return name, create_engine(url, pool_size=4)


def add_devices(engine: Engine, count: int) -> list[int]:
    migrate.upgrade(engine)
    now = utcnow()
    rows = [
        {
            "mac_address": "02:10:" + ":".join(f"{(n >> s) & 0xFF:02x}" for s in (24, 16, 8, 0)),
            "content": "{}",
            "version": 1,
            "etag": f"{n:032x}",
            "created_at": now,
            "updated_at": now,
        }
        for n in range(count)
    ]
    with engine.begin() as connection:
        connection.execute(insert(DeviceConfig), rows)
        ids = connection.execute(text("SELECT id FROM device_configs ORDER BY id")).scalars()
        return list(ids)


def ingest(engine: Engine, ids: list[int], seconds: float) -> tuple[float, int]:
    """The worker's writer at full speed: lines/s, and lines written."""
    kind = LogLines(CollectorRegistry(), per_minute=10**9, queue_max=10**9)
    intake = ReportIntake(sessionmaker(engine), interval=3600)
    intake.add_kind(kind)
    parsed = [
        parse_text_line(f"I (1234) {tag}: {m}") for tag, m in zip(TAGS, MESSAGES, strict=True)
    ]
    lines = [line for line in parsed if line is not None]
    written = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        for config_id in ids:  # 10 lines a device a round, 5,000 lines a flush at most
            batch = kind.admit(config_id, (lines * 2)[:10], verified=True)
            intake.record(kind, config_id, batch)
            written += 10
            if written % 5000 == 0:
                intake.flush()
        intake.flush()
    elapsed = time.perf_counter() - started
    return written / elapsed, written


def fill_postgres(engine: Engine, ids: list[int], rows: int, days: int) -> float:
    """Each past day filled as a table of its own, then attached as that day's partition
    (its indexes built in one go, as a restore would); today's lines go in directly."""
    now = datetime.now(UTC)
    started = time.perf_counter()
    per_day = rows // days
    messages = "ARRAY[" + ",".join(f"'{m}'" for m in MESSAGES) + "]"
    tags = "ARRAY[" + ",".join(f"'{tag}'" for tag in TAGS) + "]"
    select = (
        "SELECT :first + (g % :devices), :end - (g * :step) * interval '1 millisecond', "
        "g, CASE WHEN g % 50 = 0 THEN 1 WHEN g % 13 = 0 THEN 2 ELSE 3 END, "
        f"({tags})[1 + g % 7], ({messages})[1 + g % 7] || ' #' || g, '1.0.0', true "
        "FROM generate_series(1, :count) AS g"
    )
    columns = "(config_id, received_at, uptime_ms, level, tag, message, firmware_version, verified)"
    for back in range(days):
        end = now - timedelta(days=back)
        day = end.date()
        values = {
            "first": ids[0],
            "devices": len(ids),
            "end": end,
            "step": min(
                86_400_000 / per_day,
                (end - datetime(day.year, day.month, day.day, tzinfo=UTC)).total_seconds()
                * 1000
                / per_day,
            ),
            "count": per_day,
        }
        with engine.begin() as connection:
            connection.exec_driver_sql("SET maintenance_work_mem = '256MB'")
            if back == 0:
                ensure_partition(connection, day)
                connection.execute(text(f"INSERT INTO device_logs {columns} {select}"), values)
                continue
            name = partition_name(day)
            connection.exec_driver_sql(
                f"CREATE TABLE {name} (LIKE device_logs INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
            )
            connection.execute(text(f"INSERT INTO {name} {columns} {select}"), values)
            following = day + timedelta(days=1)
            connection.exec_driver_sql(
                f"ALTER TABLE device_logs ATTACH PARTITION {name} FOR VALUES FROM "
                f"('{day.isoformat()}T00:00:00+00') TO ('{following.isoformat()}T00:00:00+00')"
            )
    with engine.begin() as connection:
        connection.exec_driver_sql("ANALYZE device_logs")
    return time.perf_counter() - started


def fill_sqlite(engine: Engine, ids: list[int], rows: int, days: int) -> float:
    now = datetime.now(UTC)
    started = time.perf_counter()
    per_day = rows // days
    step = 86_400 / per_day
    with engine.begin() as connection:
        for back in range(days):
            end = now - timedelta(days=back)
            batch = []
            for g in range(per_day):
                index = g % 7
                batch.append(
                    {
                        "config_id": ids[g % len(ids)],
                        "received_at": end - timedelta(seconds=g * step),
                        "uptime_ms": g,
                        "level": 1 if g % 50 == 0 else 2 if g % 13 == 0 else 3,
                        "tag": TAGS[index],
                        "message": f"{MESSAGES[index]} #{g}",
                        "firmware_version": "1.0.0",
                        "verified": True,
                    }
                )
                if len(batch) == 20_000:
                    connection.execute(insert(_logs()), batch)
                    batch = []
            if batch:
                connection.execute(insert(_logs()), batch)
        connection.exec_driver_sql("ANALYZE")
    return time.perf_counter() - started


def _logs() -> t.Any:
    from iotsupport.device_logs.tables import DEVICE_LOGS

    return DEVICE_LOGS


def reads(engine: Engine, ids: list[int]) -> dict[str, float]:
    session = sessionmaker(engine)()
    day_ago = datetime.now(UTC) - timedelta(hours=24)
    hour_ago = datetime.now(UTC) - timedelta(hours=1)
    one = ids[len(ids) // 2]
    figures = {
        "newest 100 of one device": median_ms(
            lambda: read(session, Selection(config_id=one, limit=100))
        ),
        "text search, fleet, last 24 h ('NO_AP_FOUND')": median_ms(
            lambda: read(session, Selection(since=day_ago, q="NO_AP_FOUND", limit=100))
        ),
        "text search, rare ('#4242424')": median_ms(
            lambda: read(session, Selection(since=day_ago, q="#4242424", limit=100))
        ),
        "errors of one device": median_ms(
            lambda: read(session, Selection(config_id=one, max_level=1, limit=100))
        ),
        "devices with errors in the last hour": median_ms(
            lambda: devices_at_level(session, 1, hour_ago)
        ),
    }
    session.close()
    return figures


def retention(engine: Engine, days: int) -> float:
    cutoff = datetime.now(UTC) - timedelta(days=days - 1)
    started = time.perf_counter()
    with engine.begin() as connection:
        drop_before(connection, cutoff)
    return (time.perf_counter() - started) * 1000


def report(name: str, figures: dict[str, t.Any]) -> None:
    print(f"\n== {name}")
    for key, value in figures.items():
        print(f"  {key:48s} {value}")


def run(engine: Engine, args: argparse.Namespace, sqlite: bool) -> None:
    ids = add_devices(engine, args.devices)
    rate, written = ingest(engine, ids, args.ingest_seconds)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    fill = (fill_sqlite if sqlite else fill_postgres)(engine, ids, args.rows, args.days)
    with engine.connect() as connection:
        total = connection.execute(text("SELECT count(*) FROM device_logs")).scalar()
    figures: dict[str, t.Any] = {
        "writer: lines/s (one worker's writer)": f"{rate:,.0f} ({written:,} lines)",
        "process peak RSS after ingest (MB)": f"{peak:.0f}",
        "table filled with (s)": f"{fill:.1f}",
        "rows": f"{total:,}",
    }
    figures |= {f"{key} (ms)": f"{value:.1f}" for key, value in reads(engine, ids).items()}
    figures["drop the oldest day (ms)"] = f"{retention(engine, args.days):.1f}"
    report("SQLite" if sqlite else "PostgreSQL", figures)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--ingest-seconds", type=float, default=10.0)
    parser.add_argument("--sqlite", action="store_true", help="SQLite instead of PostgreSQL")
    parser.add_argument(
        "--database-url",
        default=os.environ.get(
            "TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
        ),
    )
    args = parser.parse_args()
    print(f"{args.rows:,} rows over {args.days} days, {args.devices} devices")
    if args.sqlite:
        folder = tempfile.mkdtemp()
        engine = create_engine(f"sqlite:///{folder}/logs.db")
        run(engine, args, sqlite=True)
        engine.dispose()
        return
    name, engine = fresh_postgres(args.database_url)
    try:
        run(engine, args, sqlite=False)
    finally:
        engine.dispose()
        admin = create_engine(args.database_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
