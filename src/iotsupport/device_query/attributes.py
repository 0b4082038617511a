"""The device's attributes a query can name, each a SQL expression of one config's row.

Each is a scalar expression correlated to `device_configs` (a subquery where it lives
in another table), so a compiled query is one WHERE clause that fits any statement
over device_configs. A new attribute (online state, recent crashes) is one more entry:
its name, its kind (which operators and values it takes) and its expression.
"""

from __future__ import annotations

import typing as t
from dataclasses import dataclass

from sqlalchemy import ColumnElement
from sqlalchemy import case
from sqlalchemy import literal_column
from sqlalchemy import select

from iotsupport.configs.tables import DeviceCheckin
from iotsupport.configs.tables import DeviceConfig
from iotsupport.configs.tables import sync_state_expression
from iotsupport.credentials.tables import DeviceCredential
from iotsupport.device_models.tables import DeviceModel

_CONFIGS = DeviceConfig.__table__
_CHECKINS = DeviceCheckin.__table__
_MODELS = DeviceModel.__table__
_CREDENTIALS = DeviceCredential.__table__

# text: == != (wildcards) < <= > >= in; choice: == != in, one of `choices`;
# time: < <= > >= with -1h or an ISO time, == null / != null; boolean: == != true false.
Kind = t.Literal["text", "choice", "time", "boolean"]


@dataclass(frozen=True)
class AttributeSpec:
    name: str
    kind: Kind
    expression: t.Callable[[], ColumnElement[t.Any]]
    description: str
    choices: tuple[str, ...] = ()
    ordered: bool = True  # text only: whether < and > mean something
    nullable: bool = True
    lower: bool = False  # text only: values are compared lowercased (MACs)


def _checkin(column: str) -> ColumnElement[t.Any]:
    return (
        select(_CHECKINS.c[column])
        .where(_CHECKINS.c.config_id == _CONFIGS.c.id)
        .scalar_subquery()
        .correlate(_CONFIGS)
    )


def _credential(column: str) -> ColumnElement[t.Any]:
    return (
        select(_CREDENTIALS.c[column])
        .where(_CREDENTIALS.c.config_id == _CONFIGS.c.id)
        .scalar_subquery()
        .correlate(_CONFIGS)
    )


def _model_code() -> ColumnElement[t.Any]:
    return (
        select(_MODELS.c.code)
        .where(_MODELS.c.id == _CONFIGS.c.model_id)
        .scalar_subquery()
        .correlate(_CONFIGS)
    )


def _sync_state() -> ColumnElement[t.Any]:
    return sync_state_expression(_CONFIGS.c.version, _checkin("fetched_version"))


def _credential_state() -> ColumnElement[t.Any]:
    return case(
        (_credential("issued_at").is_(None), literal_column("'none'")),
        (_credential("last_used_at").is_(None), literal_column("'issued'")),
        else_=literal_column("'used'"),
    )


ATTRIBUTES: dict[str, AttributeSpec] = {
    spec.name: spec
    for spec in (
        AttributeSpec(
            "mac",
            "text",
            lambda: _CONFIGS.c.mac_address,
            "MAC address, aa:bb:cc:dd:ee:ff (any case)",
            nullable=False,
            lower=True,
        ),
        AttributeSpec("name", "text", lambda: _CONFIGS.c.device_name, "the content's deviceName"),
        AttributeSpec("model", "text", _model_code, "the model's code (null: no model)"),
        AttributeSpec(
            "firmware_version",
            "text",
            lambda: _checkin("firmware_version"),
            "the firmware version the device last reported",
            ordered=False,  # "1.10.0" < "1.9.0" as text: only == != in
        ),
        AttributeSpec(
            "sync_state",
            "choice",
            _sync_state,
            "whether the device fetched the current version",
            choices=("in_sync", "pending", "never"),
            nullable=False,
        ),
        AttributeSpec(
            "last_seen", "time", lambda: _checkin("fetched_at"), "the device's last fetch"
        ),
        AttributeSpec(
            "credential",
            "choice",
            _credential_state,
            "none (no token), issued (never used), used",
            choices=("none", "issued", "used"),
            nullable=False,
        ),
        AttributeSpec(
            "schema_valid",
            "boolean",
            lambda: _CONFIGS.c.schema_valid,
            "the content meets its model's schema (null: no model)",
        ),
    )
}
