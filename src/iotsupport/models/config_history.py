from __future__ import annotations

import typing as t
from datetime import datetime

from sqlalchemy import Boolean
from sqlalchemy import Integer
from sqlalchemy import String
from sqlalchemy import Text
from sqlalchemy import UniqueConstraint
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from iotsupport.models.base import Base
from iotsupport.models.base import UTCDateTime

HistoryEvent = t.Literal["created", "updated", "rolled_back", "restored"]


class ConfigHistory(Base):
    """One saved version of a config, immutable. Rows outlive the config's delete."""

    __tablename__ = "config_history"
    # The unique pair is also the guard against two writers saving the same version.
    __table_args__ = (UniqueConstraint("config_id", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    config_id: Mapped[int] = mapped_column(Integer)
    mac_address: Mapped[str] = mapped_column(String(17), index=True)
    version: Mapped[int] = mapped_column(Integer)
    event: Mapped[str] = mapped_column(String(16))
    # For a rollback or a restore: the version whose content this one took.
    source_version: Mapped[int | None] = mapped_column(Integer)
    content: Mapped[str] = mapped_column(Text)
    device_name: Mapped[str | None] = mapped_column(Text)
    device_entity_id: Mapped[str | None] = mapped_column(Text)
    enable_ota: Mapped[bool | None] = mapped_column(Boolean)
    saved_at: Mapped[datetime] = mapped_column(UTCDateTime)
    saved_by: Mapped[str] = mapped_column(String(255))
