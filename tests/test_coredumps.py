"""Core dumps: uploaded by a device, decoded in the background against the release's app
ELF (real ones: compiled by tests/coredump_fixtures.py), grouped into crashes."""

from __future__ import annotations

import secrets
import shutil
import subprocess
import typing as t

import pytest
from conftest import assert_error
from conftest import unavailable
from coredump_fixtures import AppElf
from coredump_fixtures import CompilerMissing
from coredump_fixtures import app_elf
from coredump_fixtures import riscv_binary_dump
from coredump_fixtures import riscv_dump
from credentials_support import bearer
from credentials_support import create_device
from credentials_support import issue
from esp_images import AppInfo
from esp_images import build_image
from flask.testing import FlaskClient
from release_support import create_model
from release_support import post_release
from sqlalchemy import func
from sqlalchemy import select

from iotsupport.crashes.routes import DECODER_KEY
from iotsupport.extensions import state
from iotsupport.releases.tables import StoredFile

ADDR2LINE = "riscv64-unknown-elf-addr2line"


@pytest.fixture(scope="module")
def elf() -> AppElf:
    try:
        return app_elf()
    except CompilerMissing as exc:
        unavailable(str(exc))


def decode_pending(client: FlaskClient) -> int:
    app = client.application
    done: int = app.extensions[DECODER_KEY].run()
    return done


def add_release(client: FlaskClient, elf: AppElf, version: str, model: str = "sensor") -> None:
    image = build_image(
        "esp32c3", app=AppInfo(version=version, elf_sha256=bytes.fromhex(elf.sha256))
    )
    response = post_release(client, model, image)
    assert response.status_code == 201, response.get_json()


def post_elf(client: FlaskClient, version: str, data: bytes, **kw: t.Any) -> t.Any:
    from assets_support import multipart

    fields = kw.pop("fields", {})
    body, content_type = multipart(fields, "app.elf", data)
    return client.post(
        f"/api/models/sensor/releases/{version}/elf", data=body, content_type=content_type, **kw
    )


def device(client: FlaskClient) -> tuple[int, str, dict[str, str]]:
    mac = ":".join(f"{b:02x}" for b in [0x24, *secrets.token_bytes(5)])
    config_id = create_device(client, mac)
    return config_id, mac, bearer(issue(client, config_id))


def upload(client: FlaskClient, data: bytes, headers: dict[str, str], query: str = "") -> t.Any:
    return client.post(
        f"/api/device/coredump{query}",
        data=data,
        headers={**headers, "Content-Type": "application/octet-stream"},
    )


def addr2line(elf: AppElf, address: int) -> tuple[str, str, int]:
    """binutils' answer (not pyelftools'): function, file, line."""
    if shutil.which(ADDR2LINE) is None:
        unavailable(f"{ADDR2LINE} is missing (apt-get install binutils-riscv64-unknown-elf)")
    out = subprocess.run(
        [ADDR2LINE, "-f", "-e", str(elf.path), f"{address:#x}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    file, line = out[1].rsplit(":", 1)
    return out[0], file.rsplit("/", 1)[-1], int(line.split()[0])


# --- the release's app ELF -----------------------------------------------------------------


def test_the_elf_must_be_the_one_the_image_names(api: FlaskClient, elf: AppElf) -> None:
    create_model(api, "sensor")
    add_release(api, elf, "1.0.0")
    listed = api.get("/api/models/sensor/releases").get_json()["releases"]
    assert listed[0]["symbols"] is False
    other = app_elf("other build")
    assert_error(post_elf(api, "1.0.0", other.data), 422, "elf_sha256_mismatch")
    assert_error(post_elf(api, "9.9.9", elf.data), 404)
    stored = post_elf(api, "1.0.0", elf.data)
    assert stored.status_code == 201, stored.get_json()
    assert stored.get_json()["symbols"] is True
    assert api.get("/api/models/sensor/releases").get_json()["releases"][0]["symbols"] is True
    download = api.get("/api/models/sensor/releases/1.0.0/elf")
    assert download.status_code == 200 and download.data == elf.data
    assert api.delete("/api/models/sensor/releases/1.0.0/elf").status_code == 204
    assert_error(api.get("/api/models/sensor/releases/1.0.0/elf"), 404, "release_has_no_elf")
    assert api.get("/api/models/sensor/releases/1.0.0").get_json()["symbols"] is False
    assert post_elf(api, "1.0.0", elf.data).status_code == 201
    assert api.delete("/api/models/sensor/releases/1.0.0").status_code == 204
    app = api.application
    with state(app).database.session() as session:  # the image and the ELF went with it
        assert session.scalar(select(func.count()).select_from(StoredFile)) == 0


# --- core dumps ------------------------------------------------------------------------------


def test_a_dump_is_decoded_against_the_release_s_symbols(api: FlaskClient, elf: AppElf) -> None:
    create_model(api, "sensor")
    add_release(api, elf, "1.0.0")
    assert post_elf(api, "1.0.0", elf.data).status_code == 201
    config_id, _, token = device(api)
    raw, crash = riscv_dump(elf)
    created = upload(api, raw, token)
    assert created.status_code == 201, created.get_json()
    dump_id = created.get_json()["id"]
    again = upload(api, raw, token)  # a retry: the same dump
    assert again.status_code == 201 and again.get_json()["id"] == dump_id
    pending = api.get(f"/api/coredumps/{dump_id}").get_json()
    assert pending["state"] == "pending" and pending["backtrace"] == []  # not on the request
    assert decode_pending(api) == 1
    dump = api.get(f"/api/coredumps/{dump_id}").get_json()
    assert dump["state"] == "decoded" and dump["verified"] is True
    assert dump["chip"] == "esp32c3" and dump["chip_rev"] == 3
    assert dump["app_elf_sha256"] == elf.sha256 and dump["release"] == "1.0.0"
    assert dump["task"] == "sensor"
    assert (dump["cause"], dump["cause_name"]) == (7, "Store access fault")
    assert dump["fault_address"] == crash.fault_address
    assert dump["registers"]["pc"] == crash.pc and dump["registers"]["sp"] == crash.sp
    assert dump["registers"]["mcause"] == 7
    frames = dump["backtrace"]
    assert [frame["address"] for frame in frames] == [crash.pc, *crash.return_addresses]
    for index, frame in enumerate(frames):  # binutils agrees on every frame
        lookup = frame["address"] - (1 if index else 0)
        assert (frame["function"], frame["file"], frame["line"]) == addr2line(elf, lookup)
    assert [frame["function"] for frame in frames] == [
        "store_value",
        "parse_packet",
        "process_reading",
        "sensor_task",
    ]
    listed = api.get(f"/api/configs/{config_id}/coredumps").get_json()
    assert [item["id"] for item in listed["coredumps"]] == [dump_id]
    raw_back = api.get(f"/api/coredumps/{dump_id}/download")
    assert raw_back.data == raw and api.get(f"/api/coredumps/{dump_id}?download").data == raw
    group = api.get(f"/api/crashes/{dump['crash_group']}").get_json()
    assert group["title"] == "store_value < parse_packet < process_reading"
    assert group["occurrences"] == 1 and group["devices_affected"] == 1
    assert group["releases"] == [
        {"model": "sensor", "version": "1.0.0", "occurrences": 1, "sample_coredump": dump_id}
    ]
    assert api.delete(f"/api/coredumps/{dump_id}").status_code == 204
    assert_error(api.get(f"/api/coredumps/{dump_id}"), 404)


def test_a_dump_before_its_elf_is_decoded_again_when_it_arrives(
    client: FlaskClient, elf: AppElf
) -> None:
    create_model(client, "sensor")
    add_release(client, elf, "1.0.0")
    _, _, token = device(client)
    raw, crash = riscv_dump(elf, sha_chars=16)  # CONFIG_APP_RETRIEVE_LEN_ELF_SHA=16
    dump_id = upload(client, raw, token).get_json()["id"]
    decode_pending(client)
    bare = client.get(f"/api/coredumps/{dump_id}").get_json()
    assert bare["release"] == "1.0.0" and bare["symbolized"] is False
    assert bare["app_elf_sha256"] == elf.sha256[:16]
    assert [frame["address"] for frame in bare["backtrace"]] == [crash.pc]
    assert bare["backtrace"][0]["function"] is None
    assert post_elf(client, "1.0.0", elf.data).status_code == 201
    assert decode_pending(client) == 1
    named = client.get(f"/api/coredumps/{dump_id}").get_json()
    assert named["symbolized"] is True and len(named["backtrace"]) == 4
    assert named["backtrace"][0]["function"] == "store_value"
    crashes = client.get("/api/crashes").get_json()["crashes"]
    # The unsymbolized group is left without occurrences; the named one has the dump.
    counted = {group["title"]: group["occurrences"] for group in crashes}
    assert counted == {"store_value < parse_packet < process_reading": 1}


def test_unverified_dumps_are_kept_marked_and_never_counted(
    client: FlaskClient, elf: AppElf
) -> None:
    create_model(client, "sensor")
    add_release(client, elf, "1.0.0")
    assert post_elf(client, "1.0.0", elf.data).status_code == 201
    config_id, mac, _ = device(client)
    raw, _ = riscv_dump(elf)
    assert_error(upload(client, raw, {}), 401)  # no credential, no MAC
    created = upload(client, raw, {}, f"?mac={mac}")
    assert created.status_code == 201
    decode_pending(client)
    dump = client.get(f"/api/coredumps/{created.get_json()['id']}").get_json()
    assert dump["verified"] is False and dump["state"] == "decoded"
    assert dump["backtrace"][0]["function"] == "store_value" and dump["crash_group"] is None
    assert client.get("/api/crashes").get_json()["count"] == 0


def test_refusals_and_unreadable_dumps(client_with: t.Any, elf: AppElf) -> None:
    client = client_with(coredump_max_bytes=4096, coredump_keep_per_device=2)
    config_id, _, token = device(client)
    assert_error(upload(client, bytes(5000), token), 413, "payload_too_large")
    assert_error(upload(client, b"", token), 400)
    garbage = upload(client, b"\x01\x02\x03" * 100, token).get_json()["id"]
    raw, _ = riscv_dump(elf)
    broken = bytearray(raw)
    broken[200] ^= 0xFF  # the checksum no longer matches
    corrupt = upload(client, bytes(broken), token).get_json()["id"]
    decode_pending(client)
    for dump_id in (garbage, corrupt):
        dump = client.get(f"/api/coredumps/{dump_id}").get_json()
        assert dump["state"] == "unreadable" and dump["error"]
    # COREDUMP_KEEP_PER_DEVICE=2: the oldest goes.
    newest = upload(client, raw, token).get_json()["id"]
    kept = client.get(f"/api/configs/{config_id}/coredumps").get_json()["coredumps"]
    assert [item["id"] for item in kept] == [newest, corrupt]
    # DEVICE_AUTH=required: a MAC alone proves nothing and is refused.
    strict = client_with(device_auth="required")
    mac = client.get(f"/api/configs/{config_id}").get_json()["mac_address"]
    assert_error(upload(strict, raw, {}, f"?mac={mac}"), 401)
    assert upload(strict, raw, token).status_code == 201


def test_a_binary_format_dump_takes_the_release_its_device_reported(
    client: FlaskClient, elf: AppElf
) -> None:
    """The older binary format records no app ELF SHA-256: esp-coredump turns it into an
    ELF core, and the release is the version the device last reported with its token."""
    create_model(client, "sensor")
    add_release(client, elf, "1.0.0")
    assert post_elf(client, "1.0.0", elf.data).status_code == 201
    mac = ":".join(f"{b:02x}" for b in [0x24, *secrets.token_bytes(5)])
    body = {"mac_address": mac, "content": {}, "model": "sensor"}
    config_id = client.post("/api/configs", json=body).get_json()["id"]
    token = bearer(issue(client, config_id))
    fetched = client.get(
        f"/api/configs/{mac}.json", headers={**token, "X-Firmware-Version": "1.0.0"}
    )
    assert fetched.status_code == 200
    state(client.application).reports.flush()
    raw, crash = riscv_binary_dump(elf)
    dump_id = upload(client, raw, token).get_json()["id"]
    decode_pending(client)
    dump = client.get(f"/api/coredumps/{dump_id}").get_json()
    assert dump["state"] == "decoded" and dump["app_elf_sha256"] is None
    assert dump["release"] == "1.0.0" and dump["task"] == "sensor"
    assert (dump["cause_name"], dump["fault_address"]) == ("Store access fault", 4)
    assert [frame["address"] for frame in dump["backtrace"]] == [crash.pc, *crash.return_addresses]
    assert dump["backtrace"][1]["function"] == "parse_packet"
