"""Compressed answers: smaller bytes for big JSON and the UI's files, never at the cost of
ETag/304, If-Match or byte ranges, and never for a device's small config."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import brotli
import pytest
from flask import Flask
from flask.testing import FlaskClient

from iotsupport.compression import negotiate
from iotsupport.ui import static_digest
from iotsupport.ui import static_url


def create(client: FlaskClient, mac: str, content: dict[str, object]) -> dict[str, object]:
    response = client.post("/api/configs", json={"mac_address": mac, "content": content})
    assert response.status_code == 201, response.get_data(as_text=True)
    body: dict[str, object] = response.get_json()
    return body


def big_content(index: int) -> dict[str, object]:
    return {"deviceName": f"Sensor {index}", "notes": "x" * 3000, "pages": list(range(50))}


def decode(encoding: str, data: bytes) -> bytes:
    return brotli.decompress(data) if encoding == "br" else gzip.decompress(data)


@pytest.mark.parametrize(
    ("header", "chosen"),
    [
        ("gzip, deflate, br, zstd", "br"),
        ("gzip, deflate", "gzip"),
        ("br;q=0, gzip", "gzip"),
        ("gzip;q=0", None),
        ("identity", None),
        ("", None),
        ("*", "br"),
        ("br;q=bogus, gzip;q=0.5", "gzip"),
    ],
)
def test_negotiation_prefers_brotli_and_honours_q_zero(header: str, chosen: str | None) -> None:
    assert negotiate(header) == chosen


@pytest.mark.parametrize("encoding", ["br", "gzip"])
def test_the_list_is_compressed_and_decodes_to_the_same_json(
    app: Flask, client: FlaskClient, encoding: str
) -> None:
    for index in range(30):
        create(client, f"02:00:00:00:00:{index:02x}", {"deviceName": f"Sensor {index}"})
    plain = client.get("/api/configs")
    assert "Content-Encoding" not in plain.headers
    assert "Accept-Encoding" in plain.headers["Vary"]

    packed = client.get("/api/configs", headers={"Accept-Encoding": encoding})
    assert packed.status_code == 200
    assert packed.headers["Content-Encoding"] == encoding
    assert "Accept-Encoding" in packed.headers["Vary"]
    assert "Content-Length" not in packed.headers or int(packed.headers["Content-Length"]) == len(
        packed.data
    )
    assert len(packed.data) < len(plain.data) / 4
    unpacked = json.loads(decode(encoding, packed.data))
    assert unpacked == {**plain.get_json(), "cursor": unpacked["cursor"]}
    # The streamed body's close still ran: the request's database connection is back.
    assert app.extensions["iotsupport"].database.engine.pool.checkedout() == 0


def test_a_small_device_config_is_never_compressed(client: FlaskClient) -> None:
    create(client, "02:00:00:00:01:01", {"deviceName": "Lamp"})
    response = client.get(
        "/api/configs/02:00:00:00:01:01.json", headers={"Accept-Encoding": "gzip, br"}
    )
    assert response.status_code == 200
    assert "Content-Encoding" not in response.headers
    assert response.get_json() == {"deviceName": "Lamp"}


def test_a_compressed_etag_still_revalidates_and_still_guards_a_save(
    client: FlaskClient,
) -> None:
    created = create(client, "02:00:00:00:01:02", big_content(1))
    device = "/api/configs/02:00:00:00:01:02.json"
    packed = client.get(device, headers={"Accept-Encoding": "gzip"})
    assert packed.headers["Content-Encoding"] == "gzip"
    plain_tag = client.get(device).headers["ETag"]
    assert packed.headers["ETag"] != plain_tag  # another representation, another tag
    assert json.loads(gzip.decompress(packed.data)) == big_content(1)

    # Either spelling of the tag revalidates.
    for tag in (packed.headers["ETag"], plain_tag):
        again = client.get(device, headers={"Accept-Encoding": "gzip", "If-None-Match": tag})
        assert again.status_code == 304

    # The admin's compressed read still guards its save with If-Match.
    admin = client.get(f"/api/configs/{created['id']}", headers={"Accept-Encoding": "br"})
    assert admin.headers["Content-Encoding"] == "br"
    saved = client.put(
        f"/api/configs/{created['id']}",
        json={"content": big_content(2)},
        headers={"If-Match": admin.headers["ETag"]},
    )
    assert saved.status_code == 200, saved.get_data(as_text=True)
    assert saved.get_json()["version"] == 2
    stale = client.put(
        f"/api/configs/{created['id']}",
        json={"content": big_content(3)},
        headers={"If-Match": admin.headers["ETag"]},
    )
    assert stale.status_code == 412


def test_head_and_errors_are_left_alone(client: FlaskClient) -> None:
    create(client, "02:00:00:00:01:03", big_content(3))
    head = client.head("/api/configs/02:00:00:00:01:03.json", headers={"Accept-Encoding": "gzip"})
    assert head.status_code == 200 and "Content-Encoding" not in head.headers
    missing = client.get("/api/configs/99999", headers={"Accept-Encoding": "gzip"})
    assert missing.status_code == 404 and "Content-Encoding" not in missing.headers


def test_ui_files_are_compressed_and_cached_for_a_year_under_their_digest(
    client: FlaskClient,
) -> None:
    page = client.get("/").get_data(as_text=True)
    script_urls = re.findall(r'src="([^"]+\.js)"', page)
    assert script_urls and all(url.startswith(static_url("")) for url in script_urls)

    source = Path(__file__).parent.parent / "src/iotsupport/ui/static/common.js"
    with client.get(static_url("common.js"), headers={"Accept-Encoding": "gzip"}) as response:
        assert response.status_code == 200
        assert response.headers["Content-Encoding"] == "gzip"
        assert "immutable" in response.headers["Cache-Control"]
        assert "max-age=31536000" in response.headers["Cache-Control"]
        assert gzip.decompress(response.data) == source.read_bytes()

    # A page from before an upgrade asks for an old digest: it gets today's file, not cached.
    with client.get("/ui/static/000000000000/common.js") as old:
        assert old.status_code == 200 and old.data
    assert (
        "no-cache" in old.headers["Cache-Control"]
        and "immutable" not in old.headers["Cache-Control"]
    )
    assert client.get(static_url("../__init__.py")).status_code == 404


def test_the_digest_changes_when_a_file_does(tmp_path: Path) -> None:
    (tmp_path / "a.js").write_text("one")
    before = static_digest(tmp_path)
    (tmp_path / "a.js").write_text("two")
    static_digest.cache_clear()
    assert static_digest(tmp_path) != before
