from __future__ import annotations

import typing as t
from datetime import datetime

from sqlalchemy import ColumnElement
from sqlalchemy import Integer
from sqlalchemy import String
from sqlalchemy import case
from sqlalchemy import literal_column
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from iotsupport.models.base import Base
from iotsupport.models.base import UTCDateTime

SyncState = t.Literal["in_sync", "pending", "never"]


def sync_state(version: int, fetched_version: int | None) -> SyncState:
    """in_sync: the device has the current version; pending: it has an older one."""
    if fetched_version is None:
        return "never"
    return "in_sync" if fetched_version >= version else "pending"


def sync_state_expression(
    version: ColumnElement[int], fetched_version: ColumnElement[int | None]
) -> ColumnElement[str]:
    """`sync_state` in SQL, for reads of many configs (no Python call per row)."""
    return case(
        (fetched_version.is_(None), literal_column("'never'")),
        (fetched_version >= version, literal_column("'in_sync'")),
        else_=literal_column("'pending'"),
    )


class DeviceCheckin(Base):
    """A device's latest fetch of its config.

    A table of its own, not columns on device_configs: recording a fetch then never
    changes a config's row (its ETag, updated_at, or the lock an admin edit takes).
    """

    __tablename__ = "device_checkins"

    config_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    fetched_at: Mapped[datetime] = mapped_column(UTCDateTime)
    fetched_version: Mapped[int] = mapped_column(Integer)
    client_address: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(255))
    firmware_version: Mapped[str | None] = mapped_column(String(64))
