"""Writing lines and dropping old ones, per database.

PostgreSQL: a partition per UTC day, created by the writer the first time it writes
into that day; retention drops whole partitions. SQLite: rows deleted by time (the FTS
index follows by trigger). On both, a device over LOG_MAX_LINES_PER_DEVICE loses its
oldest lines.
"""

from __future__ import annotations

import logging
import re
import typing as t
from datetime import UTC
from datetime import date
from datetime import datetime
from datetime import timedelta

from sqlalchemy import Connection
from sqlalchemy import func
from sqlalchemy import insert
from sqlalchemy import select
from sqlalchemy import text
from sqlalchemy.orm import Session

from iotsupport.configs.tables import DeviceCheckin
from iotsupport.configs.tables import DeviceConfig
from iotsupport.device_logs.tables import DEVICE_LOGS
from iotsupport.device_logs.tables import PARTITION_PREFIX

log = logging.getLogger(__name__)

_L = DEVICE_LOGS.c
_PARTITION = re.compile(rf"^{PARTITION_PREFIX}(\d{{8}})$")
_CONFIGS = DeviceConfig.__table__.c
_COPY_COLUMNS = (
    "config_id",
    "received_at",
    "device_time",
    "uptime_ms",
    "level",
    "tag",
    "message",
    "firmware_version",
    "verified",
)
_COPY = f"COPY device_logs ({', '.join(_COPY_COLUMNS)}) FROM STDIN"
_CHECKINS = DeviceCheckin.__table__.c


def partition_name(day: date) -> str:
    return f"{PARTITION_PREFIX}{day:%Y%m%d}"


def ensure_partition(connection: Connection, day: date) -> None:
    """The day's partition, created if missing (another worker may race: same result)."""
    following = day + timedelta(days=1)
    connection.exec_driver_sql(
        f"CREATE TABLE IF NOT EXISTS {partition_name(day)} PARTITION OF device_logs "
        f"FOR VALUES FROM ('{day.isoformat()}T00:00:00+00') "
        f"TO ('{following.isoformat()}T00:00:00+00')"
    )


class LogStorage:
    """What the intake and the retention job do to the log table."""

    def __init__(self) -> None:
        self._days: set[date] = set()  # PostgreSQL partitions known to exist

    def known_devices(
        self, session: Session, config_ids: t.Collection[int]
    ) -> dict[int, str | None]:
        """Config id -> the firmware version it last reported, for those that still exist."""
        query = (
            select(_CONFIGS.id, _CHECKINS.firmware_version)
            .select_from(
                DeviceConfig.__table__.outerjoin(
                    DeviceCheckin.__table__, _CHECKINS.config_id == _CONFIGS.id
                )
            )
            .where(_CONFIGS.id.in_(sorted(config_ids)))
        )
        return {row.id: row.firmware_version for row in session.execute(query)}

    def insert(self, session: Session, rows: list[dict[str, t.Any]]) -> set[date]:
        """The rows inserted; returns the days whose partitions this created, to
        `remember` once committed (a rolled back write rolls them back too)."""
        connection = session.connection()
        if connection.dialect.name != "postgresql":
            connection.execute(insert(DEVICE_LOGS), rows)
            return set()
        days = {row["received_at"].date() for row in rows} - self._days
        for day in sorted(days):
            ensure_partition(connection, day)
        # COPY: a fraction of the CPU of an INSERT per row, in the same transaction.
        raw = connection.connection.driver_connection
        with raw.cursor() as cursor, cursor.copy(_COPY) as copy:  # type: ignore[union-attr]
            for row in rows:
                copy.write_row([row[name] for name in _COPY_COLUMNS])
        return days

    def remember(self, days: set[date]) -> None:
        self._days |= days


def drop_before(connection: Connection, cutoff: datetime) -> int:
    """Lines received before `cutoff` gone; how many partitions (PostgreSQL) or rows."""
    if connection.dialect.name != "postgresql":
        result = connection.execute(DEVICE_LOGS.delete().where(_L.received_at < cutoff))
        return int(result.rowcount or 0)
    dropped = 0
    for name in partitions(connection):
        day = datetime.strptime(name[len(PARTITION_PREFIX) :], "%Y%m%d").replace(tzinfo=UTC)
        if day + timedelta(days=1) <= cutoff:
            connection.exec_driver_sql(f"DROP TABLE IF EXISTS {name}")
            dropped += 1
    return dropped


def partitions(connection: Connection) -> list[str]:
    names = connection.execute(
        text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'device_logs'"
        )
    ).scalars()
    return sorted(name for name in names if _PARTITION.match(name))


def cap_devices(connection: Connection, keep: int) -> int:
    """Each device's oldest lines beyond `keep` deleted; how many lines."""
    over = connection.execute(
        select(_L.config_id).group_by(_L.config_id).having(func.count() > keep)
    ).scalars()
    deleted = 0
    for config_id in list(over):
        oldest_kept = connection.execute(
            select(_L.id)
            .where(_L.config_id == config_id)
            .order_by(_L.id.desc())
            .offset(keep - 1)
            .limit(1)
        ).scalar()
        if oldest_kept is not None:
            result = connection.execute(
                DEVICE_LOGS.delete().where(_L.config_id == config_id, _L.id < oldest_kept)
            )
            deleted += int(result.rowcount or 0)
    return deleted
