"""The list of configs: every summary, a search of their content, and what changed since a cursor.

Reads only (no Flask): the list route's queries, kept apart from ConfigService's writes.

The cursor of a list is the time it was read. `since=<cursor>` lists the configs that
changed after it (content, model schema, device fetch, credential issue or use) and
the configs deleted after it. Writes commit a moment after the time they record (a
device's fetch is written every CHECKIN_FLUSH_SECONDS; a bulk change takes a while), so
the window starts `overlap` seconds before the cursor: a row may come twice, never
not at all (a client applies rows by id, so a repeat changes nothing).
"""

from __future__ import annotations

import typing as t
from dataclasses import dataclass
from datetime import UTC
from datetime import datetime
from datetime import timedelta

from sqlalchemy import ColumnElement
from sqlalchemy import DateTime
from sqlalchemy import Select
from sqlalchemy import exists
from sqlalchemy import func
from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy import type_coerce
from sqlalchemy.orm import Session

from iotsupport.configs.list_columns import ListColumns
from iotsupport.configs.tables import ConfigDeletion
from iotsupport.configs.tables import DeviceCheckin
from iotsupport.configs.tables import DeviceConfig
from iotsupport.configs.tables import sync_state_expression
from iotsupport.credentials.tables import DeviceCredential
from iotsupport.db.base import utcnow
from iotsupport.device_models.tables import DeviceModel
from iotsupport.errors import InvalidInput

_CONFIGS = DeviceConfig.__table__
_CHECKINS = DeviceCheckin.__table__
_MODELS = DeviceModel.__table__
_CREDENTIALS = DeviceCredential.__table__
_DELETIONS = ConfigDeletion.__table__

# Built once: the whole list skips ORM row handling (several times faster at 10,000).
_SUMMARIES = (
    select(
        _CONFIGS.c.id,
        _CONFIGS.c.mac_address,
        _CONFIGS.c.device_name,
        _CONFIGS.c.device_entity_id,
        _CONFIGS.c.enable_ota,
        _MODELS.c.code.label("model"),
        _CONFIGS.c.schema_valid,
        _CONFIGS.c.version,
        # Raw timestamps: the list's serializer puts the UTC offset on (no per-value hook).
        type_coerce(_CONFIGS.c.updated_at, DateTime(timezone=True)).label("updated_at"),
        _CONFIGS.c.updated_by,
        type_coerce(_CHECKINS.c.fetched_at, DateTime(timezone=True)).label("last_fetched_at"),
        _CHECKINS.c.fetched_version.label("last_fetched_version"),
        sync_state_expression(_CONFIGS.c.version, _CHECKINS.c.fetched_version).label("sync_state"),
        _CHECKINS.c.with_credential.label("last_fetched_with_credential"),
        type_coerce(_CREDENTIALS.c.issued_at, DateTime(timezone=True)).label("issued_at"),
        type_coerce(_CREDENTIALS.c.last_used_at, DateTime(timezone=True)).label("last_used_at"),
        _CREDENTIALS.c.last_used_from,
    )
    .select_from(
        _CONFIGS.outerjoin(_CHECKINS, _CHECKINS.c.config_id == _CONFIGS.c.id)
        .outerjoin(_CREDENTIALS, _CREDENTIALS.c.config_id == _CONFIGS.c.id)
        .outerjoin(_MODELS, _MODELS.c.id == _CONFIGS.c.model_id)
    )
    .order_by(_CONFIGS.c.mac_address)
)
_CREDENTIAL_COLUMNS = ("issued_at", "last_used_at", "last_used_from")

CURSOR_PREFIX = "1."
CURSOR_PATTERN = r"^1\.[0-9]{1,19}$"
# A search's `match`: the matching line, cut to about this many characters around the text.
MATCH_WIDTH = 160
SEARCH_MAX_LENGTH = 200
# Up to this many search hits are read by id; more, and the whole list is read and kept.
MAX_LISTED_IDS = 500

Rows = t.Iterator[list[dict[str, t.Any]]]


@dataclass(frozen=True)
class Listing:
    """A list answer: its rows a slice at a time, the configs deleted (with `since`), and
    the cursor to ask for the next changes with."""

    slices: Rows
    deleted: list[int]
    cursor: str


def encode_cursor(moment: datetime) -> str:
    return f"{CURSOR_PREFIX}{round(moment.timestamp() * 1_000_000)}"


def decode_cursor(cursor: str) -> datetime:
    """The time a cursor stands for; a malformed one is a 400."""
    digits = cursor.removeprefix(CURSOR_PREFIX)
    if not cursor.startswith(CURSOR_PREFIX) or not digits.isascii() or not digits.isdigit():
        raise InvalidInput("since must be a cursor from an earlier list", {"since": cursor[:40]})
    try:
        return datetime.fromtimestamp(int(digits) / 1_000_000, UTC)
    except (OverflowError, ValueError, OSError):
        raise InvalidInput(
            "since is not a cursor this server made", {"since": cursor[:40]}
        ) from None


def matching_line(content: str, text: str) -> str | None:
    """The first line of `content` that contains `text` (ignoring case), trimmed; a long
    line is cut to MATCH_WIDTH characters around the match, with "…" where it was cut."""
    wanted = text.lower()
    for line in content.splitlines():
        if wanted not in line.lower():
            continue
        line = line.strip()
        if len(line) <= MATCH_WIDTH:
            return line
        # (A few characters change length when lowered; then the window is only near.)
        at = max(0, line.lower().find(wanted))
        start = max(0, min(at - MATCH_WIDTH // 3, len(line) - MATCH_WIDTH))
        end = start + MATCH_WIDTH
        return ("…" if start else "") + line[start:end] + ("…" if end < len(line) else "")
    return None


def _contains(session: Session, text: str) -> ColumnElement[bool]:
    """Content contains `text`, ignoring case, in SQL (the database does the search).

    PostgreSQL's lower() knows every alphabet. SQLite's knows only ASCII, which is
    enough for an ASCII search (SQLite's LIKE ignores ASCII case anyway); for any other
    it calls Python's str.lower (registered in db.build_engine), a little slower.
    """
    column: ColumnElement[str] = _CONFIGS.c.content
    sqlite = session.get_bind().dialect.name == "sqlite"
    lowered = func.unicode_lower(column) if sqlite and not text.isascii() else func.lower(column)
    return lowered.contains(text.lower(), autoescape=True)


class ConfigListing:
    def __init__(
        self,
        session: Session,
        *,
        overlap_seconds: float = 15.0,
        columns: t.Sequence[ListColumns] = (),
    ) -> None:
        """`overlap_seconds`: how far before a cursor `since` looks (see the module);
        `columns`: other features' columns of a row (configs/list_columns.py)."""
        self.session = session
        self.overlap = timedelta(seconds=overlap_seconds)
        self.columns = columns

    def read(
        self,
        *,
        model_id: int | None = None,
        search: str | None = None,
        since: str | None = None,
        size: int = 1000,
    ) -> Listing:
        """The summaries sorted by MAC, `size` at a time: every config, or those of a model,
        those whose content contains `search` (each with its `match`), those changed since
        a cursor. The rows are read now, while the session is open; the summaries are
        built a slice at a time as the caller iterates."""
        now = utcnow()
        cursor = encode_cursor(now)  # before the read: a change meanwhile comes next time
        query: Select[t.Any] = _SUMMARIES
        for extra in self.columns:
            query = extra.extend(query, _CONFIGS.c.id)
        if model_id is not None:
            query = query.where(_CONFIGS.c.model_id == model_id)
        found: dict[int, str | None] | None = None
        if search is not None:
            found = self.search(search, model_id)
            if len(found) <= MAX_LISTED_IDS:  # else every row is read, and these kept
                query = query.where(_CONFIGS.c.id.in_(list(found)))
        deleted: list[int] = []
        if since is not None:
            after = decode_cursor(since) - self.overlap
            query = query.where(
                or_(_changed_after(after), *(extra.changed_after(after) for extra in self.columns))
            )
            deleted = self.deleted_after(after)
        result = self.session.execute(query)
        columns = list(result.keys())
        rows = result.all()
        if found is not None:
            rows = [row for row in rows if row.id in found]

        def summary(row: t.Sequence[t.Any]) -> dict[str, t.Any]:
            # Plain dicts: several times faster to build than Row._asdict().
            values = _summary(dict(zip(columns, row, strict=True)))
            for extra in self.columns:
                extra.finish(values, now)
            if found is not None:
                values["match"] = found[values["id"]]
            return values

        slices = (
            [summary(row) for row in rows[start : start + size]]
            for start in range(0, len(rows), size)
        )
        return Listing(slices, deleted, cursor)

    def search(self, text: str, model_id: int | None = None) -> dict[int, str | None]:
        """The configs whose content contains `text` (ignoring case): id -> matching line.

        A query of its own, on the configs' table alone: the database cannot guess how
        many rows a LIKE keeps, and joined to the list's tables (and sorted with the
        content in each row) its plan went from milliseconds to seconds at 10,000.
        """
        query = select(_CONFIGS.c.id, _CONFIGS.c.content).where(_contains(self.session, text))
        if model_id is not None:
            query = query.where(_CONFIGS.c.model_id == model_id)
        return {row.id: matching_line(row.content, text) for row in self.session.execute(query)}

    def deleted_after(self, moment: datetime) -> list[int]:
        """Configs deleted after `moment` and not restored since."""
        query = (
            select(_DELETIONS.c.config_id)
            .where(
                _DELETIONS.c.deleted_at > moment,
                ~exists().where(_CONFIGS.c.id == _DELETIONS.c.config_id),
            )
            .distinct()
            .order_by(_DELETIONS.c.config_id)
        )
        return list(self.session.scalars(query))


def _changed_after(moment: datetime) -> ColumnElement[bool]:
    """Anything a list row shows changed after `moment` (a created config is updated too)."""
    return or_(
        _CONFIGS.c.updated_at > moment,
        _CHECKINS.c.fetched_at > moment,
        _CREDENTIALS.c.issued_at > moment,
        _CREDENTIALS.c.last_used_at > moment,
        _MODELS.c.updated_at > moment,  # a schema change re-checks its configs
    )


def _summary(row: dict[str, t.Any]) -> dict[str, t.Any]:
    """A list row with its credential's columns as one `credential` object (or None)."""
    credential = {name: row.pop(name) for name in _CREDENTIAL_COLUMNS}
    row["credential"] = credential if credential["issued_at"] is not None else None
    return row
