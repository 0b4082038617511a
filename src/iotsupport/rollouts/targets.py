"""What each device should run: its firmware target, read and written.

A target is set when a rollout's stage reaches the device and kept after the rollout
ends (a device that falls back to older firmware is offered the release again); a
cancel gives the devices that had not updated their previous target back. A target
counts only while the release belongs to the device's current model, so a device moved
to another model is never offered the old model's firmware.
"""

from __future__ import annotations

import typing as t
from collections.abc import Collection
from datetime import datetime

from sqlalchemy import delete
from sqlalchemy import func
from sqlalchemy import insert
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.orm import Session

from iotsupport.configs.tables import DeviceConfig
from iotsupport.device_models.tables import DeviceModel
from iotsupport.releases.tables import Release
from iotsupport.rollouts.tables import FirmwareTarget as TargetRow

_BATCH = 500


class FirmwareTarget(t.NamedTuple):
    """The release a device should run: its version and the SHA-256 of its file."""

    version: str
    sha256: str


class DeviceTarget(t.NamedTuple):
    """What the device firmware route answers with."""

    model: str
    version: str
    size: int
    sha256: str
    image_sha256: str | None


def firmware_target(
    session: Session, config_id: int, model_id: int | None
) -> FirmwareTarget | None:
    if model_id is None:
        return None
    row = session.execute(
        select(Release.version, Release.sha256)
        .join(TargetRow, TargetRow.release_id == Release.id)
        .where(TargetRow.config_id == config_id, Release.model_id == model_id)
    ).one_or_none()
    return FirmwareTarget(row.version, row.sha256) if row is not None else None


def device_target(session: Session, config_id: int) -> DeviceTarget | None:
    """The release the device should run (of its current model), in one statement."""
    row = session.execute(
        select(
            DeviceModel.code,
            Release.version,
            Release.size,
            Release.sha256,
            Release.image_sha256,
        )
        .select_from(TargetRow)
        .join(Release, Release.id == TargetRow.release_id)
        .join(DeviceConfig, DeviceConfig.id == TargetRow.config_id)
        .join(DeviceModel, DeviceModel.id == Release.model_id)
        .where(TargetRow.config_id == config_id, DeviceConfig.model_id == Release.model_id)
    ).one_or_none()
    return DeviceTarget(*row) if row is not None else None


def current_targets(
    session: Session, config_ids: Collection[int]
) -> dict[int, tuple[int, int | None]]:
    """config id -> (release id, rollout id) of the targets these devices have now."""
    found: dict[int, tuple[int, int | None]] = {}
    ids = list(config_ids)
    for start in range(0, len(ids), _BATCH):
        query = select(TargetRow.config_id, TargetRow.release_id, TargetRow.rollout_id).where(
            TargetRow.config_id.in_(ids[start : start + _BATCH])
        )
        for row in session.execute(query):
            found[row.config_id] = (row.release_id, row.rollout_id)
    return found


def set_targets(
    session: Session,
    config_ids: Collection[int],
    release_id: int | None,
    rollout_id: int | None,
    now: datetime,
    *,
    existing: dict[int, tuple[int, int | None]],
) -> None:
    """Point these devices at `release_id` (None: no target); `existing` is what
    current_targets said for them."""
    ids = list(config_ids)
    if release_id is None:
        for start in range(0, len(ids), _BATCH):
            chunk = ids[start : start + _BATCH]
            session.execute(delete(TargetRow).where(TargetRow.config_id.in_(chunk)))
        return
    values = {"release_id": release_id, "rollout_id": rollout_id, "assigned_at": now}
    known = [config_id for config_id in ids if config_id in existing]
    fresh = [{"config_id": config_id, **values} for config_id in ids if config_id not in existing]
    for start in range(0, len(known), _BATCH):
        chunk = known[start : start + _BATCH]
        session.execute(update(TargetRow).where(TargetRow.config_id.in_(chunk)).values(**values))
    if fresh:
        session.execute(insert(TargetRow), fresh)


def release_in_use(session: Session, release_id: int) -> int:
    """How many devices have this release as their target."""
    query = select(func.count()).where(TargetRow.release_id == release_id)
    return session.execute(query).scalar_one()
