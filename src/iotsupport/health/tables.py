"""The tables of device health: raw samples (48 h), hourly aggregates (90 days), resets
(one row per boot that a report made known), and each device's presence."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger
from sqlalchemy import Boolean
from sqlalchemy import Float
from sqlalchemy import ForeignKey
from sqlalchemy import Index
from sqlalchemy import Integer
from sqlalchemy import String
from sqlalchemy import Text
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from iotsupport.db.base import Base
from iotsupport.db.base import UTCDateTime

_CONFIG = "device_configs.id"


class HealthSample(Base):
    """One health report as it came (kept RAW_KEEP_HOURS, then folded into hours)."""

    __tablename__ = "health_samples"
    __table_args__ = (Index("ix_health_samples_config_at", "config_id", "reported_at"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    config_id: Mapped[int] = mapped_column(Integer, ForeignKey(_CONFIG, ondelete="CASCADE"))
    reported_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    source: Mapped[str] = mapped_column(String(8))  # http, mqtt
    verified: Mapped[bool] = mapped_column(Boolean)  # a credential (or the broker) proved it
    firmware_version: Mapped[str | None] = mapped_column(String(64))
    reset_reason: Mapped[str | None] = mapped_column(String(16))
    uptime_s: Mapped[int | None] = mapped_column(BigInteger)
    free_heap: Mapped[int | None] = mapped_column(BigInteger)
    min_free_heap: Mapped[int | None] = mapped_column(BigInteger)
    wifi_rssi: Mapped[int | None] = mapped_column(Integer)
    metrics: Mapped[str | None] = mapped_column(Text)  # JSON object of numbers


class HealthHour(Base):
    """A device's samples of one hour, folded (kept HOURLY_KEEP_DAYS)."""

    __tablename__ = "health_hours"

    config_id: Mapped[int] = mapped_column(
        Integer, ForeignKey(_CONFIG, ondelete="CASCADE"), primary_key=True
    )
    hour: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True, index=True)
    samples: Mapped[int] = mapped_column(Integer)
    firmware_version: Mapped[str | None] = mapped_column(String(64))  # the hour's last
    max_uptime_s: Mapped[int | None] = mapped_column(BigInteger)
    min_free_heap: Mapped[int | None] = mapped_column(BigInteger)  # lowest of the hour
    avg_free_heap: Mapped[float | None] = mapped_column(Float)
    min_wifi_rssi: Mapped[int | None] = mapped_column(Integer)
    avg_wifi_rssi: Mapped[float | None] = mapped_column(Float)
    metrics: Mapped[str | None] = mapped_column(Text)  # JSON: name -> [count, sum, min, max]


class DeviceReset(Base):
    """A boot a health report made known (by its uptime), with why the chip reset."""

    __tablename__ = "device_resets"
    __table_args__ = (Index("ix_device_resets_config_boot", "config_id", "boot_at"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    config_id: Mapped[int] = mapped_column(Integer, ForeignKey(_CONFIG, ondelete="CASCADE"))
    boot_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    reported_at: Mapped[datetime] = mapped_column(UTCDateTime)
    reset_reason: Mapped[str] = mapped_column(String(16))
    unexpected: Mapped[bool] = mapped_column(Boolean)
    firmware_version: Mapped[str | None] = mapped_column(String(64), index=True)
    verified: Mapped[bool] = mapped_column(Boolean)


class DevicePresence(Base):
    """One row per device: its last report (health, status, logs) and its broker status."""

    __tablename__ = "device_presence"

    config_id: Mapped[int] = mapped_column(
        Integer, ForeignKey(_CONFIG, ondelete="CASCADE"), primary_key=True
    )
    last_report_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # From iotsupport/devices/<mac>/status: true online, false offline, null never said.
    connected: Mapped[bool | None] = mapped_column(Boolean)
    status_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The current boot as the last report with an uptime placed it (new boot: a reset row).
    boot_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reset_reason: Mapped[str | None] = mapped_column(String(16))
    uptime_s: Mapped[int | None] = mapped_column(BigInteger)  # the last report's
