"""Rollouts: start one, pause, resume, cancel, approve, and evaluate its progress.

Every change of a rollout happens with its row locked (FOR UPDATE on PostgreSQL; SQLite
serializes writers anyway), by a request or by a worker's periodic evaluation, so several
workers and replicas can never advance one rollout twice. One active rollout per model
is the database's rule: `rollouts.active_model_id` is unique and set while it is active.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from datetime import datetime
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from iotsupport.configs.tables import DeviceCheckin
from iotsupport.configs.tables import DeviceConfig
from iotsupport.db.base import ANONYMOUS_ACTOR
from iotsupport.db.base import utcnow
from iotsupport.device_models.service import ModelService
from iotsupport.device_models.tables import DeviceModel
from iotsupport.errors import Conflict
from iotsupport.errors import NotFound
from iotsupport.releases.tables import Release
from iotsupport.rollouts.health_watch import RolloutHealth
from iotsupport.rollouts.members import add_members
from iotsupport.rollouts.members import load_members
from iotsupport.rollouts.members import reported
from iotsupport.rollouts.progress import Progress
from iotsupport.rollouts.stages import StageSpec
from iotsupport.rollouts.stages import assign
from iotsupport.rollouts.tables import ACTIVE_STATES
from iotsupport.rollouts.tables import Rollout
from iotsupport.rollouts.tables import RolloutDevice

log = logging.getLogger(__name__)

# Which states each action may start from.
ACTIONS: dict[str, tuple[str, ...]] = {
    "pause": ("running", "waiting_for_approval"),
    "resume": ("paused",),
    "cancel": ACTIVE_STATES,
    "approve": ("waiting_for_approval",),
}


class RolloutActive(Conflict):
    code = "rollout_active"


class RolloutState(Conflict):
    code = "rollout_state"


class RolloutService:
    def __init__(
        self,
        session: Session,
        *,
        actor: str = ANONYMOUS_ACTOR,
        timeout_seconds: float = 3600.0,
    ) -> None:
        self.session = session
        self.actor = actor
        self.timeout = timedelta(seconds=timeout_seconds)

    def start(
        self,
        code: str,
        version: str,
        stages: Sequence[StageSpec],
        *,
        error_threshold: str | None,
        approve_each_stage: bool,
        unverified_reports: bool = False,
        health: RolloutHealth | None = None,
    ) -> Rollout:
        model = ModelService(self.session).get(code)
        release = self.session.scalars(
            select(Release).where(Release.model_id == model.id, Release.version == version)
        ).one_or_none()
        if release is None:
            raise NotFound(
                f"model {code!r} has no release {version!r}", {"model": code, "version": version}
            )
        self._refuse_second(model)
        now = utcnow()
        rollout = Rollout(
            model_id=model.id,
            release_id=release.id,
            version=release.version,
            sha256=release.sha256,
            stages=json.dumps(list(stages)),
            error_threshold=error_threshold,
            approve_each_stage=approve_each_stage,
            unverified_reports=unverified_reports,
            **(health or RolloutHealth()).columns(),
            state="running",
            current_stage=0,
            acknowledged_stage=-1,
            active_model_id=model.id,
            created_at=now,
            created_by=self.actor,
            updated_at=now,
        )
        self.session.add(rollout)
        try:
            self.session.flush()  # waits for a concurrent start for the model, then fails
        except IntegrityError:  # (the session is unusable now: no lazy loads)
            raise self._active_conflict(code, None) from None
        reported_version = reported(unverified_reports)[1].label("firmware_version")
        devices = self.session.execute(
            select(DeviceConfig.id, DeviceConfig.mac_address, reported_version)
            .outerjoin(DeviceCheckin, DeviceCheckin.config_id == DeviceConfig.id)
            .where(DeviceConfig.model_id == model.id)
        ).all()
        chosen = assign(rollout.id, stages, [row.mac_address for row in devices])
        stage_of = {row.id: (chosen[row.mac_address], row.firmware_version) for row in devices}
        add_members(self.session, rollout.id, stage_of)
        progress = Progress(self.session, rollout, release)
        members = load_members(self.session, rollout)
        progress.release_stage(members, 0, now, self.timeout)
        progress.advance(members, now, self.timeout)
        log.info(
            "rollout %d of %s %s started by %s: %d devices, stages %s",
            rollout.id,
            code,
            release.version,
            self.actor,
            len(devices),
            rollout.stages,
        )
        return rollout

    def get(self, rollout_id: int) -> Rollout:
        rollout = self.session.get(Rollout, rollout_id)
        if rollout is None:
            raise NotFound(f"there is no rollout {rollout_id}", {"rollout": rollout_id})
        return rollout

    def of_model(self, code: str) -> tuple[DeviceModel, Sequence[Rollout]]:
        model = ModelService(self.session).get(code)
        rollouts = self.session.scalars(
            select(Rollout).where(Rollout.model_id == model.id).order_by(Rollout.id.desc())
        ).all()
        return model, rollouts

    def act(self, rollout_id: int, action: str) -> Rollout:
        """pause, resume, cancel or approve; 409 when the rollout's state does not allow it."""
        rollout = self.lock(rollout_id)
        if rollout is None:
            raise NotFound(f"there is no rollout {rollout_id}", {"rollout": rollout_id})
        if rollout.state not in ACTIONS[action]:
            raise RolloutState(
                f"a {rollout.state.replace('_', ' ')} rollout cannot {action}",
                {"state": rollout.state, "action": action},
            )
        now = utcnow()
        progress = self._progress(rollout)
        progress.evaluate(now, self.timeout)  # the devices as they are now
        if rollout.state not in ACTIONS[action]:  # it just completed or paused itself
            raise RolloutState(
                f"the rollout is {rollout.state.replace('_', ' ')} now",
                {"state": rollout.state, "action": action},
            )
        members = load_members(self.session, rollout)
        if action == "pause":
            rollout.state, rollout.paused_reason = "paused", "manual"
            rollout.paused_detail = None
        elif action == "resume":
            if rollout.paused_reason not in (None, "manual"):  # its failures were seen
                rollout.acknowledged_stage = rollout.current_stage
            rollout.state, rollout.paused_reason = "running", None
            rollout.paused_detail = None
        elif action == "approve":
            rollout.state = "running"
            progress.release_stage(members, rollout.current_stage + 1, now, self.timeout)
        else:
            rollout.state, rollout.paused_reason = "cancelled", None
            rollout.paused_detail = None
            rollout.active_model_id, rollout.finished_at = None, now
            progress.withdraw(members, now)
        rollout.updated_at = now
        progress.advance(members, now, self.timeout)
        log.info("rollout %d: %s by %s, now %s", rollout.id, action, self.actor, rollout.state)
        return rollout

    def evaluate(self, rollout_id: int, *, skip_locked: bool = False) -> bool:
        """Re-evaluate an active rollout; False when another worker holds it (or it ended)."""
        rollout = self.lock(rollout_id, skip_locked=skip_locked)
        if rollout is None or rollout.state not in ACTIVE_STATES:
            return False
        before = (rollout.state, rollout.current_stage)
        self._progress(rollout).evaluate(utcnow(), self.timeout)
        if (rollout.state, rollout.current_stage) != before:
            log.info(
                "rollout %d: %s, stage %d", rollout.id, rollout.state, rollout.current_stage + 1
            )
        return True

    def lock(self, rollout_id: int, *, skip_locked: bool = False) -> Rollout | None:
        query = (
            select(Rollout)
            .where(Rollout.id == rollout_id)
            .with_for_update(skip_locked=skip_locked)
            .execution_options(populate_existing=True)
        )
        return self.session.scalars(query).one_or_none()

    def _progress(self, rollout: Rollout) -> Progress:
        release = self.session.get(Release, rollout.release_id) if rollout.release_id else None
        if release is None:  # cannot happen while active: deleting it is refused
            raise NotFound(f"the release of rollout {rollout.id} is gone")
        return Progress(self.session, rollout, release)

    def _refuse_second(self, model: DeviceModel) -> None:
        active = self.session.scalar(select(Rollout.id).where(Rollout.active_model_id == model.id))
        if active is not None:
            raise self._active_conflict(model.code, active)

    @staticmethod
    def _active_conflict(code: str, active: int | None) -> RolloutActive:
        which = f" (rollout {active})" if active is not None else ""
        return RolloutActive(
            f"model {code!r} has an active rollout{which}; cancel it or let it finish first",
            {"model": code, "rollout": active},
        )


def record_download_start(session: Session, config_id: int, release_id: int, now: datetime) -> None:
    """The device began downloading the release of an active rollout it is offered."""
    active = select(Rollout.id).where(
        Rollout.release_id == release_id, Rollout.active_model_id.is_not(None)
    )
    session.execute(
        update(RolloutDevice)
        .where(
            RolloutDevice.config_id == config_id,
            RolloutDevice.rollout_id.in_(active),
            RolloutDevice.released_at.is_not(None),
        )
        .values(download_started_at=now)
        .execution_options(synchronize_session=False)
    )
