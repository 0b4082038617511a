"""The stored files of releases: one row per file, its bytes in chunk rows.

Kept in the database so that every replica serves the same files without a shared
folder. A file is named by the SHA-256 of its bytes, so its rows never change once
written: a reader can never see a mix of two versions.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger
from sqlalchemy import ForeignKey
from sqlalchemy import Integer
from sqlalchemy import LargeBinary
from sqlalchemy import String
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

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
