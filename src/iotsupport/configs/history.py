"""Config history: the immutable versions, their diff, and the record of deletes.

Every read here is one statement, so it sees one consistent snapshot even in the
autocommit mode that GET requests use (no BEGIN/COMMIT round trips needed).
"""

from __future__ import annotations

import difflib
import json
import typing as t
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Row
from sqlalchemy import delete
from sqlalchemy import exists
from sqlalchemy import func
from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm import aliased

from iotsupport.configs.tables import ConfigDeletion
from iotsupport.configs.tables import ConfigHistory
from iotsupport.configs.tables import DeviceConfig
from iotsupport.configs.tables import HistoryEvent
from iotsupport.errors import Conflict
from iotsupport.errors import NotFound

_H = ConfigHistory.__table__
_ENTRY_COLUMNS = (
    _H.c.version,
    _H.c.event,
    _H.c.source_version,
    _H.c.device_name,
    _H.c.device_entity_id,
    _H.c.enable_ota,
    _H.c.saved_at,
    _H.c.saved_by,
    _H.c.change_set_id,
)


@dataclass(frozen=True)
class ConfigHistoryPage:
    config_id: int
    mac_address: str
    deleted: bool
    versions: list[dict[str, t.Any]]


@dataclass(frozen=True)
class ConfigDiff:
    config_id: int
    from_version: int
    to_version: int
    diff: str


def pretty(content: str) -> str:
    """The content re-indented, key order kept: formatting alone never shows in a diff.

    Characters are written as themselves; a version saved before lone surrogates were
    refused keeps them as escapes (they cannot be sent as UTF-8).
    """
    try:
        value = json.loads(content)
        text = json.dumps(value, indent=2, ensure_ascii=False)
    except RecursionError:  # saved deeper than MAX_DEPTH before that limit: shown as saved
        return content + "\n"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(value, indent=2)
    return text + "\n"


def unified_diff(old: str, new: str, old_name: str, new_name: str) -> str:
    lines = difflib.unified_diff(
        pretty(old).splitlines(keepends=True),
        pretty(new).splitlines(keepends=True),
        fromfile=old_name,
        tofile=new_name,
    )
    return "".join(lines)


class HistoryService:
    def __init__(self, session: Session, *, keep_versions: int = 50) -> None:
        self.session = session
        self.keep_versions = keep_versions

    def record(
        self,
        config: DeviceConfig,
        event: HistoryEvent,
        *,
        source_version: int | None = None,
        change_set_id: int | None = None,
    ) -> None:
        """Add `config`'s current version to its history, then prune the old ones."""
        self.session.add(
            ConfigHistory(
                config_id=config.id,
                mac_address=config.mac_address,
                version=config.version,
                event=event,
                source_version=source_version,
                content=config.content,
                device_name=config.device_name,
                device_entity_id=config.device_entity_id,
                enable_ota=config.enable_ota,
                saved_at=config.updated_at,
                saved_by=config.updated_by,
                model_id=config.model_id,
                change_set_id=change_set_id,
            )
        )
        try:
            self.session.flush()
        except IntegrityError:  # the unique (config, version) pair: never two saves of one
            raise Conflict(
                f"version {config.version} of config {config.id} was saved twice; try again"
            ) from None
        if config.version > self.keep_versions:
            self._prune(config.id, config.version)

    def _prune(self, config_id: int, newest: int) -> None:
        # Keep the first version and the newest keep_versions - 1.
        first = select(func.min(_H.c.version)).where(_H.c.config_id == config_id).scalar_subquery()
        self.session.execute(
            delete(ConfigHistory).where(
                ConfigHistory.config_id == config_id,
                ConfigHistory.version > first,
                ConfigHistory.version <= newest - self.keep_versions + 1,
            )
        )

    def versions(self, config_id: int) -> ConfigHistoryPage:
        """Every kept version, newest first, without content; deleted configs too."""
        live = exists().where(DeviceConfig.id == config_id)
        query = (
            select(_H.c.mac_address, live.label("live"), *_ENTRY_COLUMNS)
            .where(_H.c.config_id == config_id)
            .order_by(_H.c.version.desc())
        )
        rows = self.session.execute(query).all()
        if not rows:
            raise NotFound(f"config {config_id} has no history")
        entries = [row._asdict() for row in rows]
        for entry in entries:
            del entry["mac_address"], entry["live"]
        return ConfigHistoryPage(config_id, rows[0].mac_address, not rows[0].live, entries)

    def version(self, config_id: int, version: int) -> ConfigHistory:
        entry = self.session.scalars(
            select(ConfigHistory).where(
                ConfigHistory.config_id == config_id, ConfigHistory.version == version
            )
        ).one_or_none()
        if entry is None:
            raise NotFound(
                f"config {config_id} has no version {version} (unknown, or pruned)",
                {"config_id": config_id, "version": version},
            )
        return entry

    def newest(self, config_id: int) -> ConfigHistory | None:
        query = (
            select(ConfigHistory)
            .where(ConfigHistory.config_id == config_id)
            .order_by(ConfigHistory.version.desc())
            .limit(1)
        )
        return self.session.scalars(query).one_or_none()

    def diff(self, config_id: int, from_version: int, to_version: int | None) -> ConfigDiff:
        """Unified diff of two versions' pretty-printed content; `to` defaults to the newest."""
        newest = select(func.max(_H.c.version)).where(_H.c.config_id == config_id)
        wanted = _H.c.version == (
            to_version if to_version is not None else newest.scalar_subquery()
        )
        query = select(_H.c.version, _H.c.content, wanted.label("is_to")).where(
            _H.c.config_id == config_id, or_(_H.c.version == from_version, wanted)
        )
        rows = self.session.execute(query).all()
        old = _pick(rows, lambda row: row.version == from_version, config_id, from_version)
        new = _pick(rows, lambda row: bool(row.is_to), config_id, to_version)
        text = unified_diff(
            old.content, new.content, f"version {old.version}", f"version {new.version}"
        )
        return ConfigDiff(config_id, old.version, new.version, text)

    def deleted(self) -> list[dict[str, t.Any]]:
        """The latest delete of each MAC whose config is still gone, newest first."""
        later = aliased(ConfigDeletion)
        d = ConfigDeletion
        query = (
            select(
                d.config_id,
                d.mac_address,
                d.version,
                d.deleted_at,
                d.deleted_by,
                exists().where(DeviceConfig.mac_address == d.mac_address).label("mac_in_use"),
            )
            .where(
                ~exists().where(later.mac_address == d.mac_address, later.id > d.id),
                ~exists().where(DeviceConfig.id == d.config_id),
            )
            .order_by(d.deleted_at.desc(), d.id.desc())
        )
        return [row._asdict() for row in self.session.execute(query)]

    def latest_deletion(self, mac_address: str) -> ConfigDeletion | None:
        query = (
            select(ConfigDeletion)
            .where(ConfigDeletion.mac_address == mac_address)
            .order_by(ConfigDeletion.id.desc())
            .limit(1)
        )
        return self.session.scalars(query).one_or_none()

    def record_deletion(self, config: DeviceConfig, deleted_at: datetime, actor: str) -> None:
        self.session.add(
            ConfigDeletion(
                config_id=config.id,
                mac_address=config.mac_address,
                version=config.version,
                config_created_at=config.created_at,
                deleted_at=deleted_at,
                deleted_by=actor,
            )
        )


def _pick(
    rows: t.Sequence[Row[t.Any]],
    matches: t.Callable[[Row[t.Any]], bool],
    config_id: int,
    version: int | None,
) -> Row[t.Any]:
    found = next((row for row in rows if matches(row)), None)
    if found is None:
        which = f"version {version}" if version is not None else "any version"
        raise NotFound(
            f"config {config_id} has no {which} (unknown, or pruned)",
            {"config_id": config_id, "version": version},
        )
    return found
