"""SQLite's journal of device changes (PostgreSQL notifies instead, and leaves it empty);
PostgreSQL's device cache leases."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer
from sqlalchemy import String
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from iotsupport.db.base import Base
from iotsupport.db.base import UTCDateTime


class DeviceChange(Base):
    """One row per committed change of what a device fetch reads (its config or its
    credential), written by triggers (migration 0008), so nothing that writes those
    tables can forget it. SQLite has one writer at a time, so `seq` follows commit order
    and a worker catches up by reading past the last `seq` it applied. The triggers keep
    the newest 10,000 rows; a worker that fell further behind reloads everything.
    """

    __tablename__ = "device_changes"
    __table_args__ = {"sqlite_autoincrement": True}  # a seq is never handed out twice

    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    mac_address: Mapped[str] = mapped_column(String(17))


class DeviceCacheWorker(Base):
    """PostgreSQL: one row per worker that may answer device fetches from memory, with
    the end of its lease. A worker serves memory only while its own lease lasts, and
    renews it through the change channel (leases.py), so the settle before an
    announcement knows every worker that could still serve the old data, including one
    whose listener was cut and no longer shows in pg_stat_activity."""

    __tablename__ = "device_cache_workers"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    lease_until: Mapped[datetime] = mapped_column(UTCDateTime)
