"""The log tables.

`device_logs` is not on the app's declarative metadata: its shape differs per database
(PostgreSQL: partitioned by day of `received_at`, a pg_trgm index on the message; SQLite:
an FTS5 trigram index beside it), so migration 0014 writes its DDL by hand and the
model comparison leaves it out (`db.tables.outside_models`). This Core table is what
the code reads and writes through. Drops are an ordinary table.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger
from sqlalchemy import Boolean
from sqlalchemy import Column
from sqlalchemy import ForeignKey
from sqlalchemy import Integer
from sqlalchemy import MetaData
from sqlalchemy import SmallInteger
from sqlalchemy import String
from sqlalchemy import Table
from sqlalchemy import Text
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from iotsupport.db.base import Base
from iotsupport.db.base import UTCDateTime

LOG_TABLE = "device_logs"
PARTITION_PREFIX = "device_logs_p"  # PostgreSQL: device_logs_p20261206, one per UTC day
FTS_TABLE = "device_logs_fts"  # SQLite

DEVICE_LOGS = Table(
    LOG_TABLE,
    MetaData(),
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("config_id", Integer, nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
    Column("device_time", UTCDateTime),
    Column("uptime_ms", BigInteger),
    Column("level", SmallInteger, nullable=False),
    Column("tag", String(64)),
    Column("message", Text, nullable=False),
    Column("firmware_version", String(64)),
    Column("verified", Boolean, nullable=False),
)


class DeviceLogDrops(Base):
    """Lines a device sent that were not kept (over its rate, or a full queue)."""

    __tablename__ = "device_log_drops"

    config_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("device_configs.id", ondelete="CASCADE"), primary_key=True
    )
    dropped: Mapped[int] = mapped_column(BigInteger, default=0)
    last_dropped_at: Mapped[datetime] = mapped_column(UTCDateTime)
