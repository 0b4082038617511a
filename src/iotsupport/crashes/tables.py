"""Core dumps as devices sent them (decoded in the background), and crash groups with
their occurrences (a dump or a log's backtrace line that was proved to be the device's)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger
from sqlalchemy import Boolean
from sqlalchemy import ForeignKey
from sqlalchemy import Index
from sqlalchemy import Integer
from sqlalchemy import LargeBinary
from sqlalchemy import String
from sqlalchemy import Text
from sqlalchemy import UniqueConstraint
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from iotsupport.db.base import Base
from iotsupport.db.base import UTCDateTime
from iotsupport.db.base import utcnow

PENDING, DECODED, UNREADABLE = "pending", "decoded", "unreadable"
GROUP_STATUSES = ("open", "resolved", "ignored")


class CoreDump(Base):
    __tablename__ = "coredumps"
    # The same bytes from the same device are the same dump (a retry).
    __table_args__ = (
        UniqueConstraint("config_id", "sha256"),
        Index("ix_coredumps_state", "state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    config_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("device_configs.id", ondelete="CASCADE"), index=True
    )
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    data: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)  # up to 1 MiB: on demand
    verified: Mapped[bool] = mapped_column(Boolean)  # a device credential proved it
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    state: Mapped[str] = mapped_column(String(16), default=PENDING)
    error: Mapped[str | None] = mapped_column(String(400), default=None)
    decoded: Mapped[str | None] = mapped_column(Text, default=None)  # JSON
    decoded_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    chip: Mapped[str | None] = mapped_column(String(16), default=None)
    app_elf_sha256: Mapped[str | None] = mapped_column(String(64), default=None)
    release_id: Mapped[int | None] = mapped_column(
        Integer, ForeignKey("releases.id", ondelete="SET NULL"), default=None, index=True
    )
    symbolized: Mapped[bool] = mapped_column(Boolean, default=False)
    group_id: Mapped[int | None] = mapped_column(
        Integer, ForeignKey("crash_groups.id", ondelete="SET NULL"), default=None, index=True
    )


class CrashGroup(Base):
    __tablename__ = "crash_groups"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    signature: Mapped[str] = mapped_column(String(64), unique=True)  # SHA-256 of the key
    key: Mapped[str] = mapped_column(Text)  # the top function names, " < " joined
    exception: Mapped[str | None] = mapped_column(String(64), default=None)
    frames: Mapped[str] = mapped_column(Text)  # JSON: the first occurrence's top frames
    status: Mapped[str] = mapped_column(String(16), default="open")
    regression: Mapped[bool] = mapped_column(Boolean, default=False)
    # When resolved: the newest release seen so far; seen in a newer one, it reopens.
    resolved_after: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class CrashOccurrence(Base):
    __tablename__ = "crash_occurrences"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    group_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("crash_groups.id", ondelete="CASCADE"), index=True
    )
    config_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("device_configs.id", ondelete="CASCADE"), index=True
    )
    release_id: Mapped[int | None] = mapped_column(
        Integer, ForeignKey("releases.id", ondelete="SET NULL"), default=None
    )
    coredump_id: Mapped[int | None] = mapped_column(
        Integer, ForeignKey("coredumps.id", ondelete="SET NULL"), default=None, unique=True
    )
    source: Mapped[str] = mapped_column(String(16))  # coredump | backtrace
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
