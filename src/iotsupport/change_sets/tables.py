"""Change sets: one bulk change of many configs, and what each config was before it."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean
from sqlalchemy import ForeignKey
from sqlalchemy import Integer
from sqlalchemy import String
from sqlalchemy import Text
from sqlalchemy import false
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from iotsupport.db.base import Base
from iotsupport.db.base import UTCDateTime


class ChangeSet(Base):
    __tablename__ = "change_sets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patch: Mapped[str] = mapped_column(Text)  # the JSON Merge Patch, as sent
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_by: Mapped[str] = mapped_column(String(255))
    undone_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    undone_by: Mapped[str | None] = mapped_column(String(255))
    # The change set also moved the configs to a model (`model_code`; None: to no model).
    sets_model: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    model_code: Mapped[str | None] = mapped_column(String(64))


class ChangeSetItem(Base):
    """One config the change set changed. `before` is kept here, not only in the history,
    because history pruning must never make a change set impossible to undo."""

    __tablename__ = "change_set_items"

    change_set_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("change_sets.id", ondelete="CASCADE"), primary_key=True
    )
    # No foreign key: like history, the record outlives the config's delete.
    config_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    mac_address: Mapped[str] = mapped_column(String(17))
    before_version: Mapped[int] = mapped_column(Integer)
    after_version: Mapped[int] = mapped_column(Integer)
    before_content: Mapped[str] = mapped_column(Text)
    # With sets_model: the model it had before (no foreign key, as config_id).
    before_model_id: Mapped[int | None] = mapped_column(Integer)
