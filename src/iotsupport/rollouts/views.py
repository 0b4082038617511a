"""What GET /api/rollouts/{id} shows: the stages, their counts and device lists.

While a rollout is active the device states are computed from the reports as they are
now (the same rules the evaluation uses, without writing); once it has ended, the states
it ended with.
"""

from __future__ import annotations

import typing as t
from collections import Counter
from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy.orm import Session

from iotsupport.db.base import utcnow
from iotsupport.device_models.tables import DeviceModel
from iotsupport.releases.tables import Release
from iotsupport.rollouts.health_watch import crash_of
from iotsupport.rollouts.health_watch import load_crashes
from iotsupport.rollouts.members import Member
from iotsupport.rollouts.members import load_members
from iotsupport.rollouts.progress import DONE
from iotsupport.rollouts.progress import device_state
from iotsupport.rollouts.progress import stage_plan
from iotsupport.rollouts.schemas import CountsSchema
from iotsupport.rollouts.schemas import DeviceProgressSchema
from iotsupport.rollouts.schemas import RolloutSchema
from iotsupport.rollouts.schemas import RolloutSummarySchema
from iotsupport.rollouts.schemas import StageSchema
from iotsupport.rollouts.tables import ACTIVE_STATES
from iotsupport.rollouts.tables import DEVICE_STATES
from iotsupport.rollouts.tables import DeviceState
from iotsupport.rollouts.tables import Rollout
from iotsupport.rollouts.tables import RolloutDevice


def counts(states: Sequence[str] | Counter[str]) -> CountsSchema:
    tally = states if isinstance(states, Counter) else Counter(states)
    return CountsSchema(
        **{state: tally[state] for state in DEVICE_STATES}, total=sum(tally.values())
    )


def summary_fields(rollout: Rollout, model: DeviceModel, tally: CountsSchema) -> dict[str, object]:
    return {
        "id": rollout.id,
        "model": model.code,
        "version": rollout.version,
        "sha256": rollout.sha256,
        "state": rollout.state,
        "paused_reason": rollout.paused_reason,
        "paused_detail": rollout.paused_detail,
        "health_window": rollout.health_window_seconds,
        "max_crash_rate": rollout.max_crash_rate,
        "compare_to_previous": rollout.compare_to_previous,
        "crash_free_margin": rollout.crash_free_margin,
        "current_stage": rollout.current_stage + 1,
        "stage_count": len(stage_plan(rollout)),
        "error_threshold": rollout.error_threshold,
        "approve_each_stage": rollout.approve_each_stage,
        "unverified_reports": rollout.unverified_reports,
        "counts": tally,
        "created_at": rollout.created_at,
        "created_by": rollout.created_by,
        "updated_at": rollout.updated_at,
        "finished_at": rollout.finished_at,
    }


def summaries(
    session: Session, model: DeviceModel, rollouts: Sequence[Rollout]
) -> list[RolloutSummarySchema]:
    """The rollouts with their device counts as last evaluated (one statement)."""
    rows = session.execute(
        select(RolloutDevice.rollout_id, RolloutDevice.state, func.count())
        .where(RolloutDevice.rollout_id.in_([rollout.id for rollout in rollouts]))
        .group_by(RolloutDevice.rollout_id, RolloutDevice.state)
    ).all()
    tallies: dict[int, Counter[str]] = {}
    for rollout_id, state, number in rows:
        tallies.setdefault(rollout_id, Counter())[state] = number
    return [
        RolloutSummarySchema.model_validate(
            summary_fields(rollout, model, counts(tallies.get(rollout.id, Counter())))
        )
        for rollout in rollouts
    ]


def rollout_view(session: Session, rollout: Rollout, timeout: timedelta) -> RolloutSchema:
    model = session.get_one(DeviceModel, rollout.model_id)
    members = load_members(session, rollout)
    release = session.get(Release, rollout.release_id) if rollout.release_id else None
    if rollout.state in ACTIVE_STATES and release is not None:
        now = utcnow()
        found = load_crashes(session, rollout, members)
        window = timedelta(seconds=rollout.health_window_seconds)
        for member in members:
            crash = crash_of(member, found, window, now)
            member.state, member.reason = device_state(member, release, now, timeout, crash)
    known = set(
        session.scalars(select(Release.version).where(Release.model_id == rollout.model_id))
    )
    stages = []
    for index, target in enumerate(stage_plan(rollout)):
        own = [member for member in members if member.stage == index]
        released = next((m.released_at for m in own if m.released_at is not None), None)
        if index > rollout.current_stage:
            stage_state = "waiting"
        elif all(member.state in DONE for member in own):
            stage_state = "done"
        else:
            stage_state = "running"
        stages.append(
            StageSchema(
                number=index + 1,
                target=target,
                state=stage_state,
                released_at=released,
                counts=counts([member.state for member in own]),
                devices=[device_view(member, known) for member in own],
            )
        )
    tally = counts([member.state for member in members])
    return RolloutSchema.model_validate({**summary_fields(rollout, model, tally), "stages": stages})


def device_view(member: Member, known: set[str]) -> DeviceProgressSchema:
    version = member.reported_version
    return DeviceProgressSchema(
        config_id=member.config_id,
        mac_address=member.mac_address,
        state=t.cast(DeviceState, member.state),
        reason=member.reason,
        from_version=member.from_version,
        reported_version=version,
        reported_sha256=member.reported_sha256,
        reported_at=member.reported_at,
        unknown_firmware=version is not None and version not in known,
        download_started_at=member.download_started_at,
    )
