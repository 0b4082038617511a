"""Rollouts that watch health: a device that updated and then crashed on the release
within the rollout's health window is `crashed` (it counts toward error_threshold), and
a stage may pause on its crash rate (`max_crash_rate`) or when the release is less
crash-free than the one before it (`compare_to_previous`, by `crash_free_margin` points).

Crashes come from health/crashes.py (unexpected resets; core dumps where that feature
feeds them); only what a credential proved counts unless the rollout takes
`unverified_reports`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from iotsupport.configs.tables import DeviceCheckin
from iotsupport.configs.tables import DeviceConfig
from iotsupport.health.crashes import Crash
from iotsupport.health.crashes import CrashQuery
from iotsupport.health.crashes import crashes
from iotsupport.health.kinds import BOOT_JITTER
from iotsupport.health.release_health import previous_release
from iotsupport.rollouts.members import Member
from iotsupport.rollouts.stages import percent
from iotsupport.rollouts.tables import Rollout

PREVIOUS_DAYS = 30  # the release before is judged over this many days
Crashes = dict[int, list[Crash]]


def load_crashes(session: Session, rollout: Rollout, members: Sequence[Member]) -> Crashes:
    """The crashes on the rollout's release of its devices since it began, per device."""
    ids = [member.config_id for member in members]
    if not ids:
        return {}
    query = CrashQuery(
        rollout.version,
        rollout.created_at - BOOT_JITTER,
        config_ids=ids,
        verified_only=not rollout.unverified_reports,
    )
    found: Crashes = {}
    for crash in crashes(session, query):
        found.setdefault(crash.config_id, []).append(crash)
    return found


def crash_of(member: Member, found: Crashes, window: timedelta, now: datetime) -> Crash | None:
    """The first crash of an updated device on the release: after its stage started and at
    most `window` after it updated (the state change was recorded when it was seen)."""
    own = found.get(member.config_id)
    if not own:
        return None
    updated = member.changed_at if member.state in ("updated", "crashed") else None
    until = (updated or now) + window
    # A boot's time is estimated (report time less uptime): a little slack before.
    since = member.released_at - BOOT_JITTER if member.released_at is not None else None
    for crash in own:
        if (since is None or crash.at >= since) and crash.at <= until:
            return crash
    return None


@dataclass(frozen=True)
class RolloutHealth:
    """A rollout's health rules as the admin gave them."""

    health_window_seconds: int = 3600
    max_crash_rate: str | None = None
    compare_to_previous: bool = False
    crash_free_margin: float = 5.0

    def columns(self) -> dict[str, object]:
        return {
            "health_window_seconds": self.health_window_seconds,
            "max_crash_rate": self.max_crash_rate,
            "compare_to_previous": self.compare_to_previous,
            "crash_free_margin": self.crash_free_margin,
        }


@dataclass(frozen=True)
class Pause:
    reason: str
    detail: str


def _window_text(rollout: Rollout) -> str:
    seconds = rollout.health_window_seconds
    return f"{seconds // 3600} h" if seconds % 3600 == 0 else f"{seconds // 60} min"


def judge_stage(
    session: Session, rollout: Rollout, stage: int, own: Sequence[Member]
) -> Pause | None:
    """Why the stage's health pauses the rollout, if it does."""
    size = len(own)
    crashed = [member for member in own if member.state == "crashed"]
    failed = sum(1 for member in own if member.state == "failed")
    number = stage + 1
    reasons = sorted({member.reason or "" for member in crashed})
    if _reached(rollout.error_threshold, failed + len(crashed), size):
        return Pause(
            "error_threshold",
            f"stage {number}: {failed} of {size} devices failed and {len(crashed)} crashed "
            f"({', '.join(reasons) or 'none'}) within {_window_text(rollout)} of updating; "
            f"error threshold {rollout.error_threshold}",
        )
    if _reached(rollout.max_crash_rate, len(crashed), size):
        return Pause(
            "crash_rate",
            f"stage {number}: {len(crashed)} of {size} devices crashed "
            f"({', '.join(reasons)}) within {_window_text(rollout)} of updating; "
            f"max crash rate {rollout.max_crash_rate}",
        )
    if rollout.compare_to_previous:
        return _compare(session, rollout, stage, own)
    return None


def _reached(share_text: str | None, count: int, size: int) -> bool:
    share = percent(share_text) if share_text is not None else None
    return share is not None and count > 0 and size > 0 and count * 100 >= share * size


def _compare(session: Session, rollout: Rollout, stage: int, own: Sequence[Member]) -> Pause | None:
    ran = [member for member in own if member.state in ("updated", "crashed")]
    if not ran:
        return None
    new = 100.0 * sum(1 for member in ran if member.state == "updated") / len(ran)
    before = previous_release(session, rollout.model_id, rollout.version)
    if before is None:
        return None
    old = crash_free(
        session,
        rollout.model_id,
        before.version,
        rollout.created_at - timedelta(days=PREVIOUS_DAYS),
        verified_only=not rollout.unverified_reports,
    )
    if old is None or new >= old - rollout.crash_free_margin:
        return None
    return Pause(
        "worse_than_previous",
        f"stage {stage + 1}: {new:.1f}% of devices crash-free on {rollout.version}, "
        f"{old:.1f}% on {before.version}; margin {rollout.crash_free_margin:g} points",
    )


def crash_free(
    session: Session, model_id: int, version: str, since: datetime, *, verified_only: bool
) -> float | None:
    """Crash-free % of a release, cheaply: devices reporting it now, or crashed on it."""
    checkins = DeviceCheckin.__table__.c
    configs = DeviceConfig.__table__.c
    column = checkins.verified_firmware_version if verified_only else checkins.firmware_version
    devices = set(
        session.scalars(
            select(checkins.config_id)
            .join(DeviceConfig.__table__, configs.id == checkins.config_id)
            .where(configs.model_id == model_id, column == version)
        )
    )
    query = CrashQuery(version, since, model_id=model_id, verified_only=verified_only)
    crashed = {crash.config_id for crash in crashes(session, query)}
    devices |= crashed
    if not devices:
        return None
    return 100.0 * (len(devices) - len(crashed)) / len(devices)
