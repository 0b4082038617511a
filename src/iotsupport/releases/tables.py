"""Releases (a model's firmware images) and their stored files: one row per file, its
bytes in chunk rows.

Kept in the database so that every replica serves the same files without a shared
folder. A file is named by the SHA-256 of its bytes, so its rows never change once
written: a reader can never see a mix of two versions.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger
from sqlalchemy import Boolean
from sqlalchemy import ForeignKey
from sqlalchemy import Integer
from sqlalchemy import LargeBinary
from sqlalchemy import String
from sqlalchemy import UniqueConstraint
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from iotsupport.db.base import ANONYMOUS_ACTOR
from iotsupport.db.base import Base
from iotsupport.db.base import UTCDateTime
from iotsupport.db.base import utcnow


class StoredFile(Base):
    __tablename__ = "release_files"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)  # hex, lowercase
    size: Mapped[int] = mapped_column(BigInteger)
    # Every chunk but the last holds exactly this many bytes; kept per file, so the
    # size for new files can change without rewriting old ones.
    chunk_size: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class StoredFileChunk(Base):
    __tablename__ = "release_file_chunks"

    sha256: Mapped[str] = mapped_column(
        String(64), ForeignKey("release_files.sha256", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class Release(Base):
    """A firmware image of a device model; its version and the rest come from the image."""

    __tablename__ = "releases"
    # The unique pair is the guard against two uploads of one version at once.
    __table_args__ = (UniqueConstraint("model_id", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(Integer, ForeignKey("device_models.id"))
    version: Mapped[str] = mapped_column(String(32))
    sha256: Mapped[str] = mapped_column(String(64), ForeignKey("release_files.sha256"), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    # From the image header and its esp_app_desc_t (releases/image_format.py).
    chip: Mapped[str] = mapped_column(String(16))
    project_name: Mapped[str] = mapped_column(String(32))
    idf_version: Mapped[str] = mapped_column(String(32))
    build_date: Mapped[str] = mapped_column(String(16))
    build_time: Mapped[str] = mapped_column(String(16))
    elf_sha256: Mapped[str] = mapped_column(String(64))
    secure_version: Mapped[int] = mapped_column(BigInteger)
    # The digest appended to the image (what esp_partition_get_sha256 reports), if any.
    image_sha256: Mapped[str | None] = mapped_column(String(64))
    min_chip_revision: Mapped[int] = mapped_column(Integer)
    max_chip_revision: Mapped[int] = mapped_column(Integer)
    flash_size: Mapped[str | None] = mapped_column(String(8))
    spi_mode: Mapped[str | None] = mapped_column(String(16))
    entry_point: Mapped[int] = mapped_column(BigInteger)
    segment_count: Mapped[int] = mapped_column(Integer)
    signed: Mapped[bool] = mapped_column(Boolean)  # uploaded with a valid signature
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(255), default=ANONYMOUS_ACTOR)
    # The app ELF the image was built from (its symbols, for crashes/), stored like the
    # image; null until CI uploads it.
    elf_file_sha256: Mapped[str | None] = mapped_column(
        String(64), ForeignKey("release_files.sha256"), default=None
    )
