from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean
from sqlalchemy import Integer
from sqlalchemy import String
from sqlalchemy import Text
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import foreign
from sqlalchemy.orm import mapped_column
from sqlalchemy.orm import relationship

from iotsupport.models.base import ANONYMOUS_ACTOR
from iotsupport.models.base import Base
from iotsupport.models.base import UTCDateTime
from iotsupport.models.base import utcnow
from iotsupport.models.device_checkin import DeviceCheckin
from iotsupport.models.device_checkin import SyncState
from iotsupport.models.device_checkin import sync_state


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

    # The device's last fetch, loaded with the config in the same statement.
    # No foreign key: check-ins, like history, outlive a delete (a restore brings them back).
    checkin: Mapped[DeviceCheckin | None] = relationship(
        primaryjoin=lambda: DeviceConfig.id == foreign(DeviceCheckin.config_id),
        lazy="joined",
        viewonly=True,
    )

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
