"""Online state: `online` and `last_seen_at` of a config's representation and the list.

A device that says so on `iotsupport/devices/<mac>/status` (`online` retained at connect,
`offline` as its last will) is online or offline as it said, at once. Any other device is
online while its last contact (config fetch, health report, status, log) is at most
OFFLINE_AFTER_SECONDS old; null when nothing is known of it.
"""

from __future__ import annotations

import typing as t
from datetime import UTC
from datetime import datetime
from datetime import timedelta

from sqlalchemy import ColumnElement
from sqlalchemy import Select
from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy.orm import Session

from iotsupport.configs.tables import DeviceCheckin
from iotsupport.health.tables import DevicePresence

_PRESENCE = DevicePresence.__table__
_CHECKINS = DeviceCheckin.__table__.c
# The list's raw columns (popped by `finish`).
_CONNECTED = "presence_connected"
_REPORTED = "presence_reported_at"


def online(
    connected: bool | None, last_seen: datetime | None, now: datetime, offline_after: timedelta
) -> bool | None:
    if connected is not None:
        return connected
    if last_seen is None:
        return None
    return now - last_seen <= offline_after


def latest(*moments: datetime | None) -> datetime | None:
    known = [moment for moment in moments if moment is not None]
    return max(known) if known else None


class Presence:
    """Health's `ListColumns` (configs/list_columns.py)."""

    def __init__(self, offline_after_seconds: float) -> None:
        self.offline_after = timedelta(seconds=offline_after_seconds)

    def extend(self, query: Select[t.Any], config_id: ColumnElement[int]) -> Select[t.Any]:
        return query.outerjoin(_PRESENCE, _PRESENCE.c.config_id == config_id).add_columns(
            _PRESENCE.c.connected.label(_CONNECTED),
            _PRESENCE.c.last_report_at.label(_REPORTED),
        )

    def changed_after(self, moment: datetime) -> ColumnElement[bool]:
        return or_(_PRESENCE.c.last_report_at > moment, _PRESENCE.c.status_at > moment)

    def finish(self, row: dict[str, t.Any], now: datetime) -> None:
        connected = row.pop(_CONNECTED)
        reported = _aware(row.pop(_REPORTED))
        seen = latest(_aware(row.get("last_fetched_at")), reported)
        row["last_seen_at"] = seen
        row["online"] = online(connected, seen, now, self.offline_after)

    def for_config(self, session: Session, config_id: int, now: datetime) -> dict[str, t.Any]:
        found = session.execute(
            select(_PRESENCE.c.connected, _PRESENCE.c.last_report_at, _CHECKINS.fetched_at)
            .select_from(
                _PRESENCE.outerjoin(
                    DeviceCheckin.__table__, _CHECKINS.config_id == _PRESENCE.c.config_id
                )
            )
            .where(_PRESENCE.c.config_id == config_id)
        ).one_or_none()
        if found is None:
            fetched = session.scalar(
                select(_CHECKINS.fetched_at).where(_CHECKINS.config_id == config_id)
            )
            connected, seen = None, fetched
        else:
            connected, seen = found[0], latest(found[1], found[2])
        return {"online": online(connected, seen, now, self.offline_after), "last_seen_at": seen}


def _aware(moment: datetime | None) -> datetime | None:
    """The list reads raw timestamps (SQLite's have no offset): UTC."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)
