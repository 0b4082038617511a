"""What a commit must announce over MQTT, written in that commit (the outbox).

Services call these in their transaction; nothing is sent until the transaction has
committed, and then by the relay (relay.py), one at a time across every process and
replica, at least once and in commit order, after every worker serves the change.
While announcements are off (no MQTT_URL) nothing is written.
"""

from __future__ import annotations

import typing as t
from collections.abc import Iterable

from sqlalchemy import insert
from sqlalchemy.orm import Session

from iotsupport.db import AFTER_COMMIT_KEY
from iotsupport.db import OUTBOX_KEY
from iotsupport.db import after_commit
from iotsupport.db.base import utcnow
from iotsupport.outbox.tables import Announcement

Kind = t.Literal["config", "desired", "asset"]
_BATCH = 500


def announce_config(session: Session, mac_address: str) -> None:
    """A new version of the device's config: the legacy broadcast, then its desired state."""
    _record(session, "config", [mac_address])


def announce_desired(session: Session, mac_addresses: Iterable[str]) -> None:
    """These devices' desired state changed (a firmware target, or the config is gone)."""
    _record(session, "desired", mac_addresses)


def announce_asset(session: Session, filename: str) -> None:
    _record(session, "asset", [filename])


def _record(session: Session, kind: Kind, subjects: Iterable[str]) -> None:
    wake: t.Callable[[], None] | None = session.info.get(OUTBOX_KEY)
    if wake is None:
        return  # announcements are off: nothing would ever take these rows
    now = utcnow()
    rows = [{"kind": kind, "subject": subject, "created_at": now} for subject in subjects]
    for start in range(0, len(rows), _BATCH):
        session.execute(insert(Announcement), rows[start : start + _BATCH])
    if rows and wake not in session.info.get(AFTER_COMMIT_KEY, ()):
        after_commit(session, wake)
