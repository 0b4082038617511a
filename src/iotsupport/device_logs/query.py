"""Reading logs: newest first, filtered, paged back by a cursor, followed by `after`.

`latest` is the newest line of the scope (the device, or the fleet) when the query ran,
whatever the filters: a follower waits for lines newer than that, so a filter that
matches nothing new never makes it ask again at once. The filtered lines are read up to
that id, so a line written meanwhile is not skipped: the next follow returns it.
"""

from __future__ import annotations

import typing as t
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import BigInteger
from sqlalchemy import ColumnElement
from sqlalchemy import Select
from sqlalchemy import func
from sqlalchemy import literal_column
from sqlalchemy import select
from sqlalchemy import text
from sqlalchemy.orm import Session

from iotsupport.configs.tables import DeviceConfig
from iotsupport.device_logs.tables import DEVICE_LOGS
from iotsupport.device_logs.tables import FTS_TABLE
from iotsupport.device_models.tables import DeviceModel

_L = DEVICE_LOGS.c
_C = DeviceConfig.__table__.c
_M = DeviceModel.__table__.c


@dataclass(frozen=True)
class Selection:
    config_id: int | None = None  # None: the whole fleet
    since: datetime | None = None
    until: datetime | None = None
    max_level: int | None = None  # this level and worse
    tag: str | None = None
    q: str | None = None
    model: str | None = None
    firmware_version: str | None = None
    cursor: int | None = None  # lines older than this id
    after: int | None = None  # lines newer than this id
    limit: int = 100


@dataclass(frozen=True)
class Page:
    rows: list[t.Any]
    cursor: int | None
    latest: int


def newest_id(session: Session, config_id: int | None) -> int:
    query = select(func.max(_L.id))
    if config_id is not None:
        query = query.where(_L.config_id == config_id)
    return int(session.execute(query).scalar() or 0)


def _text_match(session: Session, q: str) -> ColumnElement[bool]:
    escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    if session.get_bind().dialect.name == "postgresql":
        return _L.message.ilike(f"%{escaped}%", escape="\\")  # pg_trgm's GIN index
    if len(q) < 3:  # the trigram index needs three characters
        return _L.message.ilike(f"%{escaped}%", escape="\\")
    phrase = '"' + q.replace('"', '""') + '"'
    matching = text(f"SELECT rowid FROM {FTS_TABLE} WHERE {FTS_TABLE} MATCH :phrase")
    return _L.id.in_(matching.bindparams(phrase=phrase).columns(rowid=BigInteger))


def read(session: Session, selection: Selection) -> Page:
    latest = newest_id(session, selection.config_id)
    query: Select[t.Any] = (
        select(
            _L.id,
            _L.config_id,
            _C.mac_address,
            _C.device_name,
            _L.received_at,
            _L.device_time,
            _L.uptime_ms,
            _L.level,
            _L.tag,
            _L.message,
            _L.firmware_version,
            _L.verified,
        )
        .join_from(DEVICE_LOGS, DeviceConfig.__table__, _C.id == _L.config_id)
        .where(_L.id <= latest)
    )
    if selection.config_id is not None:
        query = query.where(_L.config_id == selection.config_id)
    if selection.since is not None:
        query = query.where(_L.received_at >= selection.since)
    if selection.until is not None:
        query = query.where(_L.received_at < selection.until)
    if selection.max_level is not None:
        query = query.where(_L.level <= selection.max_level)
    if selection.tag is not None:
        query = query.where(_L.tag == selection.tag)
    if selection.firmware_version is not None:
        query = query.where(_L.firmware_version == selection.firmware_version)
    if selection.model is not None:
        model_ids = select(_M.id).where(_M.code == selection.model).scalar_subquery()
        query = query.where(_C.model_id == model_ids)
    if selection.q:
        query = query.where(_text_match(session, selection.q))
    if selection.cursor is not None:
        query = query.where(_L.id < selection.cursor)
    if selection.after is not None:
        # The oldest lines after it, so that a follower that fell behind misses none.
        query = query.where(_L.id > selection.after).order_by(_L.id.asc())
        rows = list(session.execute(query.limit(selection.limit)))
        rows.reverse()
        full = len(rows) == selection.limit
        return Page(rows, None, rows[0].id if full else max(latest, selection.after))
    rows = list(session.execute(query.order_by(_L.id.desc()).limit(selection.limit)))
    cursor = rows[-1].id if len(rows) == selection.limit else None
    return Page(rows, cursor, latest)


def devices_at_level(session: Session, max_level: int, since: datetime) -> list[t.Any]:
    """Devices that logged at this level or worse since then: id, lines, the last one's time."""
    query = (
        select(_L.config_id, func.count().label("lines"), func.max(_L.received_at).label("last"))
        .where(_L.received_at >= since, _L.level <= max_level)
        .group_by(_L.config_id)
        .order_by(_L.config_id)
    )
    if max_level <= 1:
        query = query.where(_L.level <= literal_column("1"))  # the partial index's own words
    return list(session.execute(query))
