"""Release files in the database (SQLite and PostgreSQL) and their downloads."""

from __future__ import annotations

import hashlib
import io
import random
import tempfile
import threading
import tracemalloc
import typing as t

import pytest
import release_support
from conftest import assert_error
from flask import Flask
from release_support import CheckoutCounter
from release_support import add_download_route
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.test import EnvironBuilder

from iotsupport.extensions import state
from iotsupport.releases.storage import FileInfo
from iotsupport.releases.storage import StoredFileMissing
from iotsupport.releases.storage import delete_file
from iotsupport.releases.storage import find_file
from iotsupport.releases.storage import iter_file
from iotsupport.releases.storage import store_file
from iotsupport.releases.tables import StoredFileChunk

CHUNK = 1024
DATA = random.Random(15).randbytes(10 * CHUNK + 300)  # ten full chunks and a partial one
SHA = hashlib.sha256(DATA).hexdigest()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_app(request: pytest.FixtureRequest) -> Flask:
    """The app on SQLite, then on PostgreSQL, with a test-only download route."""
    app: Flask = request.getfixturevalue("app" if request.param == "sqlite" else "pg_app")
    add_download_route(app)
    return app


def session_of(app: Flask) -> Session:
    return state(app).database.session()


def put(app: Flask, data: bytes = DATA, chunk_size: int = CHUNK) -> FileInfo:
    return release_support.put(app, data, chunk_size)


def chunk_rows(app: Flask) -> list[tuple[str, int, int]]:
    with session_of(app) as session:
        chunk = StoredFileChunk
        query = select(chunk.sha256, chunk.seq, func.length(chunk.data)).order_by(chunk.seq)
        return [(row[0], row[1], row[2]) for row in session.execute(query)]


def test_stores_in_chunks_and_reads_any_range_back(any_app: Flask) -> None:
    stored = put(any_app)
    assert (stored.sha256, stored.size, stored.chunk_size, stored.chunk_count) == (
        SHA,
        len(DATA),
        CHUNK,
        11,
    )
    assert chunk_rows(any_app) == [(SHA, seq, CHUNK) for seq in range(10)] + [(SHA, 10, 300)]
    with session_of(any_app) as session:
        assert find_file(session, SHA) == stored
        assert find_file(session, "0" * 64) is None
    engine = state(any_app).database.read_engine
    assert b"".join(iter_file(engine, stored)) == DATA
    for start, stop in [(0, 0), (0, 1), (5, 1024), (1023, 1025), (1000, 9000), (10240, 10540)]:
        pieces = list(iter_file(engine, stored, start, stop))
        assert b"".join(pieces) == DATA[start:stop]
        assert all(0 < len(piece) <= CHUNK for piece in pieces)
    with pytest.raises(ValueError):
        next(iter_file(engine, stored, 10, len(DATA) + 1))


def test_the_same_bytes_are_stored_once(any_app: Flask) -> None:
    first = put(any_app)
    assert put(any_app, chunk_size=4096) == first
    assert len(chunk_rows(any_app)) == 11


def test_an_empty_file(any_app: Flask) -> None:
    stored = put(any_app, b"")
    assert (stored.size, stored.chunk_count, chunk_rows(any_app)) == (0, 0, [])
    assert list(iter_file(state(any_app).database.read_engine, stored)) == []
    response = any_app.test_client().get(f"/test/files/{stored.sha256}")
    assert (response.status_code, response.data) == (200, b"")


def test_a_stream_that_cannot_seek_is_spooled_first(any_app: Flask) -> None:
    class Pipe(io.RawIOBase):
        def __init__(self) -> None:
            self.source = io.BytesIO(DATA)

        def readable(self) -> bool:
            return True

        def readinto(self, buffer: t.Any) -> int:
            piece = self.source.read(min(len(buffer), 700))  # short reads, too
            buffer[: len(piece)] = piece
            return len(piece)

    with session_of(any_app) as session:
        stored = store_file(session, t.cast(t.BinaryIO, Pipe()), chunk_size=CHUNK)
        session.commit()
    assert stored.sha256 == SHA
    assert b"".join(iter_file(state(any_app).database.read_engine, stored)) == DATA


def test_nothing_is_stored_when_the_transaction_rolls_back(any_app: Flask) -> None:
    with session_of(any_app) as session:
        store_file(session, io.BytesIO(DATA), chunk_size=CHUNK)
        session.rollback()
        assert find_file(session, SHA) is None
    assert chunk_rows(any_app) == []


def test_delete(any_app: Flask) -> None:
    stored = put(any_app)
    with session_of(any_app) as session:
        assert delete_file(session, SHA) is True
        assert delete_file(session, SHA) is False
        session.commit()
    assert chunk_rows(any_app) == []
    with pytest.raises(StoredFileMissing):
        next(iter_file(state(any_app).database.read_engine, stored))


def test_download_headers_and_body(any_app: Flask) -> None:
    put(any_app)
    response = any_app.test_client().get(f"/test/files/{SHA}")
    assert response.status_code == 200
    assert response.data == DATA
    assert response.headers["ETag"] == f'"{SHA}"'
    assert response.headers["Content-Length"] == str(len(DATA))
    assert response.headers["Content-Type"] == "application/octet-stream"
    assert response.headers["Accept-Ranges"] == "bytes"
    assert response.headers["Cache-Control"] == "private, max-age=60"
    assert_error(any_app.test_client().get(f"/test/files/{'0' * 64}"), 404)


def test_head_and_304_read_no_chunk(any_app: Flask) -> None:
    put(any_app)
    counter = CheckoutCounter(any_app)
    client = any_app.test_client()
    head = client.head(f"/test/files/{SHA}")
    assert (head.status_code, head.data) == (200, b"")
    assert head.headers["Content-Length"] == str(len(DATA))
    assert head.headers["ETag"] == f'"{SHA}"'
    unchanged = client.get(f"/test/files/{SHA}", headers={"If-None-Match": f'"{SHA}"'})
    assert (unchanged.status_code, unchanged.data) == (304, b"")
    assert unchanged.headers["ETag"] == f'"{SHA}"'
    assert counter.count == 2  # the two lookups, no chunk
    assert client.get(f"/test/files/{SHA}", headers={"If-None-Match": '"other"'}).data == DATA


@pytest.mark.parametrize(
    ("header", "start", "stop", "chunks"),
    [
        ("bytes=0-0", 0, 1, 1),
        ("bytes=100-199", 100, 200, 1),
        ("bytes=1000-3100", 1000, 3101, 4),  # chunks 0 to 3
        ("bytes=-500", len(DATA) - 500, len(DATA), 2),  # a suffix: the last 500 bytes
        ("bytes=9000-", 9000, len(DATA), 3),
        ("bytes=0-99999", 0, len(DATA), 11),
    ],
)
def test_ranges_read_only_the_chunks_they_need(
    any_app: Flask, header: str, start: int, stop: int, chunks: int
) -> None:
    put(any_app)
    counter = CheckoutCounter(any_app)
    response = any_app.test_client().get(f"/test/files/{SHA}", headers={"Range": header})
    assert response.status_code == 206
    assert response.data == DATA[start:stop]
    assert response.headers["Content-Range"] == f"bytes {start}-{stop - 1}/{len(DATA)}"
    assert response.headers["Content-Length"] == str(stop - start)
    assert counter.count == 1 + chunks


@pytest.mark.parametrize("header", ["bytes=20000-", "bytes=0-1,5-6", "bytes=x"])
def test_unsatisfiable_ranges_are_416(any_app: Flask, header: str) -> None:
    put(any_app)
    response = any_app.test_client().get(f"/test/files/{SHA}", headers={"Range": header})
    assert_error(response, 416)
    assert response.headers["Content-Range"] == f"bytes */{len(DATA)}"


def test_if_range_resumes_only_the_same_bytes(any_app: Flask) -> None:
    put(any_app)
    client = any_app.test_client()
    same = client.get(
        f"/test/files/{SHA}", headers={"Range": "bytes=10-19", "If-Range": f'"{SHA}"'}
    )
    assert (same.status_code, same.data) == (206, DATA[10:20])
    other = client.get(f"/test/files/{SHA}", headers={"Range": "bytes=10-19", "If-Range": '"x"'})
    assert (other.status_code, other.data) == (200, DATA)


def test_the_stream_holds_no_connection_between_chunks(any_app: Flask) -> None:
    put(any_app)
    pool = state(any_app).database.engine.pool
    response = any_app.test_client().get(f"/test/files/{SHA}", buffered=False)
    pieces = iter(t.cast(t.Iterable[bytes], response.response))
    received = [next(pieces)]
    checked_out = [pool.checkedout()]  # type: ignore[attr-defined]
    for piece in pieces:
        received.append(piece)
        checked_out.append(pool.checkedout())  # type: ignore[attr-defined]
    response.close()
    assert b"".join(received) == DATA
    assert checked_out == [0] * len(received)


@pytest.mark.postgres
def test_two_uploads_of_the_same_bytes_at_once(pg_app: Flask) -> None:
    first = session_of(pg_app)
    stored = store_file(first, io.BytesIO(DATA), chunk_size=CHUNK)
    results: list[FileInfo] = []

    def second_upload() -> None:
        with session_of(pg_app) as second:
            results.append(store_file(second, io.BytesIO(DATA), chunk_size=CHUNK))
            second.commit()

    thread = threading.Thread(target=second_upload)
    thread.start()
    thread.join(0.5)  # it waits on the first upload's row
    assert thread.is_alive()
    first.commit()
    first.close()
    thread.join(10)
    assert results == [stored]
    assert len(chunk_rows(pg_app)) == 11


def traced_peak(run: t.Callable[[], None]) -> int:
    tracemalloc.start()
    try:
        run()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


class CountingSource(io.BufferedReader):
    """A file that remembers the largest read asked of it."""

    largest_read = 0

    def read(self, size: int | None = -1) -> bytes:
        assert size is not None and size >= 0, "a read of the whole file"
        self.largest_read = max(self.largest_read, size)
        return super().read(size)


def test_a_large_file_is_streamed_both_ways(any_app: Flask) -> None:
    """24 MiB through 256 KiB chunks: never more than a few chunks in memory."""
    app = any_app
    chunk = 256 * 1024
    warm_up = put(app, b"warm-up")  # first-use allocations (statement caches) are not chunks
    app.test_client().get(f"/test/files/{warm_up.sha256}")
    rng = random.Random(7)
    digest = hashlib.sha256()
    with tempfile.TemporaryFile() as spool:
        for _ in range(96):
            piece = rng.randbytes(chunk)
            digest.update(piece)
            spool.write(piece)
        spool.seek(0)
        source = CountingSource(t.cast(t.Any, spool))
        stored: list[FileInfo] = []

        def store() -> None:
            with session_of(app) as session:
                stored.append(store_file(session, t.cast(t.BinaryIO, source), chunk_size=chunk))
                session.commit()

        peak = traced_peak(store)
    assert stored[0].sha256 == digest.hexdigest()
    assert source.largest_read <= chunk
    assert peak < 3 * chunk, f"storing held {peak / chunk:.1f} chunks"

    # As a WSGI server runs the app (werkzeug's test client keeps the first piece it reads).
    environ = EnvironBuilder(path=f"/test/files/{stored[0].sha256}").get_environ()
    statuses: list[str] = []
    received = hashlib.sha256()

    def start_response(status: str, headers: list[tuple[str, str]], *_: t.Any) -> t.Any:
        statuses.append(status)

    def download() -> None:
        body = app(environ, start_response)
        for piece in body:
            received.update(piece)
        t.cast(t.Any, body).close()

    peak = traced_peak(download)
    assert statuses == ["200 OK"]
    assert received.hexdigest() == digest.hexdigest()
    assert peak < 3 * chunk, f"the download held {peak / chunk:.1f} chunks"
