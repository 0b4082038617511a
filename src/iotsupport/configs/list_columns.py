"""Columns of a config's representation (and of the list) that other features supply.

The device (this package) is the hub and imports none of them: create_app hands the
route their `ListColumns` (`AppState.device_columns`), e.g. health's `online` and
`last_seen_at`. Each adds its outer joins and columns to the list's one query, says
which of its rows changed after a moment (`since`), and finishes a row in Python.
"""

from __future__ import annotations

import typing as t
from datetime import datetime

from sqlalchemy import ColumnElement
from sqlalchemy import Select
from sqlalchemy import select
from sqlalchemy.orm import Session

from iotsupport.configs.tables import DeviceConfig
from iotsupport.errors import NotFound

_ID: ColumnElement[int] = DeviceConfig.__table__.c.id


class ListColumns(t.Protocol):
    def extend(self, query: Select[t.Any], config_id: ColumnElement[int]) -> Select[t.Any]:
        """The list's query with this feature's joins and (labelled) columns."""
        ...

    def changed_after(self, moment: datetime) -> ColumnElement[bool]:
        """Its columns of a row changed after `moment`."""
        ...

    def finish(self, row: dict[str, t.Any], now: datetime) -> None:
        """Turn its raw columns of a list row into the fields the API shows, in place."""

    def for_config(self, session: Session, config_id: int, now: datetime) -> dict[str, t.Any]:
        """Its fields of one config's representation."""
        ...


def config_with_columns(
    session: Session, config_id: int, columns: t.Sequence[ListColumns], now: datetime
) -> tuple[DeviceConfig, dict[str, t.Any]]:
    """A config and the other features' fields of it, read in one statement (as the
    config alone was: GET /api/configs/{id} stays one statement)."""
    query: Select[t.Any] = select(DeviceConfig).where(DeviceConfig.id == config_id)
    for extra in columns:
        query = extra.extend(query, _ID)
    found = session.execute(query).unique().one_or_none()
    if found is None:
        raise NotFound(f"config {config_id} does not exist")
    config: DeviceConfig = found[0]
    fields = {key: value for key, value in found._mapping.items() if key != "DeviceConfig"}
    fields["last_fetched_at"] = config.last_fetched_at
    for extra in columns:
        extra.finish(fields, now)
    del fields["last_fetched_at"]
    return config, fields
