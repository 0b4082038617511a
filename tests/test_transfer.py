"""POST /api/configs/import and GET /api/configs/export: the old file layout over HTTP."""

from __future__ import annotations

import io
import json
import shutil
import struct
import typing as t
import zipfile
from pathlib import Path
from urllib.parse import quote

import pytest
from conftest import ClientWith
from conftest import RecordingPublisher
from conftest import assert_error
from conftest import make_settings
from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry as Registry
from werkzeug.test import TestResponse

from iotsupport import create_app

ONE = '{\n  "deviceName": "One",\n  "enableOTA": true\n}'
TWO = '{"deviceName": "Two"}'
Part = tuple[str, bytes]


def zipped(*members: Part, method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for name, data in members:
            archive.writestr(name, data)
    return buffer.getvalue()


def upload(client: FlaskClient, *files: Part, **fields: str) -> TestResponse:
    """POST the files as parts named `file`, and the fields (the body built here: the
    test client's own encoder leaves a temp file open for large bodies)."""
    boundary = "import-boundary-7d1c"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields.items()
    ]
    for name, body in files:
        quoted = quote(name, safe="")
        head = f"Content-Disposition: form-data; name=\"file\"; filename*=UTF-8''{quoted}"
        parts.append(f"--{boundary}\r\n{head}\r\n\r\n".encode() + body + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    content_type = f"multipart/form-data; boundary={boundary}"
    return client.post("/api/configs/import", data=body, content_type=content_type)


def report(response: TestResponse) -> dict[str, t.Any]:
    assert response.status_code == 200, response.get_data(as_text=True)
    body: dict[str, t.Any] = response.get_json()
    return body


def outcomes(body: dict[str, t.Any]) -> dict[str, tuple[str, str | None]]:
    return {row["file"]: (row["outcome"], row["reason"]) for row in body["results"]}


def macs(client: FlaskClient) -> list[str]:
    return [row["mac_address"] for row in client.get("/api/configs").get_json()["configs"]]


def test_import_files_and_a_zip_with_a_dry_run_first(
    api: FlaskClient, publisher: RecordingPublisher
) -> None:
    api.post("/api/configs", json={"mac_address": "aa:bb:cc:dd:ee:02", "content": TWO})
    api.post("/api/configs", json={"mac_address": "aa:bb:cc:dd:ee:03", "content": "{}"})
    publisher.messages.clear()
    publisher.retained_log.clear()
    archive = zipped(
        ("fleet/", b""),
        ("fleet/aa-bb-cc-dd-ee-01.json", ONE.encode()),
        ("fleet/AA-BB-CC-DD-EE-02.json", TWO.encode()),  # the same bytes: unchanged
        ("fleet/.DS_Store", b"\x00\x01"),  # hidden: left out, as import-dir leaves it
        ("__MACOSX/fleet/._aa-bb-cc-dd-ee-01.json", b"\x00"),
        ("fleet/notes.txt", b"hello"),
        ("fleet/not-a-mac.json", b"{}"),
        ("fleet/aa-bb-cc-dd-ee-04.json", b"\xff\xfe{}"),
        ("fleet/aa-bb-cc-dd-ee-05.json", b"[1, 2]"),
    )
    files = [("fleet.zip", archive), ("aa:bb:cc:dd:ee:03.json", b'{"changed": true}')]
    expected = {
        "fleet.zip/fleet/aa-bb-cc-dd-ee-01.json": ("created", None),
        "fleet.zip/fleet/AA-BB-CC-DD-EE-02.json": ("unchanged", None),
        "fleet.zip/fleet/notes.txt": ("skipped", "not a .json file"),
        "fleet.zip/fleet/not-a-mac.json": ("skipped", "bad name"),
        "fleet.zip/fleet/aa-bb-cc-dd-ee-04.json": ("skipped", "not UTF-8 text"),
        "fleet.zip/fleet/aa-bb-cc-dd-ee-05.json": ("skipped", "content must be a JSON object"),
        "aa:bb:cc:dd:ee:03.json": ("updated", None),
    }
    preview = report(upload(api, *files, dry_run="true"))
    assert outcomes(preview) == expected
    assert (preview["dry_run"], preview["created"], preview["updated"]) == (True, 1, 1)
    assert (preview["unchanged"], preview["skipped"]) == (1, 4)
    assert macs(api) == ["aa:bb:cc:dd:ee:02", "aa:bb:cc:dd:ee:03"]
    assert publisher.messages == [] and publisher.retained_log == []

    done = report(upload(api, *files))
    assert outcomes(done) == expected and done["dry_run"] is False
    assert macs(api) == ["aa:bb:cc:dd:ee:01", "aa:bb:cc:dd:ee:02", "aa:bb:cc:dd:ee:03"]
    assert api.get("/api/configs/aa:bb:cc:dd:ee:01.json").get_data(as_text=True) == ONE
    assert sorted(payload["filename"] for _, payload in publisher.messages) == [
        "aa:bb:cc:dd:ee:01.json",
        "aa:bb:cc:dd:ee:03.json",
    ]
    rows = {row["mac_address"]: row["file"] for row in done["results"] if row["mac_address"]}
    assert rows["aa:bb:cc:dd:ee:01"] == "fleet.zip/fleet/aa-bb-cc-dd-ee-01.json"


def test_import_into_a_model_skips_what_fails_its_schema(api: FlaskClient) -> None:
    schema = {"type": "object", "required": ["deviceName"]}
    api.post("/api/models", json={"code": "lamp", "name": "Lamp", "schema": schema})
    body = report(
        upload(
            api, ("aa-bb-cc-dd-ee-01.json", ONE.encode()), ("aa-bb-cc-dd-ee-02.json", b"{}"),
            model="lamp",
        )
    )  # fmt: skip
    assert outcomes(body)["aa-bb-cc-dd-ee-01.json"] == ("created", None)
    outcome, reason = outcomes(body)["aa-bb-cc-dd-ee-02.json"]
    assert outcome == "skipped" and reason is not None and "deviceName" in reason
    assert api.get("/api/configs?model=lamp").get_json()["count"] == 1
    assert_error(upload(api, ("aa-bb-cc-dd-ee-03.json", b"{}"), model="nope"), 404)


def test_what_an_upload_cannot_be_is_refused_and_nothing_is_stored(client: FlaskClient) -> None:
    good = ("aa-bb-cc-dd-ee-01.json", b"{}")
    big = b" " * 1_100_000
    refusals: list[tuple[TestResponse, int]] = [
        (upload(client, good, ("../aa-bb-cc-dd-ee-02.json", b"{}")), 400),
        (upload(client, good, ("x.zip", zipped(("../../etc/aa-bb-cc-dd-ee-02.json", b"{}")))), 400),
        (upload(client, good, ("x.zip", zipped(("/abs/aa-bb-cc-dd-ee-02.json", b"{}")))), 400),
        (upload(client, good, ("x.zip", zipped(("a\\aa-bb-cc-dd-ee-02.json", b"{}")))), 400),
        (upload(client, good, ("x.zip", zipped(("C:aa-bb-cc-dd-ee-02.json", b"{}")))), 400),
        (upload(client, good, ("x.zip", zipped(("a\x1bb.json", b"{}")))), 400),
        (upload(client, good, ("x.zip", b"this is no zip")), 400),
        (upload(client, good, dry_run="yes"), 400),
        (upload(client, good, other="1"), 400),
        (upload(client, good, dry_run="true", **{"dry_run ": "x"}), 400),
        (client.post("/api/configs/import", json={"file": "x"}), 400),
        (client.post("/api/configs/import", data={"x": "1"}), 400),
        # A config larger than MAX_REQUEST_BYTES, plain or zipped (its declared size).
        (upload(client, good, ("aa-bb-cc-dd-ee-02.json", big)), 413),
        (upload(client, good, ("x.zip", zipped(("aa-bb-cc-dd-ee-02.json", big)))), 413),
    ]  # fmt: skip
    for response, status in refusals:
        body = assert_error(response, status)
        assert "\x1b" not in body["error"]  # a control character is never echoed
    assert macs(client) == []


def test_zip_bombs_and_lies_are_refused_before_they_inflate(client_with: ClientWith) -> None:
    client = client_with(import_max_bytes=64 * 1024, import_max_files=5)
    # 4 MB of zeros in a few KB: refused from the sizes it declares.
    bomb = zipped(("aa-bb-cc-dd-ee-01.json", b"0" * 4_000_000))
    assert len(bomb) < 10_000
    body = assert_error(upload(client, ("bomb.zip", bomb)), 413, "upload_too_large")
    assert body["details"]["max_file_bytes"] == 1024 * 1024
    assert (body["details"]["limit"], body["details"]["value"]) == ("MAX_REQUEST_BYTES", 1048576)
    assert body["error"] == (
        "bomb.zip/aa-bb-cc-dd-ee-01.json is larger than MAX_REQUEST_BYTES (1048576 bytes)"
    )
    # Many members that each fit, together over IMPORT_MAX_BYTES unzipped.
    many = zipped(*[(f"aa-bb-cc-dd-ee-0{i}.json", b" " * 20_000 + b"{}") for i in range(4)])
    body = assert_error(upload(client, ("many.zip", many)), 413)
    assert body["error"] == "the files hold more than IMPORT_MAX_BYTES (65536 bytes) unzipped"
    # More files than IMPORT_MAX_FILES, in a zip or as parts.
    members = [(f"aa-bb-cc-dd-ee-{i:02x}.json", b"{}") for i in range(6)]
    body = assert_error(upload(client, ("six.zip", zipped(*members))), 413)
    assert body["error"] == "the upload has more than IMPORT_MAX_FILES (5) files"
    body = assert_error(upload(client, *members), 413)
    assert body["error"] == "the upload has more than IMPORT_MAX_FILES (5) files"
    assert (body["details"]["limit"], body["details"]["value"]) == ("IMPORT_MAX_FILES", 5)
    # A central directory far too big for five files is refused before it is parsed.
    empty = zipped(*[(f"{i:05d}", b"") for i in range(200)], method=zipfile.ZIP_STORED)
    body = assert_error(upload(client, ("empty.zip", empty)), 413)
    assert body["error"] == "empty.zip has more than IMPORT_MAX_FILES (5) files"
    # A member that says it is small and inflates to more: its CRC fails, nothing stored.
    liar = lying(zipped(("aa-bb-cc-dd-ee-01.json", b"{}" + b" " * 50_000)), size=10)
    assert_error(upload(client, ("liar.zip", liar)), 400, "invalid_upload")
    # Encrypted members cannot be read.
    assert_error(upload(client, ("locked.zip", encrypted(zipped(("a.json", b"{}"))))), 400)
    # The upload itself over IMPORT_MAX_BYTES.
    body = assert_error(upload(client, ("aa-bb-cc-dd-ee-01.json", b" " * 70_000)), 413)
    assert body["error"] == "the upload is larger than IMPORT_MAX_BYTES (65536 bytes)"
    assert (body["details"]["limit"], body["details"]["value"]) == ("IMPORT_MAX_BYTES", 65536)
    assert macs(client) == []


def lying(archive: bytes, *, size: int) -> bytes:
    """The zip with its one member's uncompressed size (local and central) set to `size`."""
    data = bytearray(archive)
    struct.pack_into("<L", data, 22, size)  # local file header
    central = data.rfind(b"PK\x01\x02")
    struct.pack_into("<L", data, central + 24, size)
    return bytes(data)


def encrypted(archive: bytes) -> bytes:
    """The zip with its one member marked encrypted (general purpose flag bit 0)."""
    data = bytearray(archive)
    data[6] |= 1
    central = data.rfind(b"PK\x01\x02")
    data[central + 8] |= 1
    return bytes(data)


def test_export_is_a_zip_of_the_old_layout(api: FlaskClient) -> None:
    api.post("/api/configs", json={"mac_address": "aa:bb:cc:dd:ee:01", "content": ONE})
    created = api.post("/api/configs", json={"mac_address": "aa:bb:cc:dd:ee:02", "content": TWO})
    token = api.post(f"/api/configs/{created.get_json()['id']}/credential").get_json()["token"]
    response = api.get("/api/configs/export")
    assert response.status_code == 200 and response.mimetype == "application/zip"
    assert response.headers["Content-Disposition"].startswith(
        'attachment; filename="iotsupport-configs-'
    )
    assert response.headers["Cache-Control"] == "no-store"
    assert token.encode() not in response.data
    with zipfile.ZipFile(io.BytesIO(response.data)) as archive:
        assert archive.namelist() == ["aa-bb-cc-dd-ee-01.json", "aa-bb-cc-dd-ee-02.json"]
        assert archive.read("aa-bb-cc-dd-ee-01.json").decode() == ONE
        assert archive.testzip() is None
    # ... which imports back as unchanged, file by file.
    body = report(upload(api, ("export.zip", response.data)))
    assert (body["unchanged"], body["created"], body["skipped"]) == (2, 0, 0)


def test_export_of_a_model_and_of_an_empty_fleet(client: FlaskClient) -> None:
    with zipfile.ZipFile(io.BytesIO(client.get("/api/configs/export").data)) as archive:
        assert archive.namelist() == []
    client.post("/api/models", json={"code": "lamp", "name": "Lamp", "schema": {}})
    client.post("/api/configs", json={"mac_address": "aa:bb:cc:dd:ee:01", "content": ONE})
    client.post(
        "/api/configs", json={"mac_address": "aa:bb:cc:dd:ee:02", "content": TWO, "model": "lamp"}
    )
    with zipfile.ZipFile(io.BytesIO(client.get("/api/configs/export?model=lamp").data)) as archive:
        assert archive.namelist() == ["aa-bb-cc-dd-ee-02.json"]
    assert_error(client.get("/api/configs/export?model=nope"), 404)
    assert_error(client.get("/api/configs/export?models=lamp"), 400)


@pytest.mark.parametrize("count", [1201])
def test_export_is_streamed_in_batches(client: FlaskClient, count: int) -> None:
    """More configs than one batch: every one is in the zip, in MAC order."""
    from iotsupport.configs.service import ConfigService
    from iotsupport.db import commit
    from iotsupport.extensions import state

    app_state = state(client.application)
    session = app_state.database.session()
    service = ConfigService(session)
    for index in range(count):
        service.create(f"02:00:00:00:{index // 256:02x}:{index % 256:02x}", "{}")
    commit(session)
    session.close()
    response = client.get("/api/configs/export")
    assert not response.is_sequence  # streamed, not built whole
    with zipfile.ZipFile(io.BytesIO(response.get_data())) as archive:
        names = archive.namelist()
    assert len(names) == count and names == sorted(names)


EXPORTED_CONFIGS = 10_000


@pytest.fixture(scope="module")
def server_export(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> bytes:
    """The server's own export of 10,000 configs of about 300 bytes (3 MB zipped)."""
    from iotsupport.configs.service import ConfigService
    from iotsupport.db import commit
    from iotsupport.extensions import state

    path = tmp_path_factory.mktemp("export") / "fleet.db"
    shutil.copyfile(sqlite_template, path)
    app = create_app(
        make_settings(f"sqlite:///{path}"), publisher=RecordingPublisher(), registry=Registry()
    )
    app_state = state(app)
    with app_state.database.session() as session:
        service = ConfigService(session)
        for index in range(EXPORTED_CONFIGS):
            service.create(export_mac(index), pretty_config(index, 3))
        commit(session)
    with app.test_client() as client:
        data = client.get("/api/configs/export").get_data()
    app_state.database.dispose()
    return data


def export_mac(index: int) -> str:
    return f"02:44:00:00:{index // 256:02x}:{index % 256:02x}"


def pretty_config(index: int, sensors: int) -> str:
    """A config as people write them: indented, with a few nested parts."""
    content = {
        "deviceName": f"Sensor {index}",
        "wifi": {"ssid": "HomeLab-IoT", "channel": index % 13 + 1},
        "sensors": [{"id": number, "interval": 30 + number} for number in range(sensors)],
    }
    return json.dumps(content, indent=4)


def test_the_servers_own_export_of_10000_configs_imports_back(
    api: FlaskClient, server_export: bytes
) -> None:
    assert len(server_export) > 2_000_000  # larger than the multipart parser's buffers
    body = report(upload(api, ("iotsupport-configs.zip", server_export)))
    assert (body["created"], body["skipped"]) == (EXPORTED_CONFIGS, 0)
    assert len(macs(api)) == EXPORTED_CONFIGS
    for index in (0, 4321, EXPORTED_CONFIGS - 1):
        answer = api.get(f"/api/configs/{export_mac(index)}.json")
        assert answer.get_data(as_text=True) == pretty_config(index, 3)
    # ... and exports again the same files, byte for byte.
    with zipfile.ZipFile(io.BytesIO(api.get("/api/configs/export").data)) as again:
        with zipfile.ZipFile(io.BytesIO(server_export)) as first:
            assert again.namelist() == first.namelist()
            assert again.read(first.namelist()[77]) == first.read(first.namelist()[77])


def test_a_large_pretty_config_and_a_zip_of_1000_import(api: FlaskClient) -> None:
    big = pretty_config(1, 2000).encode()
    assert 140_000 < len(big) < 1024 * 1024  # over 64 KiB, under MAX_REQUEST_BYTES
    body = report(upload(api, ("02-55-00-00-00-01.json", big)))
    assert body["created"] == 1
    answer = api.get("/api/configs/02:55:00:00:00:01.json")
    assert answer.get_data() == big
    members = [
        (f"fleet/02-55-00-01-{index // 256:02x}-{index % 256:02x}.json", pretty_config(index, 6))
        for index in range(1000)
    ]
    archive = zipped(*[(name, data.encode()) for name, data in members])
    assert len(archive) > 100_000
    body = report(upload(api, ("fleet.zip", archive)))
    assert (body["created"], body["skipped"]) == (1000, 0)
    assert len(macs(api)) == 1001
