"""A rollout's progress, recomputed from what its devices report.

Each device of a rollout is, for the release (`device_state`):

- updated: its last report names the release's version (and, when it sent
  X-Firmware-SHA256, the SHA-256 of the release file or of the image);
- failed: after starting a download of the release it reported another version (or the
  version with another SHA-256), or its stage started more than
  ROLLOUT_DEVICE_TIMEOUT_SECONDS ago (counted from its download when that began later)
  and it is not updated;
- downloading: it started a download of the release image and has not reported since;
- crashed: updated, then crashed on the release within the rollout's health window
  (health_watch.py);
- pending: none of these yet (also every device of a stage that has not started).

A stage is done when each of its devices is updated, failed or crashed. `advance` then
starts the next stage (or waits for an approval, or completes the rollout); failures and
crashes of the current stage at or above the error threshold pause it instead, as do
its health rules (health_watch.py), saying why (`paused_detail`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from collections.abc import Sequence
from datetime import datetime
from datetime import timedelta

from sqlalchemy import delete
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.orm import Session

from iotsupport.configs.tables import DeviceCheckin
from iotsupport.configs.tables import DeviceConfig
from iotsupport.health.crashes import Crash
from iotsupport.outbox import announce_desired
from iotsupport.releases.tables import Release
from iotsupport.rollouts.health_watch import Crashes
from iotsupport.rollouts.health_watch import crash_of
from iotsupport.rollouts.health_watch import judge_stage
from iotsupport.rollouts.health_watch import load_crashes
from iotsupport.rollouts.members import Member
from iotsupport.rollouts.members import add_members
from iotsupport.rollouts.members import load_members
from iotsupport.rollouts.members import reported
from iotsupport.rollouts.stages import StageSpec
from iotsupport.rollouts.tables import DeviceState
from iotsupport.rollouts.tables import FirmwareTarget as TargetRow
from iotsupport.rollouts.tables import Rollout
from iotsupport.rollouts.tables import RolloutDevice
from iotsupport.rollouts.targets import current_targets
from iotsupport.rollouts.targets import set_targets

_BATCH = 500
DONE: tuple[DeviceState, ...] = ("updated", "failed", "crashed")


def device_state(
    member: Member,
    release: Release,
    now: datetime,
    timeout: timedelta,
    crash: Crash | None = None,
) -> tuple[DeviceState, str | None]:
    """(state, why it failed or crashed) of one device, from its row and its last report;
    `crash`: its crash on the release that counts (health_watch.crash_of)."""
    wrong = "old_version"
    if member.reported_version == release.version:
        sha256 = member.reported_sha256
        if sha256 is None or sha256 in (release.sha256, release.image_sha256):
            return ("crashed", crash.kind) if crash is not None else ("updated", None)
        wrong = "sha256_mismatch"
    if member.released_at is None:
        return "pending", None
    started = member.download_started_at
    if started is not None and member.reported_at is not None and member.reported_at > started:
        return "failed", wrong
    since = max(member.released_at, started) if started is not None else member.released_at
    if now - since > timeout:
        return "failed", "timeout"
    return ("downloading" if started is not None else "pending"), None


def stage_plan(rollout: Rollout) -> list[StageSpec]:
    plan: list[StageSpec] = json.loads(rollout.stages)
    return plan


class Progress:
    """Evaluates one locked rollout in the caller's transaction; what changed for devices
    is announced (outbox) once it commits."""

    def __init__(self, session: Session, rollout: Rollout, release: Release) -> None:
        self.session = session
        self.rollout = rollout
        self.release = release
        self.last_stage = len(stage_plan(rollout)) - 1
        self.crashes: Crashes = {}

    def evaluate(self, now: datetime, timeout: timedelta) -> None:
        """Bring membership, device states and the rollout's state up to date."""
        members = self._sync_members(load_members(self.session, self.rollout), now)
        self.crashes = load_crashes(self.session, self.rollout, members)
        self._update_states(members, now, timeout)
        self.advance(members, now, timeout)

    def advance(self, members: Sequence[Member], now: datetime, timeout: timedelta) -> None:
        rollout = self.rollout
        while rollout.state == "running":
            stage = rollout.current_stage
            own = [member for member in members if member.stage == stage]
            pause = None
            # Every stage released and not acknowledged: a device of an earlier stage may
            # crash after its stage was done.
            for earlier in range(rollout.acknowledged_stage + 1, stage + 1):
                theirs = own if earlier == stage else [m for m in members if m.stage == earlier]
                pause = pause or judge_stage(self.session, rollout, earlier, theirs)
            if pause is not None:
                self._set_state("paused", now, reason=pause.reason, detail=pause.detail[:255])
            elif any(member.state not in DONE for member in own):
                return
            elif stage == self.last_stage:
                self._set_state("completed", now)
            elif rollout.approve_each_stage:
                self._set_state("waiting_for_approval", now)
            else:
                self.release_stage(members, stage + 1, now, timeout)

    def release_stage(
        self, members: Sequence[Member], stage: int, now: datetime, timeout: timedelta
    ) -> None:
        """Start `stage`: its devices get the release as their target (and hear of it)."""
        self.rollout.current_stage = stage
        self.rollout.updated_at = now
        self._offer([member for member in members if member.stage == stage], now)
        self._update_states(members, now, timeout)

    def withdraw(self, members: Sequence[Member], now: datetime) -> None:
        """A cancel: devices offered the release that are pending or failed get back the
        target they had before (or none). Devices that are downloading keep it (they may
        be installing it, and their report may still be on its way), as do updated ones."""
        offered = [
            m for m in members if m.released_at is not None and m.state in ("pending", "failed")
        ]
        targets = current_targets(self.session, [member.config_id for member in offered])
        ours = [m for m in offered if targets.get(m.config_id, (0, None))[1] == self.rollout.id]
        previous = dict(
            self.session.execute(
                select(RolloutDevice.config_id, RolloutDevice.previous_release_id).where(
                    RolloutDevice.rollout_id == self.rollout.id,
                    RolloutDevice.config_id.in_([member.config_id for member in ours]),
                )
            ).all()
        )
        releases = {
            row.id: row
            for row in self.session.execute(
                select(Release.id, Release.version, Release.sha256).where(
                    Release.id.in_({value for value in previous.values() if value is not None})
                )
            )
        }
        by_release: dict[int | None, list[int]] = {}
        for member in ours:
            back = previous.get(member.config_id)
            by_release.setdefault(back if back in releases else None, []).append(member.config_id)
        for release_id, ids in by_release.items():
            set_targets(self.session, ids, release_id, None, now, existing=targets)
            self._announce(ids)

    def _offer(self, members: Sequence[Member], now: datetime) -> None:
        ids = [member.config_id for member in members]
        if not ids:
            return
        targets = current_targets(self.session, ids)
        self.session.execute(
            update(RolloutDevice),
            [
                {
                    "rollout_id": self.rollout.id,
                    "config_id": config_id,
                    "released_at": now,
                    "previous_release_id": targets[config_id][0] if config_id in targets else None,
                }
                for config_id in ids
            ],
        )
        for member in members:
            member.released_at = now
        set_targets(self.session, ids, self.release.id, self.rollout.id, now, existing=targets)
        self._announce(ids)

    def _announce(self, config_ids: Iterable[int]) -> None:
        """These devices' desired state changed: announced once the transaction commits
        (the relay reads it then)."""
        ids = list(config_ids)
        for start in range(0, len(ids), _BATCH):
            query = select(DeviceConfig.mac_address)
            query = query.where(DeviceConfig.id.in_(ids[start : start + _BATCH]))
            announce_desired(self.session, self.session.scalars(query).all())

    def _sync_members(self, members: list[Member], now: datetime) -> list[Member]:
        """Devices added to the model join the last stage; devices that left it leave."""
        rollout = self.rollout
        gone = [member.config_id for member in members if member.model_id != rollout.model_id]
        if gone:
            rows = RolloutDevice.__table__.c
            self.session.execute(
                delete(RolloutDevice).where(rows.rollout_id == rollout.id, rows.config_id.in_(gone))
            )
            self.session.execute(
                delete(TargetRow).where(
                    TargetRow.config_id.in_(gone), TargetRow.rollout_id == rollout.id
                )
            )
        known = select(RolloutDevice.config_id).where(RolloutDevice.rollout_id == rollout.id)
        version = reported(rollout.unverified_reports)[1]
        new = self.session.execute(
            select(DeviceConfig.id, version.label("firmware_version"))
            .outerjoin(DeviceCheckin, DeviceCheckin.config_id == DeviceConfig.id)
            .where(DeviceConfig.model_id == rollout.model_id, DeviceConfig.id.not_in(known))
        ).all()
        if not gone and not new:
            return members
        if new:
            joining = {row.id: (self.last_stage, row.firmware_version) for row in new}
            add_members(self.session, rollout.id, joining)
        members = load_members(self.session, rollout)
        if new and rollout.current_stage == self.last_stage:
            fresh = {row.id for row in new}
            self._offer([member for member in members if member.config_id in fresh], now)
        return members

    def _update_states(self, members: Sequence[Member], now: datetime, timeout: timedelta) -> None:
        changes = []
        window = timedelta(seconds=self.rollout.health_window_seconds)
        for member in members:
            crash = crash_of(member, self.crashes, window, now)
            state, reason = device_state(member, self.release, now, timeout, crash)
            if (state, reason) != (member.state, member.reason):
                member.state, member.reason, member.changed_at = state, reason, now
                changes.append(
                    {
                        "rollout_id": self.rollout.id,
                        "config_id": member.config_id,
                        "state": state,
                        "reason": reason,
                        "changed_at": now,
                    }
                )
        for start in range(0, len(changes), _BATCH):
            self.session.execute(update(RolloutDevice), changes[start : start + _BATCH])

    def _set_state(
        self, state: str, now: datetime, *, reason: str | None = None, detail: str | None = None
    ) -> None:
        rollout = self.rollout
        rollout.state = state
        rollout.paused_reason = reason
        rollout.paused_detail = detail
        rollout.updated_at = now
        if state in ("completed", "cancelled"):
            rollout.active_model_id = None
            rollout.finished_at = now
