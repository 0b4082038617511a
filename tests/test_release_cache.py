"""The per-replica disk cache of release files (releases/cache.py)."""

from __future__ import annotations

import hashlib
import os
import random
import time
from pathlib import Path

import pytest
import release_support
from conftest import make_settings
from flask import Flask
from flask.testing import FlaskClient
from release_support import CheckoutCounter
from release_support import add_download_route
from sqlalchemy import update

from iotsupport.extensions import state
from iotsupport.releases.cache import FileCache
from iotsupport.releases.cache import build_release_cache
from iotsupport.releases.storage import FileInfo
from iotsupport.releases.tables import StoredFileChunk

CHUNK = 1024
SIZE = 5 * CHUNK + 100


def content(seed: int) -> bytes:
    return random.Random(seed).randbytes(SIZE)


@pytest.fixture
def cache(tmp_path: Path) -> FileCache:
    return FileCache(tmp_path / "cache", max_bytes=3 * SIZE)


@pytest.fixture
def cached_client(app: Flask, cache: FileCache) -> FlaskClient:
    add_download_route(app, cache)
    return app.test_client()


def put(app: Flask, data: bytes) -> FileInfo:
    return release_support.put(app, data, CHUNK)


def test_the_first_download_fills_the_cache_the_next_read_no_chunk(
    app: Flask, cached_client: FlaskClient, cache: FileCache
) -> None:
    data = content(1)
    stored = put(app, data)
    assert cached_client.get(f"/test/files/{stored.sha256}").data == data
    assert (cache.directory / stored.sha256).read_bytes() == data
    assert cache.directory.stat().st_mode & 0o777 == 0o700
    taken = CheckoutCounter(app)
    assert cached_client.get(f"/test/files/{stored.sha256}").data == data
    for header, start, stop in [("bytes=0-0", 0, 1), ("bytes=1000-4200", 1000, 4201)]:
        partial = cached_client.get(f"/test/files/{stored.sha256}", headers={"Range": header})
        assert (partial.status_code, partial.data) == (206, data[start:stop])
    suffix = cached_client.get(f"/test/files/{stored.sha256}", headers={"Range": "bytes=-10"})
    assert suffix.data == data[-10:]
    assert taken.count == 4  # the lookups only
    assert os.listdir(cache.directory) == [stored.sha256]


def test_head_and_304_leave_the_cache_alone(
    app: Flask, cached_client: FlaskClient, cache: FileCache
) -> None:
    stored = put(app, content(2))
    assert cached_client.head(f"/test/files/{stored.sha256}").status_code == 200
    etag = f'"{stored.sha256}"'
    response = cached_client.get(f"/test/files/{stored.sha256}", headers={"If-None-Match": etag})
    assert response.status_code == 304
    assert not (cache.directory / stored.sha256).exists()


def test_a_file_over_the_limit_is_served_from_the_database(app: Flask, tmp_path: Path) -> None:
    data = content(3)
    stored = put(app, data)
    small = FileCache(tmp_path / "small", max_bytes=SIZE - 1)
    engine = state(app).database.read_engine
    assert b"".join(small.iter_range(engine, stored)) == data
    assert not (small.directory / stored.sha256).exists()


def test_the_least_recently_served_files_go_first(
    app: Flask, cached_client: FlaskClient, cache: FileCache
) -> None:
    files = [put(app, content(seed)) for seed in range(4)]
    for file in files[:3]:
        cached_client.get(f"/test/files/{file.sha256}")
    for age, file in zip((300, 200, 100), files[:3], strict=True):
        when = time.time() - age
        os.utime(cache.directory / file.sha256, (when, when))
    cached_client.get(f"/test/files/{files[0].sha256}")  # served again: now the most recent
    cached_client.get(f"/test/files/{files[3].sha256}")  # the fourth does not fit with all three
    assert sorted(os.listdir(cache.directory)) == sorted(
        [files[0].sha256, files[2].sha256, files[3].sha256]
    )


def test_a_folder_others_may_write_is_not_used(app: Flask, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    data = content(4)
    stored = put(app, data)
    planted = shared / stored.sha256
    planted.write_bytes(b"x" * SIZE)  # what someone else put there: never served
    unsafe = FileCache(shared, max_bytes=10 * SIZE)
    assert b"".join(unsafe.iter_range(state(app).database.read_engine, stored)) == data
    assert unsafe.safe() is False


def test_an_unusable_folder_means_the_database(app: Flask, tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    broken = FileCache(tmp_path / "a-file", max_bytes=10 * SIZE)
    data = content(5)
    stored = put(app, data)
    assert b"".join(broken.iter_range(state(app).database.read_engine, stored)) == data


def test_bytes_that_do_not_match_their_hash_are_never_cached(
    app: Flask, cached_client: FlaskClient, cache: FileCache
) -> None:
    stored = put(app, content(6))
    with state(app).database.session() as session:
        session.execute(
            update(StoredFileChunk).where(StoredFileChunk.seq == 2).values(data=b"\0" * CHUNK)
        )
        session.commit()
    response = cached_client.get(f"/test/files/{stored.sha256}")
    assert response.status_code == 200
    assert hashlib.sha256(response.data).hexdigest() != stored.sha256
    assert os.listdir(cache.directory) == []  # no copy, no temp file left behind


def test_a_stale_fill_is_cleaned_up(
    app: Flask, cached_client: FlaskClient, cache: FileCache
) -> None:
    cache.directory.mkdir(mode=0o700)
    stale = cache.directory / ".fill-dead"
    fresh = cache.directory / ".fill-busy"
    for path, age in ((stale, 7200), (fresh, 10)):
        path.write_bytes(b"partial")
        os.utime(path, (time.time() - age, time.time() - age))
    stored = put(app, content(7))
    cached_client.get(f"/test/files/{stored.sha256}")
    assert sorted(os.listdir(cache.directory)) == sorted([".fill-busy", stored.sha256])


def test_settings(tmp_path: Path) -> None:
    default = build_release_cache(make_settings("sqlite://"))
    assert default is not None
    assert default.directory.name == f"iotsupport-release-cache-{os.geteuid()}"
    assert default.max_bytes == 256 * 1024 * 1024
    configured = build_release_cache(
        make_settings("sqlite://", release_cache_dir=tmp_path, release_cache_max_bytes=1000)
    )
    assert configured is not None
    assert (configured.directory, configured.max_bytes) == (tmp_path, 1000)
    assert build_release_cache(make_settings("sqlite://", release_cache_max_bytes=0)) is None
