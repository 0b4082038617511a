"""The outbox: what committed changes must announce, until the broker has it."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger
from sqlalchemy import Integer
from sqlalchemy import String
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from iotsupport.db.base import Base
from iotsupport.db.base import UTCDateTime
from iotsupport.db.base import utcnow


class Announcement(Base):
    """One announcement a commit owes, written in that commit's transaction.

    `kind` says what to publish: `config` (the legacy broadcast on
    `iotsupport/updates/configs`, then the device's desired state), `desired` (the
    device's desired state only: a firmware target changed or the config was deleted)
    or `asset` (the broadcast on `iotsupport/updates/assets`). `subject` is the MAC,
    or the asset's file name. The desired state is read from the database when it is
    published, so a late message is never older than the data. The relay deletes a row
    once the broker has acknowledged what it announces.
    """

    __tablename__ = "outbox"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8))
    subject: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
