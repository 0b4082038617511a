"""The tables of device configs: the config (the device), its versions, deletes, check-ins."""

from __future__ import annotations

import typing as t
from datetime import datetime

from sqlalchemy import Boolean
from sqlalchemy import ColumnElement
from sqlalchemy import ForeignKey
from sqlalchemy import Integer
from sqlalchemy import String
from sqlalchemy import Text
from sqlalchemy import UniqueConstraint
from sqlalchemy import case
from sqlalchemy import literal_column
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import foreign
from sqlalchemy.orm import mapped_column
from sqlalchemy.orm import relationship

from iotsupport.credentials.tables import DeviceCredential
from iotsupport.db.base import ANONYMOUS_ACTOR
from iotsupport.db.base import Base
from iotsupport.db.base import UTCDateTime
from iotsupport.db.base import utcnow
from iotsupport.device_models.tables import DeviceModel

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
    # The X-Firmware-SHA256 header of that fetch (hex, lowercase), when the device sent one.
    firmware_sha256: Mapped[str | None] = mapped_column(String(64))
    # Whether that fetch carried a valid device credential (null: before credentials existed).
    with_credential: Mapped[bool | None] = mapped_column(Boolean)
    # The latest fetch that a credential proved, and what firmware it reported: a rollout
    # judges devices by these unless it takes unverified reports (`unverified_reports`).
    verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    verified_firmware_version: Mapped[str | None] = mapped_column(String(64))
    verified_firmware_sha256: Mapped[str | None] = mapped_column(String(64))


class DeviceConfig(Base):
    """One device's JSON config, keyed by its normalized MAC address."""

    __tablename__ = "device_configs"
    # Never reuse an id on SQLite: a reused id could collide with an old ETag.
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    mac_address: Mapped[str] = mapped_column(String(17), unique=True)
    content: Mapped[str] = mapped_column(Text)
    device_name: Mapped[str | None] = mapped_column(Text)
    device_entity_id: Mapped[str | None] = mapped_column(Text)
    enable_ota: Mapped[bool | None] = mapped_column(Boolean)
    version: Mapped[int] = mapped_column(Integer, default=1)
    # Stored so a device's conditional fetch is answered without reading the content.
    etag: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_by: Mapped[str] = mapped_column(
        String(255), default=ANONYMOUS_ACTOR, server_default=ANONYMOUS_ACTOR
    )
    # The kind of device (None: free-form content). A model in use cannot be deleted.
    model_id: Mapped[int | None] = mapped_column(
        Integer, ForeignKey("device_models.id"), index=True
    )
    # Does the content meet the model's current schema? None without a model. Set on
    # every save and whenever the model's schema changes, so the list reads it for free.
    schema_valid: Mapped[bool | None] = mapped_column(Boolean)

    device_model: Mapped[DeviceModel | None] = relationship(lazy="joined")

    # The device's last fetch, loaded with the config in the same statement.
    # No foreign key: check-ins, like history, outlive a delete (a restore brings them back).
    checkin: Mapped[DeviceCheckin | None] = relationship(
        primaryjoin=lambda: DeviceConfig.id == foreign(DeviceCheckin.config_id),
        lazy="joined",
        viewonly=True,
    )

    credential: Mapped[DeviceCredential | None] = relationship(
        primaryjoin=lambda: DeviceConfig.id == foreign(DeviceCredential.config_id),
        lazy="joined",
        viewonly=True,
    )

    @property
    def last_fetched_with_credential(self) -> bool | None:
        return self.checkin.with_credential if self.checkin else None

    @property
    def model(self) -> str | None:
        """The model's code."""
        return self.device_model.code if self.device_model else None

    @property
    def last_fetched_at(self) -> datetime | None:
        return self.checkin.fetched_at if self.checkin else None

    @property
    def last_fetched_version(self) -> int | None:
        return self.checkin.fetched_version if self.checkin else None

    @property
    def sync_state(self) -> SyncState:
        return sync_state(self.version, self.last_fetched_version)

    @property
    def last_fetched_from(self) -> str | None:
        return self.checkin.client_address if self.checkin else None

    @property
    def last_fetched_user_agent(self) -> str | None:
        return self.checkin.user_agent if self.checkin else None

    @property
    def last_fetched_firmware_version(self) -> str | None:
        return self.checkin.firmware_version if self.checkin else None


HistoryEvent = t.Literal[
    "created", "updated", "rolled_back", "restored", "bulk_changed", "bulk_undone"
]


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
    # The config's model then (no foreign key: history outlives models), and the
    # change set that made this version, if a bulk change or its undo did.
    model_id: Mapped[int | None] = mapped_column(Integer)
    change_set_id: Mapped[int | None] = mapped_column(Integer)


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
