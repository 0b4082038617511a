from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from iotsupport.db.base import Base
from iotsupport.db.base import UTCDateTime
from iotsupport.db.base import utcnow


class UsedUploadSignature(Base):
    """A (timestamp, signature) pair an upload has used: each pair is accepted once.

    Kept in the database, not in memory, so that every replica refuses a replay.
    """

    __tablename__ = "used_upload_signatures"

    # SHA-256 of the timestamp text and the signature bytes: fixed width, any key size.
    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    # Pairs older than the timestamp tolerance can never verify again; they are pruned.
    signed_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    used_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
