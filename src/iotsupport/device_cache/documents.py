"""What a device fetch reads, from the database: one device's, some, or all of them."""

from __future__ import annotations

import typing as t
from collections.abc import Iterable
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import replace

from sqlalchemy import Connection
from sqlalchemy import Row
from sqlalchemy import bindparam
from sqlalchemy import case
from sqlalchemy import select
from sqlalchemy.orm import Session

from iotsupport.configs.tables import DeviceConfig
from iotsupport.credentials.tables import DeviceCredential
from iotsupport.credentials.tokens import CredentialState


@dataclass(frozen=True, slots=True)
class DeviceDocument:
    """What a device fetch needs: the ETag, and the content unless the device has it;
    plus the config and version, for the device's check-in, and its credential."""

    config_id: int
    version: int
    etag: str
    content: str | None
    credential: CredentialState | None
    # Served from memory while the database is out of reach (the answer says so).
    stale: bool = False

    def for_client(self, known_etags: t.Container[str]) -> DeviceDocument:
        """This document without its content when the client holds this ETag."""
        if self.content is None or self.etag not in known_etags:
            return self
        return replace(self, content=None)

    def marked_stale(self) -> DeviceDocument:
        return replace(self, stale=True)


_CONFIGS = DeviceConfig.__table__.c
_CREDENTIALS = DeviceCredential.__table__.c
_JOINED = DeviceConfig.__table__.outerjoin(
    DeviceCredential.__table__, _CREDENTIALS.config_id == _CONFIGS.id
)
_CREDENTIAL_COLUMNS = (
    _CREDENTIALS.token_hash,
    _CREDENTIALS.previous_hash,
    _CREDENTIALS.previous_expires_at,
    _CREDENTIALS.broker_hash,
)
# The statements are built once: that halves SQLAlchemy's per-call work.
# One device, when the worker cannot answer from memory. When the device already holds
# the current version the content is not even read; its credential comes in the same
# statement, so a fetch stays one round trip.
_ONE = (
    select(
        _CONFIGS.id,
        _CONFIGS.mac_address,
        _CONFIGS.version,
        _CONFIGS.etag,
        case(
            (_CONFIGS.etag.in_(bindparam("known_etags", expanding=True)), None),
            else_=_CONFIGS.content,
        ).label("content"),
        *_CREDENTIAL_COLUMNS,
    )
    .select_from(_JOINED)
    .where(_CONFIGS.mac_address == bindparam("mac"))
)
_ALL = select(
    _CONFIGS.id,
    _CONFIGS.mac_address,
    _CONFIGS.version,
    _CONFIGS.etag,
    _CONFIGS.content,
    *_CREDENTIAL_COLUMNS,
).select_from(_JOINED)
_SOME = _ALL.where(_CONFIGS.mac_address.in_(bindparam("macs", expanding=True)))
# MACs per statement when reloading many (a bulk change): well under every driver's
# parameter limit.
_BATCH = 500


def read_document(
    session: Session, mac: str, known_etags: t.Collection[str]
) -> DeviceDocument | None:
    row = session.execute(_ONE, {"mac": mac, "known_etags": list(known_etags)}).one_or_none()
    return _document(row) if row is not None else None


def read_all(connection: Connection) -> Iterator[tuple[str, DeviceDocument]]:
    for row in connection.execute(_ALL.execution_options(yield_per=1000)):
        yield row.mac_address, _document(row)


def read_some(connection: Connection, macs: Iterable[str]) -> dict[str, DeviceDocument]:
    """The documents of these MACs; a MAC without a config is absent."""
    wanted = list(macs)
    found: dict[str, DeviceDocument] = {}
    for start in range(0, len(wanted), _BATCH):
        batch = wanted[start : start + _BATCH]
        for row in connection.execute(_SOME, {"macs": batch}):
            found[row.mac_address] = _document(row)
    return found


def _document(row: Row[t.Any, *tuple[t.Any, ...]]) -> DeviceDocument:
    credential = None
    if row.token_hash is not None:
        credential = CredentialState(
            row.id,
            row.mac_address,
            row.token_hash,
            row.previous_hash,
            row.previous_expires_at,
            row.broker_hash,
        )
    return DeviceDocument(row.id, row.version, row.etag, row.content, credential)
