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
from sqlalchemy.orm import Session


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
