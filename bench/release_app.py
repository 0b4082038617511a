"""The server as `iotsupport serve` builds it, plus one bench-only route that serves a
file stored in the database through releases.downloads.file_response (with the
replica's cache, as configured: RELEASE_CACHE_MAX_BYTES=0 turns it off).

bench/releases.py runs it under Granian: the bench-only route measures the stored file
alone; the real download route (GET /api/models/{code}/releases/{version}/image) has a
row of its own next to it.
"""

from __future__ import annotations

from flask import Flask
from flask import Response

from iotsupport.auth.access import public
from iotsupport.db import get_session
from iotsupport.errors import NotFound
from iotsupport.extensions import state
from iotsupport.releases.downloads import file_response
from iotsupport.releases.storage import find_file
from iotsupport.wsgi import create_server_app

STORED_FILE_PATH = "/bench/release-files/{sha256}"


def create_bench_app() -> Flask:
    app = create_server_app()

    @app.get(STORED_FILE_PATH.replace("{sha256}", "<sha256>"))
    @public
    def download_stored_file(sha256: str) -> Response:
        file = find_file(get_session(), sha256)
        if file is None:
            raise NotFound("no such file")
        return file_response(state().database.read_engine, file, cache=state().release_cache)

    return app
