"""The table of device models."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer
from sqlalchemy import String
from sqlalchemy import Text
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from iotsupport.db.base import ANONYMOUS_ACTOR
from iotsupport.db.base import Base
from iotsupport.db.base import UTCDateTime
from iotsupport.db.base import utcnow


class DeviceModel(Base):
    """A kind of device: the JSON Schema its configs meet and the content new ones start from."""

    __tablename__ = "device_models"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(Text, default="")
    # Both kept as the text the admin sent (key order and formatting).
    schema: Mapped[str] = mapped_column(Text)
    template: Mapped[str | None] = mapped_column(Text)
    # The ESP32 chip its firmware is built for (esptool's name, e.g. esp32s3); None until
    # set, or until the model's first release sets it.
    chip: Mapped[str | None] = mapped_column(String(16))
    version: Mapped[int] = mapped_column(Integer, default=1)
    etag: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_by: Mapped[str] = mapped_column(String(255), default=ANONYMOUS_ACTOR)
