"""Late reports: a device's next report corrects its state even after its rollout ended.

A device counted failed (by timeout, say, because its report was lost or it was off)
that then reports the rollout's release counts as updated, whether the rollout is still
active (its evaluation recomputes every state) or has completed or been cancelled (this
module, run by the ticker). Only reports the rollout takes count (`unverified_reports`).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import and_
from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.orm import Session

from iotsupport.configs.tables import DeviceCheckin
from iotsupport.releases.tables import Release
from iotsupport.rollouts.tables import Rollout
from iotsupport.rollouts.tables import RolloutDevice

_BATCH = 500


def correct_finished(session: Session, now: datetime) -> int:
    """Failed devices of ended rollouts that now report the release: updated. Returns how
    many changed."""
    checkins = DeviceCheckin.__table__.c
    rows = RolloutDevice.__table__.c
    reports_release = or_(
        and_(Rollout.unverified_reports, checkins.firmware_version == Rollout.version),
        checkins.verified_firmware_version == Rollout.version,
    )
    candidates = session.execute(
        select(
            rows.rollout_id,
            rows.config_id,
            Rollout.unverified_reports,
            Rollout.version,
            Rollout.sha256,
            Release.image_sha256,
            checkins.firmware_version,
            checkins.firmware_sha256,
            checkins.verified_firmware_version,
            checkins.verified_firmware_sha256,
        )
        .select_from(RolloutDevice.__table__)
        .join(Rollout, Rollout.id == rows.rollout_id)
        .join(DeviceCheckin, checkins.config_id == rows.config_id)
        .outerjoin(Release, Release.id == Rollout.release_id)
        .where(Rollout.active_model_id.is_(None), rows.state == "failed", reports_release)
        .order_by(rows.rollout_id, rows.config_id)  # row locks in one order in every worker
    ).all()
    changes = []
    for row in candidates:
        reports = [(row.verified_firmware_version, row.verified_firmware_sha256)]
        if row.unverified_reports:
            reports.append((row.firmware_version, row.firmware_sha256))
        if any(
            version == row.version and (sha256 is None or sha256 in (row.sha256, row.image_sha256))
            for version, sha256 in reports
        ):
            changes.append(
                {
                    "rollout_id": row.rollout_id,
                    "config_id": row.config_id,
                    "state": "updated",
                    "reason": None,
                    "changed_at": now,
                }
            )
    for start in range(0, len(changes), _BATCH):
        session.execute(update(RolloutDevice), changes[start : start + _BATCH])
    return len(changes)
