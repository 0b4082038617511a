"""Crash groups: crashes with the same top frames (by function name, so a group survives
a rebuild) are one group. Only what a device credential proved counts."""

from __future__ import annotations

import hashlib
import json
import typing as t
from datetime import datetime

from sqlalchemy import delete
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from iotsupport.crashes.frames import Frame
from iotsupport.crashes.frames import backtrace_addresses
from iotsupport.crashes.frames import symbolize
from iotsupport.crashes.symbols import Symbols
from iotsupport.crashes.tables import CrashGroup
from iotsupport.crashes.tables import CrashOccurrence
from iotsupport.db.base import utcnow
from iotsupport.releases.tables import Release

TOP_FRAMES = 3


def group_key(frames: list[Frame], *, chip: str | None, cause: str | None) -> str:
    """The top frames' function names; unsymbolized, the top addresses (a group that
    symbols, when they arrive, replace with the named one)."""
    names = [frame.function for frame in frames if frame.function][:TOP_FRAMES]
    if names:
        return " < ".join(names)
    addresses = " < ".join(f"{frame.address:#010x}" for frame in frames[:TOP_FRAMES])
    return f"{chip or '?'} {cause or '?'} at {addresses}"


def record(
    session: Session,
    *,
    key: str,
    exception: str | None,
    frames: list[Frame],
    config_id: int,
    release_id: int | None,
    source: str,
    coredump_id: int | None = None,
    seen_at: datetime | None = None,
) -> CrashGroup:
    """One occurrence of the crash `key`: its group found or made; a resolved group seen
    again in a newer release than it was resolved in reopens as a regression."""
    group = _group(session, key, exception, frames)
    seen_at = seen_at or utcnow()
    if coredump_id is not None:
        session.execute(delete(CrashOccurrence).where(CrashOccurrence.coredump_id == coredump_id))
    session.add(
        CrashOccurrence(
            group_id=group.id,
            config_id=config_id,
            release_id=release_id,
            coredump_id=coredump_id,
            source=source,
            seen_at=seen_at,
        )
    )
    if group.status == "resolved" and release_id is not None:
        created = session.scalar(select(Release.created_at).where(Release.id == release_id))
        if created is not None and (group.resolved_after is None or created > group.resolved_after):
            group.status, group.regression = "open", True
    session.flush()
    return group


def _group(session: Session, key: str, exception: str | None, frames: list[Frame]) -> CrashGroup:
    signature = hashlib.sha256(key.encode()).hexdigest()
    found = session.scalars(select(CrashGroup).where(CrashGroup.signature == signature)).first()
    if found is not None:
        return found
    top = [frame.__dict__ for frame in frames[:TOP_FRAMES]]
    group = CrashGroup(
        signature=signature,
        key=key,
        exception=exception,
        frames=json.dumps(top),
        status="open",
        regression=False,
        created_at=utcnow(),
    )
    try:
        with session.begin_nested():
            session.add(group)
    except IntegrityError:  # another worker made it first
        return session.scalars(select(CrashGroup).where(CrashGroup.signature == signature)).one()
    return group


def set_status(session: Session, group: CrashGroup, status: str) -> None:
    if status == "resolved" and group.status != "resolved":
        newest = session.scalar(
            select(func.max(Release.created_at))
            .join(CrashOccurrence, CrashOccurrence.release_id == Release.id)
            .where(CrashOccurrence.group_id == group.id)
        )
        group.resolved_after = newest or utcnow()
    if status != "resolved":
        group.resolved_after = None
    if status != "open":
        group.regression = False
    group.status = status


def stats(session: Session, group_ids: list[int]) -> dict[int, dict[str, t.Any]]:
    """Per group: occurrences, devices and releases affected, first and last seen."""
    if not group_ids:
        return {}
    o = CrashOccurrence
    rows = session.execute(
        select(
            o.group_id,
            func.count(),
            func.count(o.config_id.distinct()),
            func.count(o.release_id.distinct()),
            func.min(o.seen_at),
            func.max(o.seen_at),
        )
        .where(o.group_id.in_(group_ids))
        .group_by(o.group_id)
    )
    return {
        gid: {
            "occurrences": n,
            "devices": d,
            "releases": r,
            "first_seen_at": first,
            "last_seen_at": last,
        }
        for gid, n, d, r, first, last in rows
    }


def record_backtrace_line(
    session: Session,
    *,
    config_id: int,
    release: Release | None,
    line: str,
    symbols: Symbols | None = None,
    seen_at: datetime | None = None,
) -> CrashGroup | None:
    """A panic's `Backtrace: 0x...:0x... ...` log line as a crash of the device (for the
    logs feature: call it with the device's release and, when it has them, its
    symbols.Symbols). None when the line holds no address."""
    addresses = backtrace_addresses(line)
    if not addresses:
        return None
    frames = symbolize(addresses, symbols)
    chip = release.chip if release is not None else None
    key = group_key(frames, chip=chip, cause=None)
    return record(
        session,
        key=key,
        exception=None,
        frames=frames,
        config_id=config_id,
        release_id=release.id if release is not None else None,
        source="backtrace",
        seen_at=seen_at,
    )
