"""The tables of rollouts: the rollout, its devices (one row each, with its stage and
state), and each device's firmware target."""

from __future__ import annotations

import typing as t
from datetime import datetime

from sqlalchemy import Boolean
from sqlalchemy import Float
from sqlalchemy import ForeignKey
from sqlalchemy import Integer
from sqlalchemy import String
from sqlalchemy import Text
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from iotsupport.db.base import ANONYMOUS_ACTOR
from iotsupport.db.base import Base
from iotsupport.db.base import UTCDateTime
from iotsupport.db.base import utcnow

RolloutState = t.Literal["running", "waiting_for_approval", "paused", "completed", "cancelled"]
ACTIVE_STATES: tuple[RolloutState, ...] = ("running", "waiting_for_approval", "paused")
DeviceState = t.Literal["pending", "downloading", "updated", "failed", "crashed"]
DEVICE_STATES: tuple[DeviceState, ...] = ("pending", "downloading", "updated", "failed", "crashed")


class Rollout(Base):
    """A release going out to a model's devices, stage by stage."""

    __tablename__ = "rollouts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(Integer, ForeignKey("device_models.id"), index=True)
    # Kept when the release is deleted after the rollout ended; version and sha256 stay.
    release_id: Mapped[int | None] = mapped_column(
        Integer, ForeignKey("releases.id", ondelete="SET NULL")
    )
    version: Mapped[str] = mapped_column(String(32))
    sha256: Mapped[str] = mapped_column(String(64))
    stages: Mapped[str] = mapped_column(Text)  # the admin's list as JSON, e.g. [1, "10%", "100%"]
    error_threshold: Mapped[str | None] = mapped_column(String(8))  # e.g. "20%"; None: off
    approve_each_stage: Mapped[bool] = mapped_column(Boolean)
    # Judge devices also by reports that no credential proved (anyone can send those).
    unverified_reports: Mapped[bool] = mapped_column(Boolean, default=False)
    # Health (health/): a device that reset unexpectedly on the release within this many
    # seconds of updating counts as crashed.
    health_window_seconds: Mapped[int] = mapped_column(Integer, default=3600)
    max_crash_rate: Mapped[str | None] = mapped_column(String(8))  # per stage, e.g. "10%"
    # Pause when the release's crash-free % is below the previous release's by more than
    # crash_free_margin points.
    compare_to_previous: Mapped[bool] = mapped_column(Boolean, default=False)
    crash_free_margin: Mapped[float] = mapped_column(Float, default=5.0)
    state: Mapped[str] = mapped_column(String(24))
    # manual, error_threshold, crash_rate, worse_than_previous
    paused_reason: Mapped[str | None] = mapped_column(String(24))
    paused_detail: Mapped[str | None] = mapped_column(String(255))  # the pause, for a person
    current_stage: Mapped[int] = mapped_column(Integer, default=0)  # released up to here
    # Failures of stages up to here were seen by an admin who resumed: no pause for them.
    acknowledged_stage: Mapped[int] = mapped_column(Integer, default=-1)
    # The model's id while the rollout is active, else NULL: the unique constraint is what
    # allows one active rollout per model, whichever replica starts it.
    active_model_id: Mapped[int | None] = mapped_column(Integer, unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(255), default=ANONYMOUS_ACTOR)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class RolloutDevice(Base):
    """One device of a rollout: its stage, and its state as last evaluated."""

    __tablename__ = "rollout_devices"

    rollout_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("rollouts.id", ondelete="CASCADE"), primary_key=True
    )
    config_id: Mapped[int] = mapped_column(
        Integer,
        ForeignKey("device_configs.id", ondelete="CASCADE"),
        primary_key=True,
        index=True,
    )
    stage: Mapped[int] = mapped_column(Integer)  # 0-based
    state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(32))  # why failed
    from_version: Mapped[str | None] = mapped_column(String(64))  # reported when it joined
    # Its target before this rollout, given back when the rollout is cancelled.
    previous_release_id: Mapped[int | None] = mapped_column(
        Integer, ForeignKey("releases.id", ondelete="SET NULL")
    )
    released_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # its stage started
    download_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # state last changed


class FirmwareTarget(Base):
    """The release a device should run; set when a rollout's stage reaches it."""

    __tablename__ = "firmware_targets"

    config_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("device_configs.id", ondelete="CASCADE"), primary_key=True
    )
    release_id: Mapped[int] = mapped_column(Integer, ForeignKey("releases.id"), index=True)
    rollout_id: Mapped[int | None] = mapped_column(
        Integer, ForeignKey("rollouts.id", ondelete="SET NULL")
    )
    assigned_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
