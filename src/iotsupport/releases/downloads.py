"""Serve a stored release file over HTTP: ETag/304, Range/206/416, HEAD, Cache-Control.

The answer streams the file from the database a chunk at a time (storage.iter_file),
each chunk read in its own short connection: nothing holds the whole file, and nothing
holds the request's session or a pooled connection while a slow device reads.
"""

from __future__ import annotations

from flask import Response
from flask import request
from sqlalchemy import Engine

from iotsupport.names import attachment
from iotsupport.releases.cache import FileCache
from iotsupport.releases.storage import FileInfo
from iotsupport.releases.storage import iter_file


def file_response(
    engine: Engine,
    file: FileInfo,
    *,
    cache: FileCache | None = None,
    cache_control: str = "no-cache",
    download_name: str | None = None,
    mimetype: str = "application/octet-stream",
) -> Response:
    """The answer to a GET or HEAD of `file` for the current request.

    The ETag is the file's SHA-256 (strong: the bytes never change under it), so
    If-None-Match answers 304 and If-Range resumes only the same bytes. One byte range
    per request, as for assets (werkzeug's rules): a satisfiable Range answers 206, an
    unsatisfiable or multi-part one raises RequestedRangeNotSatisfiable (416, with
    ``Content-Range: bytes */size``). `engine` should be an autocommit engine
    (``Database.read_engine``): each chunk is then one statement, without BEGIN/COMMIT.
    With a `cache` (``AppState.release_cache``), the bytes come from this replica's copy,
    made on the first download.
    """
    response = Response(mimetype=mimetype, direct_passthrough=True)
    response.content_length = file.size
    response.set_etag(file.sha256)
    response.headers["Cache-Control"] = cache_control
    if download_name is not None:
        response.headers["Content-Disposition"] = attachment(download_name)
    response.make_conditional(request, accept_ranges=True, complete_length=file.size)
    if request.method != "GET":
        return response
    start, stop = 0, file.size
    if response.status_code == 206 and response.content_range is not None:
        start = response.content_range.start or 0
        stop = response.content_range.stop or file.size
    elif response.status_code != 200:
        return response
    if cache is not None:
        response.response = cache.iter_range(engine, file, start, stop)
    else:
        response.response = iter_file(engine, file, start, stop)
    return response
