"""Firmware assets over the API: signed uploads, every refusal, downloads with ETag and Range."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import tracemalloc
import typing as t
import unicodedata
from collections.abc import Iterator
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from pathlib import Path

import pytest
from assets_support import BOUNDARY
from assets_support import build_assets_app
from assets_support import contents
from assets_support import iso_now
from assets_support import legacy_fields
from assets_support import multipart
from assets_support import rsa_key
from assets_support import signed
from assets_support import signed_fields
from assets_support import temp_files
from assets_support import upload
from assets_support import write_private_key
from assets_support import write_public_key
from conftest import RecordingPublisher
from conftest import assert_error
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine
from sqlalchemy import text

from iotsupport.assets.names import FILENAME_PATTERN
from iotsupport.assets.names import UnsafeFilename
from iotsupport.assets.names import check_filename
from iotsupport.assets.signing import sign_timestamp
from iotsupport.assets.signing import sign_upload
from iotsupport.errors import StartupError
from iotsupport.extensions import state
from iotsupport.notifications import Payload

TOPIC = "iotsupport/updates/assets"
SHA_OF_X = hashlib.sha256(b"x").hexdigest()
FIRMWARE = bytes(range(256)) * 40  # 10,240 bytes, every byte value


@pytest.fixture
def assets_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "assets"
    folder.mkdir()
    return folder


@pytest.fixture
def key_path(tmp_path: Path) -> Path:
    return write_private_key(tmp_path / "signing.pem", rsa_key())


@pytest.fixture
def make_app(database_url: str) -> Iterator[t.Callable[..., Flask]]:
    apps: list[Flask] = []

    def factory(assets_dir: Path | None, key_path: Path | None, **overrides: t.Any) -> Flask:
        app = build_assets_app(database_url, assets_dir, key_path, **overrides)
        apps.append(app)
        return app

    yield factory
    for app in apps:
        state(app).database.dispose()


@pytest.fixture
def app(
    database_url: str, assets_dir: Path, key_path: Path, publisher: RecordingPublisher
) -> Iterator[Flask]:
    app = build_assets_app(database_url, assets_dir, key_path, publisher)
    yield app
    state(app).database.dispose()


def stored(client: FlaskClient, name: str, content: bytes = FIRMWARE) -> dict[str, t.Any]:
    response = upload(client, name, content)
    assert response.status_code == 200, response.get_data(as_text=True)
    body: dict[str, t.Any] = response.get_json()
    return body


def metric_samples(client: FlaskClient, name: str) -> dict[str, float]:
    families = text_string_to_metric_families(client.get("/metrics").get_data(as_text=True))
    return {
        sample.labels.get("outcome", ""): sample.value
        for family in families
        for sample in family.samples
        if sample.name == name
    }


# --- accepted uploads -----------------------------------------------------------------


def test_upload_stores_the_file_and_answers_its_metadata(
    client: FlaskClient, assets_dir: Path, publisher: RecordingPublisher
) -> None:
    before = datetime.now(UTC) - timedelta(seconds=2)
    body = stored(client, "esp32-sensor.bin")
    assert set(body) == {"filename", "size", "sha256", "uploaded_at"}
    assert body["filename"] == "esp32-sensor.bin"
    assert body["size"] == len(FIRMWARE)
    assert body["sha256"] == hashlib.sha256(FIRMWARE).hexdigest()
    assert before <= datetime.fromisoformat(body["uploaded_at"]) <= datetime.now(UTC)
    assert (assets_dir / "esp32-sensor.bin").read_bytes() == FIRMWARE
    assert temp_files(assets_dir) == []
    assert publisher.messages == [(TOPIC, {"filename": "esp32-sensor.bin"})]


def test_a_new_upload_replaces_the_old_version(client: FlaskClient, assets_dir: Path) -> None:
    stored(client, "fw.bin", b"version 1")
    first = client.get("/api/assets/fw.bin")
    stored(client, "fw.bin", b"version 2, longer")
    second = client.get("/api/assets/fw.bin")
    assert second.data == b"version 2, longer"
    assert second.headers["ETag"] != first.headers["ETag"]
    assert [path.name for path in contents(assets_dir)] == ["fw.bin"]


class CheckingPublisher(RecordingPublisher):
    """Notes, at the moment of publishing, whether the file and the committed pair exist."""

    def __init__(self, assets_dir: Path, database_url: str) -> None:
        super().__init__()
        self.assets_dir = assets_dir
        self.engine = create_engine(database_url)
        self.seen: list[tuple[bool, int]] = []

    def publish(self, topic: str, payload: Payload, *, retain: bool = False) -> None:
        with self.engine.connect() as connection:  # another connection: sees committed rows only
            pairs = connection.execute(text("SELECT count(*) FROM used_upload_signatures"))
            self.seen.append(((self.assets_dir / payload["filename"]).exists(), pairs.scalar_one()))
        super().publish(topic, payload, retain=retain)


def test_the_message_goes_out_after_the_file_and_the_commit(
    make_app: t.Callable[..., Flask], assets_dir: Path, key_path: Path, database_url: str
) -> None:
    checking = CheckingPublisher(assets_dir, database_url)
    client = make_app(assets_dir, key_path, publisher=checking).test_client()
    stored(client, "fw.bin")
    checking.engine.dispose()
    assert checking.seen == [(True, 1)]
    assert checking.messages == [(TOPIC, {"filename": "fw.bin"})]


def test_a_timestamp_without_offset_is_utc(client: FlaskClient) -> None:
    naive_utc = datetime.now(UTC).replace(tzinfo=None).isoformat()
    assert upload(client, "naive.bin", b"x", signed(naive_utc)).status_code == 200
    local = datetime.now(UTC).astimezone(datetime.now().astimezone().tzinfo)
    with_offset = (datetime.now(UTC) + timedelta(hours=2)).replace(tzinfo=None)
    plus_two = with_offset.isoformat() + "+02:00"
    assert upload(client, "offset.bin", b"x", signed(plus_two)).status_code == 200
    assert upload(client, "local.bin", b"x", signed(local.isoformat())).status_code == 200
    assert upload(client, "zulu.bin", b"x", signed(iso_now()[:19] + "Z")).status_code == 200


def test_a_timestamp_inside_the_window_is_accepted(client: FlaskClient) -> None:
    assert upload(client, "old.bin", b"x", signed(iso_now(-280))).status_code == 200
    assert upload(client, "early.bin", b"x", signed(iso_now(280))).status_code == 200


def test_the_public_key_alone_verifies(
    make_app: t.Callable[..., Flask], assets_dir: Path, tmp_path: Path
) -> None:
    public_pem = write_public_key(tmp_path / "public.pem", rsa_key())
    client = make_app(assets_dir, public_pem).test_client()
    assert upload(client, "fw.bin", b"x").status_code == 200


def test_an_upload_larger_than_max_request_bytes_is_accepted_on_this_route_only(
    client: FlaskClient, assets_dir: Path
) -> None:
    big = b"\xa5" * (1024 * 1024 + 4096)  # over the app-wide 1 MiB, under ASSET_MAX_BYTES
    assert stored(client, "big.bin", big)["size"] == len(big)
    assert (assets_dir / "big.bin").read_bytes() == big
    config = b'{"mac_address": "aa:bb:cc:dd:ee:ff", "content": {"pad": "' + big + b'"}}'
    refused = client.post("/api/configs", data=config, content_type="application/json")
    assert_error(refused, 413)


def test_the_upload_streams_to_the_assets_folder_not_memory(
    client: FlaskClient, assets_dir: Path
) -> None:
    size = 16 * 1024 * 1024
    body, content_type = multipart(signed(), "stream.bin", b"\x5a" * size)
    stream = io.BytesIO(body)  # made before tracing starts: only the app's memory counts
    del body
    tracemalloc.start()
    try:
        response = client.post(
            "/api/assets",
            input_stream=stream,
            content_length=len(stream.getbuffer()),
            content_type=content_type,
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert response.status_code == 200, response.get_data(as_text=True)
    assert (assets_dir / "stream.bin").stat().st_size == size
    assert peak < 2 * 1024 * 1024, f"{peak} bytes held while receiving {size}"


# --- refusals, each with its own code, in the contract's order ----------------------


@pytest.mark.parametrize(
    ("fields", "filename", "missing"),
    [
        (signed_fields("fw.bin", b"data"), None, ["file"]),
        ({"signature": "c2ln"}, "fw.bin", ["timestamp", "sha256"]),
        ({"timestamp": iso_now()}, "fw.bin", ["sha256", "signature"]),
        ({"timestamp": iso_now(), "signature": "c2ln"}, "fw.bin", ["sha256"]),
        ({}, None, ["file", "timestamp", "sha256", "signature"]),
        ({**signed_fields("fw.bin", b"data"), "file": "not a file part"}, None, ["file"]),
    ],
)
def test_missing_fields(
    client: FlaskClient,
    assets_dir: Path,
    fields: dict[str, str],
    filename: str | None,
    missing: list[str],
) -> None:
    body, content_type = multipart(fields, filename, b"data")
    response = client.post("/api/assets", data=body, content_type=content_type)
    assert assert_error(response, 400, "missing_field")["details"] == {"missing": missing}
    assert contents(assets_dir) == []


def test_a_body_that_is_not_multipart_is_missing_every_field(client: FlaskClient) -> None:
    response = client.post("/api/assets", json={"file": "x", **signed_fields("x", b"")})
    assert assert_error(response, 400, "missing_field")["details"]["missing"] == [
        "file",
        "timestamp",
        "sha256",
        "signature",
    ]


def test_the_signed_fields_must_come_before_the_file(client: FlaskClient, assets_dir: Path) -> None:
    fields = signed_fields("fw.bin", b"data")
    head, content_type = multipart({}, "fw.bin", b"data")
    tail, _ = multipart(fields)
    body = head.removesuffix(f"--{BOUNDARY}--\r\n".encode()) + tail  # file part, then fields
    response = client.post("/api/assets", data=body, content_type=content_type)
    error = assert_error(response, 400, "missing_field")
    assert error["details"] == {"missing": ["timestamp", "sha256", "signature"]}
    assert "before the file" in error["error"]
    assert contents(assets_dir) == []


UNSAFE_NAMES = [
    "",
    ".",
    "..",
    "../etc/passwd",
    "..hidden",
    "fw..bin",
    "a/b.bin",
    "/abs.bin",
    "a\\b.bin",
    "nul\x00.bin",
    "line\nfeed.bin",
    "tab\t.bin",
    "del\x7f.bin",
    "c1\x85.bin",
    "fw\u202e.nib.exe",  # shows as "fwexe.bin"
    "a\u2066b\u2069.bin",
    "zero\u200bwidth.bin",
    "joiner\u200d.bin",
    "\ufeffbom.bin",
    "nbsp\u00a0.bin",
    "ideographic\u3000space.bin",
    "line\u2028sep.bin",
    "soft\u00adhyphen.bin",
    "private\ue000.bin",
    "tag\U000e0041.bin",
    "filler\u3164.bin",
    "grapheme\u034fjoiner.bin",
    "variation\ufe0f.bin",
    "unassigned\u0378.bin",
    ".upload-in-progress.part",
    "x" * 256,
    "é" * 128,  # 128 characters, 256 bytes
]


@pytest.mark.parametrize("name", UNSAFE_NAMES, ids=repr)
def test_unsafe_filenames_are_refused(client: FlaskClient, assets_dir: Path, name: str) -> None:
    body = assert_error(upload(client, name, b"data"), 400, "unsafe_filename")
    assert body["details"]["reason"]
    assert contents(assets_dir) == []


SAFE_NAMES = ["x" * 255, "é" * 127 + "x", "fw-1.2.3_ü.bin", "a b.bin", "日本語.bin", "fw-😀.bin"]


@pytest.mark.parametrize("name", SAFE_NAMES)
def test_names_up_to_255_bytes_are_safe(client: FlaskClient, name: str) -> None:
    assert stored(client, name, b"ok")["filename"] == name


def test_a_bidi_name_in_the_url_is_400(client: FlaskClient, assets_dir: Path) -> None:
    (assets_dir / "fw\u202e.nib.exe").write_bytes(b"placed by hand")
    for path in ("fw%E2%80%AE.nib.exe", "a%E2%80%8Bb.bin"):
        assert_error(client.get(f"/api/assets/{path}"), 400, "unsafe_filename")
        assert_error(client.delete(f"/api/assets/{path}"), 400, "unsafe_filename")


def test_the_documented_pattern_agrees_with_the_rule() -> None:
    """The OpenAPI pattern, for every name it can express (assigned characters of the
    Basic Multilingual Plane, up to 255 bytes)."""
    for name in UNSAFE_NAMES + SAFE_NAMES:
        if len(name.encode("utf-8")) > 255 or any(
            ord(char) > 0xFFFF or unicodedata.category(char) == "Cn" for char in name
        ):
            continue
        try:
            check_filename(name)
            safe = True
        except UnsafeFilename:
            safe = False
        assert bool(re.fullmatch(FILENAME_PATTERN, name)) is safe, repr(name)


@pytest.mark.parametrize(
    ("timestamp", "code"),
    [
        ("yesterday", "invalid_timestamp"),
        ("", "invalid_timestamp"),
        ("2026-13-45T99:00:00", "invalid_timestamp"),
        ("9" * 100, "invalid_timestamp"),
        (-301, "timestamp_too_old"),
        ("2020-01-01T00:00:00+00:00", "timestamp_too_old"),
        (301, "timestamp_in_future"),
        (86400 * 365, "timestamp_in_future"),
    ],
)
def test_bad_timestamps(client: FlaskClient, timestamp: str | int, code: str) -> None:
    """`timestamp` is the text, or seconds from now (computed when the test runs)."""
    text = iso_now(timestamp) if isinstance(timestamp, int) else timestamp
    # Correctly signed: only the timestamp itself is wrong.
    body = assert_error(upload(client, "fw.bin", b"x", signed(text)), 400, code)
    if code != "invalid_timestamp":
        assert body["details"]["tolerance_seconds"] == 300


def test_the_tolerance_is_a_setting(make_app: t.Callable[..., Flask], assets_dir: Path) -> None:
    key = write_private_key(assets_dir.parent / "k.pem", rsa_key())
    client = make_app(assets_dir, key, timestamp_tolerance_seconds=30).test_client()
    assert_error(upload(client, "a.bin", b"x", signed(iso_now(-60))), 400, "timestamp_too_old")
    assert upload(client, "b.bin", b"x", signed(iso_now(-20))).status_code == 200


def tampered(signature: str) -> str:
    """Valid base64 of the same length, one signature byte different."""
    first = "B" if signature[0] != "B" else "C"
    return first + signature[1:]


def signature_over(timestamp: str, key: str = "server", name: str = "fw.bin") -> str:
    return sign_upload(rsa_key(key), timestamp=timestamp, name=name, sha256=SHA_OF_X)


@pytest.mark.parametrize(
    ("make_signature", "code"),
    [
        (lambda ts: signature_over(ts, key="other"), "signature_mismatch"),
        (lambda ts: tampered(signature_over(ts)), "signature_mismatch"),
        (lambda ts: signature_over(iso_now(-1) + " "), "signature_mismatch"),
        (lambda ts: signature_over(ts, name="other.bin"), "signature_mismatch"),
        (lambda ts: sign_timestamp(rsa_key(), ts), "signature_mismatch"),
        (lambda ts: signature_over(ts)[:-1], "invalid_signature_encoding"),
        (lambda ts: "!!" + signature_over(ts)[2:], "invalid_signature_encoding"),
        (lambda ts: "not base64 at all", "invalid_signature_encoding"),
        (lambda ts: "", "invalid_signature_encoding"),
        (lambda ts: "QUJD" * 2000, "invalid_signature_encoding"),
    ],
    ids=[
        "another-key",
        "tampered-byte",
        "other-text",
        "other-name",
        "legacy-scheme",
        "truncated",
        "bad-chars",
        "words",
        "empty",
        "huge",
    ],
)
def test_bad_signatures(
    client: FlaskClient, assets_dir: Path, make_signature: t.Callable[[str], str], code: str
) -> None:
    timestamp = iso_now()
    fields = {"timestamp": timestamp, "sha256": SHA_OF_X, "signature": make_signature(timestamp)}
    assert_error(upload(client, "fw.bin", b"x", fields), 400, code)
    assert contents(assets_dir) == []


@pytest.mark.parametrize(
    ("fields", "filename", "code"),
    [
        ({"timestamp": "bad", "sha256": "bad", "signature": "bad"}, None, "missing_field"),
        ({"timestamp": "bad", "sha256": "bad", "signature": "bad"}, "../x", "unsafe_filename"),
        ({"timestamp": "bad", "sha256": "bad", "signature": "bad"}, "ok.bin", "invalid_timestamp"),
        (
            {"timestamp": iso_now(), "sha256": "bad", "signature": "bad!"},
            "ok.bin",
            "invalid_sha256",
        ),
        (
            {"timestamp": iso_now(), "sha256": SHA_OF_X, "signature": "bad!"},
            "ok.bin",
            "invalid_signature_encoding",
        ),
        (
            {"timestamp": iso_now(), "sha256": SHA_OF_X, "signature": "c2lnbmF0dXJl"},
            "ok.bin",
            "signature_mismatch",
        ),
    ],
)
def test_checks_run_in_the_contract_order(
    client: FlaskClient, fields: dict[str, str], filename: str | None, code: str
) -> None:
    body, content_type = multipart(fields, filename, b"x")
    assert_error(client.post("/api/assets", data=body, content_type=content_type), 400, code)


def test_a_captured_signature_uploads_nothing_else(
    client: FlaskClient, assets_dir: Path, publisher: RecordingPublisher
) -> None:
    """The race of the issue: a pair seen on the wire while CI's own upload is under
    way, sent first with other bytes or under another name."""
    fields = signed_fields("fw.bin", b"genuine")
    other_bytes = upload(client, "fw.bin", b"malicious", fields)
    body = assert_error(other_bytes, 400, "sha256_mismatch")
    assert body["details"] == {
        "signed": hashlib.sha256(b"genuine").hexdigest(),
        "received": hashlib.sha256(b"malicious").hexdigest(),
    }
    assert_error(upload(client, "other.bin", b"genuine", fields), 400, "signature_mismatch")
    retargeted = {**fields, "sha256": hashlib.sha256(b"malicious").hexdigest()}
    assert_error(upload(client, "fw.bin", b"malicious", retargeted), 400, "signature_mismatch")
    assert contents(assets_dir) == []
    assert publisher.messages == []
    # CI's own upload still goes through (refusals did not use the pair up), once.
    assert upload(client, "fw.bin", b"genuine", fields).status_code == 200
    assert_error(upload(client, "fw.bin", b"genuine", fields), 409, "signature_already_used")
    assert (assets_dir / "fw.bin").read_bytes() == b"genuine"
    assert [path.name for path in contents(assets_dir)] == ["fw.bin"]
    assert publisher.messages == [(TOPIC, {"filename": "fw.bin"})]
    assert upload(client, "fw.bin", b"next build").status_code == 200  # fresh pair: fine


class CountingStream(io.BytesIO):
    """A request body that remembers how much of it the server read."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.consumed = 0

    def read(self, size: int | None = -1) -> bytes:
        chunk = super().read(size)
        self.consumed += len(chunk)
        return chunk


@pytest.mark.parametrize(
    "fields",
    [
        {"timestamp": iso_now(-3600)},
        {"signature": "c2lnbmF0dXJl"},
        {"sha256": "0" * 64},
        {"signature": "not base64"},
    ],
    ids=["too-old", "wrong-signature", "other-sha256", "bad-encoding"],
)
def test_a_refusal_reads_no_more_than_the_fields(
    client: FlaskClient, assets_dir: Path, fields: dict[str, str]
) -> None:
    content = b"\xa5" * (16 * 1024 * 1024)
    good = signed_fields("fw.bin", content)
    if "timestamp" in fields:
        good = signed_fields("fw.bin", content, fields["timestamp"])
    body, content_type = multipart({**good, **fields}, "fw.bin", content)
    stream = CountingStream(body)
    response = client.post(
        "/api/assets",
        input_stream=stream,
        content_length=len(body),
        content_type=content_type,
    )
    assert_error(response, 400)
    assert stream.consumed < 256 * 1024, f"{stream.consumed} bytes read before refusing"
    assert contents(assets_dir) == []


def test_a_used_pair_is_refused_before_the_file_is_read(client: FlaskClient) -> None:
    fields = signed_fields("fw.bin", b"\x01" * 1024)
    assert upload(client, "fw.bin", b"\x01" * 1024, fields).status_code == 200
    body, content_type = multipart(fields, "fw.bin", b"\x01" * 1024 + b"\x02" * (8 << 20))
    stream = CountingStream(body)
    response = client.post(
        "/api/assets", input_stream=stream, content_length=len(body), content_type=content_type
    )
    assert_error(response, 409, "signature_already_used")
    assert stream.consumed < 256 * 1024


def test_the_legacy_scheme_is_off_by_default(client: FlaskClient, assets_dir: Path) -> None:
    response = upload(client, "fw.bin", b"x", legacy_fields())
    body = assert_error(response, 400, "missing_field")
    assert body["details"] == {"missing": ["sha256"]}
    assert contents(assets_dir) == []


def test_the_legacy_scheme_behind_its_setting(
    make_app: t.Callable[..., Flask], assets_dir: Path, key_path: Path
) -> None:
    client = make_app(assets_dir, key_path, asset_legacy_signatures=True).test_client()
    assert upload(client, "old-ci.bin", b"v1", legacy_fields()).status_code == 200
    # Old clients may send the fields after the file; they are checked at the end.
    head, content_type = multipart({}, "late.bin", b"v1")
    tail, _ = multipart(legacy_fields())
    late = head.removesuffix(f"--{BOUNDARY}--\r\n".encode()) + tail
    assert client.post("/api/assets", data=late, content_type=content_type).status_code == 200
    wrong = legacy_fields(key=rsa_key("other"))
    assert_error(upload(client, "x.bin", b"v1", wrong), 400, "signature_mismatch")
    # The new scheme works as well, and keeps its checks.
    assert upload(client, "new-ci.bin", b"v2").status_code == 200
    fields = signed_fields("new-ci.bin", b"v2")
    assert_error(upload(client, "new-ci.bin", b"v3", fields), 400, "sha256_mismatch")
    assert (assets_dir / "new-ci.bin").read_bytes() == b"v2"


def test_used_pairs_are_kept_in_the_database_and_old_ones_pruned(
    client: FlaskClient, database_url: str
) -> None:
    engine = create_engine(database_url)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO used_upload_signatures (digest, signed_at, used_at) "
                "VALUES ('old', '2020-01-01 00:00:00', '2020-01-01 00:00:00'), "
                "('recent', :now, :now)"
            ),
            {"now": datetime.now(UTC).isoformat(sep=" ")},
        )
    assert upload(client, "fw.bin", b"x").status_code == 200
    with engine.connect() as connection:
        digests = connection.execute(text("SELECT digest FROM used_upload_signatures")).scalars()
        remaining = set(digests)
    engine.dispose()
    assert "old" not in remaining
    assert "recent" in remaining
    assert len(remaining) == 2


def test_over_the_limit_is_413_and_leaves_the_old_version(
    make_app: t.Callable[..., Flask], assets_dir: Path, key_path: Path
) -> None:
    client = make_app(assets_dir, key_path, asset_max_bytes=4096).test_client()
    assert stored(client, "fw.bin", b"a" * 4096)["size"] == 4096  # exactly the limit
    body = assert_error(upload(client, "fw.bin", b"b" * 4097), 413, "asset_too_large")
    assert body["details"] == {"max_bytes": 4096}
    # A body far over the limit is refused from its Content-Length, before reading.
    assert_error(upload(client, "fw.bin", b"c" * 200_000), 413, "asset_too_large")
    assert (assets_dir / "fw.bin").read_bytes() == b"a" * 4096
    assert temp_files(assets_dir) == []


def test_a_broken_multipart_body_leaves_nothing_behind(
    client: FlaskClient, assets_dir: Path
) -> None:
    stored(client, "fw.bin", b"old")
    body, content_type = multipart(signed(), "fw.bin", b"new" * 1000)
    cut = body[: len(body) // 2]  # the closing boundary never comes
    response = client.post("/api/assets", data=cut, content_type=content_type)
    assert_error(response, 400)
    assert (assets_dir / "fw.bin").read_bytes() == b"old"
    assert temp_files(assets_dir) == []


# --- downloads ------------------------------------------------------------------------


def test_download_headers(client: FlaskClient) -> None:
    stored(client, "fw.bin")
    response = client.get("/api/assets/fw.bin")
    assert response.status_code == 200
    assert response.data == FIRMWARE
    assert response.mimetype == "application/octet-stream"
    assert response.headers["Cache-Control"] == "no-cache"
    assert response.headers["Accept-Ranges"] == "bytes"
    assert response.headers["Content-Length"] == str(len(FIRMWARE))
    assert response.headers["ETag"].startswith('"')


def test_if_none_match_answers_304(client: FlaskClient) -> None:
    stored(client, "fw.bin")
    etag = client.get("/api/assets/fw.bin").headers["ETag"]
    cached = client.get("/api/assets/fw.bin", headers={"If-None-Match": etag})
    assert cached.status_code == 304
    assert cached.data == b""
    assert cached.headers["ETag"] == etag
    other = client.get("/api/assets/fw.bin", headers={"If-None-Match": '"something-else"'})
    assert other.status_code == 200


def test_head_sends_headers_only(client: FlaskClient) -> None:
    stored(client, "fw.bin")
    response = client.head("/api/assets/fw.bin")
    assert response.status_code == 200
    assert response.data == b""
    assert response.headers["Content-Length"] == str(len(FIRMWARE))
    assert response.headers["ETag"] == client.get("/api/assets/fw.bin").headers["ETag"]


SIZE = len(FIRMWARE)


@pytest.mark.parametrize(
    ("range_header", "first", "last"),
    [
        ("bytes=0-15", 0, 15),  # first bytes
        ("bytes=1000-4999", 1000, 4999),  # the middle
        ("bytes=-100", SIZE - 100, SIZE - 1),  # suffix: the last 100 bytes
        (f"bytes={SIZE - 10}-", SIZE - 10, SIZE - 1),  # resume to the end
        (f"bytes=100-{SIZE + 5000}", 100, SIZE - 1),  # past the end: clipped
    ],
)
def test_range_requests(client: FlaskClient, range_header: str, first: int, last: int) -> None:
    stored(client, "fw.bin")
    response = client.get("/api/assets/fw.bin", headers={"Range": range_header})
    assert response.status_code == 206
    assert response.data == FIRMWARE[first : last + 1]
    assert response.headers["Content-Range"] == f"bytes {first}-{last}/{SIZE}"
    assert response.headers["Content-Length"] == str(last - first + 1)


@pytest.mark.parametrize("range_header", [f"bytes={SIZE}-", f"bytes={SIZE + 10}-{SIZE + 20}"])
def test_unsatisfiable_range_is_416(client: FlaskClient, range_header: str) -> None:
    stored(client, "fw.bin")
    response = client.get("/api/assets/fw.bin", headers={"Range": range_header})
    assert_error(response, 416)
    assert response.headers["Content-Range"] == f"bytes */{SIZE}"


def test_if_range_resumes_only_the_same_version(client: FlaskClient) -> None:
    stored(client, "fw.bin")
    etag = client.get("/api/assets/fw.bin").headers["ETag"]
    same = client.get("/api/assets/fw.bin", headers={"Range": "bytes=10-", "If-Range": etag})
    assert same.status_code == 206
    stored(client, "fw.bin", b"a whole new build")
    changed = client.get("/api/assets/fw.bin", headers={"Range": "bytes=10-", "If-Range": etag})
    assert changed.status_code == 200
    assert changed.data == b"a whole new build"


def test_unknown_name_is_404(client: FlaskClient) -> None:
    assert_error(client.get("/api/assets/nothing.bin"), 404, "not_found")
    assert client.head("/api/assets/nothing.bin").status_code == 404


@pytest.mark.parametrize(
    "path", ["..", "a%2Fb.bin", "..%2Fsecret", "nul%00.bin", "%0A.bin", ".upload-x.part"]
)
def test_unsafe_names_in_the_url_are_400(client: FlaskClient, assets_dir: Path, path: str) -> None:
    (assets_dir.parent / "secret").write_bytes(b"not for devices")
    (assets_dir / ".upload-x.part").write_bytes(b"half a file")
    # NUL is refused for every URL by the request hook, before the name rule.
    code = "nul_character" if "%00" in path else "unsafe_filename"
    assert_error(client.get(f"/api/assets/{path}"), 400, code)
    assert_error(client.delete(f"/api/assets/{path}"), 400, code)


def test_a_folder_inside_the_assets_folder_is_not_an_asset(
    client: FlaskClient, assets_dir: Path
) -> None:
    (assets_dir / "sub").mkdir()
    assert_error(client.get("/api/assets/sub"), 404)
    assert_error(client.delete("/api/assets/sub"), 404)
    assert client.get("/api/assets").get_json() == {"assets": [], "count": 0}


# --- list and delete (admin) -----------------------------------------------------------


def test_list_is_sorted_and_skips_uploads_in_progress(
    client: FlaskClient, assets_dir: Path
) -> None:
    stored(client, "b.bin", b"bee")
    stored(client, "a.bin", b"ay")
    (assets_dir / "c-copied-by-hand.bin").write_bytes(b"sea")  # files put there by an operator
    (assets_dir / ".upload-abc.part").write_bytes(b"half")
    body = client.get("/api/assets").get_json()
    assert body["count"] == 3
    assert [item["name"] for item in body["assets"]] == ["a.bin", "b.bin", "c-copied-by-hand.bin"]
    for item, content in zip(body["assets"], [b"ay", b"bee", b"sea"], strict=True):
        assert set(item) == {"name", "size", "sha256", "uploaded_at"}
        assert item["size"] == len(content)
        assert item["sha256"] == hashlib.sha256(content).hexdigest()
        datetime.fromisoformat(item["uploaded_at"])


def test_list_reports_the_current_hash_after_a_replace(client: FlaskClient) -> None:
    stored(client, "fw.bin", b"one")
    assert (
        client.get("/api/assets").get_json()["assets"][0]["sha256"]
        == hashlib.sha256(b"one").hexdigest()
    )
    uploaded = stored(client, "fw.bin", b"two")
    listed = client.get("/api/assets").get_json()["assets"][0]
    assert listed["sha256"] == uploaded["sha256"] == hashlib.sha256(b"two").hexdigest()


def test_delete(client: FlaskClient, assets_dir: Path, publisher: RecordingPublisher) -> None:
    stored(client, "fw.bin")
    response = client.delete("/api/assets/fw.bin")
    assert response.status_code == 204
    assert response.data == b""
    assert not (assets_dir / "fw.bin").exists()
    assert_error(client.get("/api/assets/fw.bin"), 404)
    assert_error(client.delete("/api/assets/fw.bin"), 404, "not_found")
    assert publisher.messages == [(TOPIC, {"filename": "fw.bin"})]  # nothing on delete


# --- configuration, startup, health ----------------------------------------------------


def test_without_assets_dir_the_asset_endpoints_answer_503(
    make_app: t.Callable[..., Flask], key_path: Path
) -> None:
    client = make_app(None, key_path).test_client()
    for response in (
        upload(client, "fw.bin", b"x"),
        client.get("/api/assets"),
        client.get("/api/assets/fw.bin"),
        client.delete("/api/assets/fw.bin"),
    ):
        body = assert_error(response, 503, "assets_not_configured")
        assert "ASSETS_DIR" in body["error"]
    assert client.head("/api/assets/fw.bin").status_code == 503
    config = {"mac_address": "aa:bb:cc:dd:ee:ff", "content": {}}
    assert client.post("/api/configs", json=config).status_code == 201
    health = client.get("/api/health")
    assert health.status_code == 200
    assert health.get_json()["assets"] == "disabled"


def test_without_a_signing_key_uploads_are_off_and_downloads_work(
    make_app: t.Callable[..., Flask], assets_dir: Path
) -> None:
    (assets_dir / "fw.bin").write_bytes(b"placed by hand")
    client = make_app(assets_dir, None).test_client()
    body = assert_error(upload(client, "new.bin", b"x"), 503, "assets_not_configured")
    assert "SIGNING_KEY_PATH" in body["error"]
    assert client.get("/api/assets/fw.bin").data == b"placed by hand"
    assert temp_files(assets_dir) == []


def unusable_keys(folder: Path) -> dict[str, tuple[Path, str]]:
    """SIGNING_KEY_PATH values the server must refuse to start with, and what it says."""
    from cryptography.hazmat.primitives import serialization

    ec_key = folder / "ec.pem"
    ec_key.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    encrypted = folder / "encrypted.pem"
    encrypted.write_bytes(
        rsa_key().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    garbage = folder / "garbage.pem"
    garbage.write_text("not a key\n")
    return {
        "missing": (folder / "nope.pem", "cannot be read"),
        "a folder": (folder, "cannot be read"),
        "garbage": (garbage, "not a PEM RSA"),
        "ec": (ec_key, "uploads are signed with RSA"),
        "encrypted": (encrypted, "encrypted"),
    }


def test_an_unusable_signing_key_stops_the_app_from_being_built(
    make_app: t.Callable[..., Flask], assets_dir: Path, tmp_path: Path
) -> None:
    for path, message in unusable_keys(tmp_path).values():
        with pytest.raises(StartupError, match=message) as raised:
            make_app(assets_dir, path)
        assert "SIGNING_KEY_PATH" in str(raised.value)
        with pytest.raises(StartupError):
            make_app(None, path)  # checked even with the asset endpoints off


def health(client: FlaskClient) -> tuple[int, dict[str, t.Any]]:
    response = client.get("/api/health")
    body: dict[str, t.Any] = response.get_json()
    return response.status_code, body


def test_health_reports_the_assets_folder(
    make_app: t.Callable[..., Flask], tmp_path: Path, key_path: Path
) -> None:
    folder = tmp_path / "later"
    client = make_app(folder, key_path).test_client()
    status, body = health(client)
    assert status == 503
    assert body["status"] == "unhealthy"
    assert body["assets"] == "missing"
    assert body["database"] == "ok"
    assert "ASSETS_DIR" in body["reason"]
    assert_error(upload(client, "fw.bin", b"x"), 503, "assets_folder_unavailable")
    folder.mkdir()
    assert health(client) == (
        200,
        {
            "status": "healthy",
            "database": "ok",
            "mqtt": "disabled",
            "assets": "ok",
            "device_cache": "database",  # this app's cache was not started
        },
    )


def test_health_when_assets_dir_is_a_file(
    make_app: t.Callable[..., Flask], tmp_path: Path, key_path: Path
) -> None:
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")
    status, body = health(make_app(not_a_folder, key_path).test_client())
    assert (status, body["assets"]) == (503, "missing")


HEALTH_SCRIPT = """
import json, sys
from prometheus_client import CollectorRegistry
from iotsupport import create_app
from iotsupport.settings import Settings
settings = Settings(_env_file=None, database_url="sqlite://", mqtt_url=None, assets_dir=sys.argv[1])
response = create_app(settings, registry=CollectorRegistry()).test_client().get("/api/health")
print(json.dumps([response.status_code, response.get_json()]))
"""


def test_health_when_the_assets_folder_is_not_writable() -> None:
    command = [sys.executable, "-c", HEALTH_SCRIPT]
    if os.geteuid() == 0:  # root writes through permission bits: check as nobody
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv to drop to another user")
        command = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", *command]
    parent = Path(tempfile.mkdtemp(prefix="iotsupport-readonly-"))
    try:
        parent.chmod(0o755)
        folder = parent / "assets"
        folder.mkdir(mode=0o555)
        folder.chmod(0o555)
        result = subprocess.run(
            [*command, str(folder)], capture_output=True, text=True, timeout=60, check=False
        )
    finally:
        shutil.rmtree(parent)
    assert result.returncode == 0, result.stderr
    status, body = json.loads(result.stdout)
    assert (status, body["assets"], body["reason"]) == (
        503,
        "not_writable",
        "ASSETS_DIR is not writable",
    )


# --- metrics and the API document ------------------------------------------------------


def test_metrics_count_uploads_by_outcome_and_bytes_served(client: FlaskClient) -> None:
    stored(client, "fw.bin")
    fields = signed()
    upload(client, "a.bin", b"x", fields)
    upload(client, "a.bin", b"x", fields)  # replay
    upload(client, "../a.bin", b"x")
    upload(client, "a.bin", b"x", signed(key=rsa_key("other")))
    upload(client, "a.bin", b"x", signed(iso_now(-3600)))
    client.get("/api/assets/fw.bin")
    client.get("/api/assets/fw.bin", headers={"Range": "bytes=0-99"})
    client.head("/api/assets/fw.bin")
    etag = client.get("/api/assets/fw.bin").headers["ETag"]
    client.get("/api/assets/fw.bin", headers={"If-None-Match": etag})
    assert metric_samples(client, "iotsupport_asset_uploads_total") == {
        "accepted": 2,
        "signature_already_used": 1,
        "unsafe_filename": 1,
        "signature_mismatch": 1,
        "timestamp_too_old": 1,
    }
    served = metric_samples(client, "iotsupport_asset_bytes_served_total")
    assert served == {"": 2 * len(FIRMWARE) + 100}


def test_the_openapi_document_describes_the_upload_form(client: FlaskClient) -> None:
    document = client.get("/api/openapi.json").get_json()
    upload_doc = document["paths"]["/api/assets"]["post"]
    form = upload_doc["requestBody"]["content"]["multipart/form-data"]["schema"]
    schema = document["components"]["schemas"][form["$ref"].rsplit("/", 1)[-1]]
    assert set(schema["required"]) == {"file", "timestamp", "sha256", "signature"}
    assert list(schema["properties"]) == ["timestamp", "sha256", "signature", "file"]
    assert schema["properties"]["file"]["format"] == "binary"
    assert set(document["paths"]["/api/assets/{filename}"]) == {"get", "delete"}


# --- replicas sharing PostgreSQL --------------------------------------------------------


@pytest.mark.postgres
def test_a_pair_is_accepted_once_across_replicas(
    pg_database_url: str, assets_dir: Path, key_path: Path
) -> None:
    replicas = [build_assets_app(pg_database_url, assets_dir, key_path) for _ in range(2)]
    fields = signed_fields("fw.bin", b"one build")
    barrier = threading.Barrier(4)
    statuses: list[int] = []

    def send(app: Flask, content: bytes) -> None:
        client = app.test_client()
        barrier.wait(10)
        statuses.append(upload(client, "fw.bin", content, fields).status_code)

    threads = [
        threading.Thread(target=send, args=(replicas[index % 2], b"one build"))
        for index in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    for app in replicas:
        state(app).database.dispose()
    assert sorted(statuses) == [200, 409, 409, 409]
    assert (assets_dir / "fw.bin").read_bytes() == b"one build"
    assert temp_files(assets_dir) == []
