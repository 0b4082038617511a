"""The export in the browser (GET /api/configs/export): a zip of the old file layout."""

from __future__ import annotations

import typing as t
import zipfile
from collections.abc import Iterator
from datetime import datetime

from sqlalchemy import ColumnElement
from sqlalchemy import select

from iotsupport.configs.files import file_name
from iotsupport.configs.tables import DeviceConfig
from iotsupport.db import Database

EXPORT_BATCH = 500


class _Spool:
    """Where the zip writer writes; the bytes are handed on as they come (a zip written
    to a stream that cannot seek carries its sizes in each entry's header)."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.chunks.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def take(self) -> bytes:
        data = b"".join(self.chunks)
        self.chunks.clear()
        return data


def export_archive(
    database: Database,
    model_id: int | t.Literal["none"] | None = None,
    where: ColumnElement[bool] | None = None,
) -> Iterator[bytes]:
    """A zip of `aa-bb-cc-dd-ee-ff.json` files (every config, a model's, those without a
    model, or those `where` holds for: a device query's condition), each the content
    exactly as saved,
    made as it is sent: EXPORT_BATCH configs at a time are read (each batch in its own
    read), so a worker never holds the whole fleet."""
    spool = _Spool()
    with zipfile.ZipFile(spool, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        for rows in _batches(database, model_id, where):
            for mac, content, updated_at in rows:
                info = zipfile.ZipInfo(file_name(mac), date_time=_zip_time(updated_at))
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                archive.writestr(info, content.encode("utf-8"))
            yield spool.take()
    yield spool.take()


def _zip_time(moment: datetime) -> tuple[int, int, int, int, int, int]:
    """UTC, as zip has no time zone; zip cannot say a year before 1980."""
    at = moment.utctimetuple()
    return (max(1980, at.tm_year), at.tm_mon, at.tm_mday, at.tm_hour, at.tm_min, at.tm_sec)


def _batches(
    database: Database,
    model_id: int | t.Literal["none"] | None,
    where: ColumnElement[bool] | None,
) -> Iterator[list[t.Any]]:
    columns = DeviceConfig.__table__.c
    last = ""
    while True:
        query = (
            select(columns.mac_address, columns.content, DeviceConfig.updated_at)
            .where(columns.mac_address > last)
            .order_by(columns.mac_address)
            .limit(EXPORT_BATCH)
        )
        if model_id == "none":  # the list's "no model"
            query = query.where(columns.model_id.is_(None))
        elif model_id is not None:
            query = query.where(columns.model_id == model_id)
        if where is not None:
            query = query.where(where)
        with database.session(read_only=True) as session:
            rows = list(session.execute(query))
        if not rows:
            return
        yield rows
        last = rows[-1].mac_address
