"""Helpers shared by the tests of release files: a test-only download route, storing."""

from __future__ import annotations

import io

from flask import Flask
from flask import Response
from sqlalchemy import event

from iotsupport.auth.access import public
from iotsupport.db import get_session
from iotsupport.errors import NotFound
from iotsupport.extensions import state
from iotsupport.releases.cache import FileCache
from iotsupport.releases.downloads import file_response
from iotsupport.releases.storage import FileInfo
from iotsupport.releases.storage import find_file
from iotsupport.releases.storage import store_file

DOWNLOAD = "/test/files/{}"


def add_download_route(app: Flask, cache: FileCache | None = None) -> None:
    """GET /test/files/<sha256>: the stored file, as a release route would serve it."""

    @app.get(DOWNLOAD.format("<sha256>"))
    @public
    def download(sha256: str) -> Response:
        file = find_file(get_session(), sha256)
        if file is None:
            raise NotFound("no such file")
        engine = state().database.read_engine
        return file_response(engine, file, cache=cache, cache_control="private, max-age=60")


def put(app: Flask, data: bytes, chunk_size: int) -> FileInfo:
    """Store `data` and commit."""
    with state(app).database.session() as session:
        stored = store_file(session, io.BytesIO(data), chunk_size=chunk_size)
        session.commit()
    return stored


class CheckoutCounter:
    """Counts connections taken from the app's pool: a request's lookup, then one per chunk."""

    def __init__(self, app: Flask) -> None:
        self.count = 0
        event.listen(state(app).database.engine.pool, "checkout", self._taken)

    def _taken(self, *_: object) -> None:
        self.count += 1
