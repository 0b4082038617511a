"""Crashes of a release, from every source that knows of them: one function that release
health and rollouts ask, and that each source feeds.

Health feeds unexpected resets (PANIC, INT_WDT, TASK_WDT, WDT, BROWNOUT). The core
dump feature adds its dumps with `register(feed)`: a feed answers a `CrashQuery` with
`Crash` rows (device, when, release, whether a credential proved it).
"""

from __future__ import annotations

import typing as t
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from iotsupport.configs.tables import DeviceConfig
from iotsupport.health.tables import DeviceReset


@dataclass(frozen=True, slots=True)
class CrashQuery:
    version: str  # the release (the firmware version the device ran when it crashed)
    since: datetime
    model_id: int | None = None
    config_ids: Sequence[int] | None = None
    verified_only: bool = True  # only what a credential (or the broker's ACL) proved


@dataclass(frozen=True, slots=True)
class Crash:
    config_id: int
    at: datetime
    version: str | None
    verified: bool
    kind: str  # a reset reason (PANIC, ...), or e.g. "coredump"


CrashFeed = t.Callable[[Session, CrashQuery], t.Iterable[Crash]]
_FEEDS: list[CrashFeed] = []


def register(feed: CrashFeed) -> None:
    if feed not in _FEEDS:
        _FEEDS.append(feed)


def crashes(session: Session, query: CrashQuery) -> list[Crash]:
    """Every source's crashes of `query.version` since `query.since`, oldest first."""
    found = [crash for feed in _FEEDS for crash in feed(session, query)]
    return sorted(found, key=lambda crash: crash.at)


def unexpected_resets(session: Session, query: CrashQuery) -> list[Crash]:
    resets = DeviceReset.__table__.c
    statement = select(
        resets.config_id,
        resets.boot_at,
        resets.firmware_version,
        resets.verified,
        resets.reset_reason,
    ).where(
        resets.unexpected,
        resets.firmware_version == query.version,
        resets.boot_at >= query.since,
    )
    if query.verified_only:
        statement = statement.where(resets.verified)
    if query.config_ids is not None:
        statement = statement.where(resets.config_id.in_(list(query.config_ids)))
    if query.model_id is not None:
        configs = DeviceConfig.__table__.c
        statement = statement.join(DeviceConfig.__table__, configs.id == resets.config_id).where(
            configs.model_id == query.model_id
        )
    return [Crash(*row) for row in session.execute(statement)]


register(unexpected_resets)
