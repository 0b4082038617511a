"""Device queries: one language to pick devices by their attributes and content
(README "Device queries"), compiled to one SQL condition on device_configs."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement
from sqlalchemy import select
from sqlalchemy.orm import Session

from iotsupport.configs.tables import DeviceConfig
from iotsupport.db.base import utcnow
from iotsupport.device_query.attributes import ATTRIBUTES
from iotsupport.device_query.compiler import Compiler
from iotsupport.device_query.parser import parse
from iotsupport.device_query.syntax import InvalidQuery
from iotsupport.device_query.syntax import Node

__all__ = ["ATTRIBUTES", "InvalidQuery", "matching_ids", "parse_query", "where_clause"]


def parse_query(text: str) -> Node:
    return parse(text, ATTRIBUTES)


def where_clause(text: str, dialect: str, now: datetime | None = None) -> ColumnElement[bool]:
    """The condition on device_configs that the query `text` stands for (relative times
    from `now`); a query that cannot be read or run is a 400 (InvalidQuery)."""
    return Compiler(dialect, now or utcnow()).compile(parse_query(text))


def matching_ids(session: Session, text: str, model_id: int | None = None) -> list[int]:
    """The ids of the configs that match, by id (of one model, with `model_id`)."""
    configs = DeviceConfig.__table__
    query = select(configs.c.id).where(where_clause(text, session.get_bind().dialect.name))
    if model_id is not None:
        query = query.where(configs.c.model_id == model_id)
    return list(session.scalars(query.order_by(configs.c.id)))
