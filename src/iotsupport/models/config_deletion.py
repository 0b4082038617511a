from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer
from sqlalchemy import String
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from iotsupport.models.base import Base
from iotsupport.models.base import UTCDateTime


class ConfigDeletion(Base):
    """The record of a delete: which config, its last version, when and by whom."""

    __tablename__ = "config_deletions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    config_id: Mapped[int] = mapped_column(Integer, index=True)
    mac_address: Mapped[str] = mapped_column(String(17), index=True)
    version: Mapped[int] = mapped_column(Integer)
    config_created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    deleted_at: Mapped[datetime] = mapped_column(UTCDateTime)
    deleted_by: Mapped[str] = mapped_column(String(255))
