"""Crash groups (same top functions), their status and regressions; a log's backtrace
line counted as a crash; the ELF signed by CI; dumps decoded after a restart; the
fixtures themselves read back by esp-coredump and unwound by gdb."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import time
import typing as t
from pathlib import Path

import pytest
from assets_support import build_assets_app
from assets_support import iso_now
from assets_support import rsa_key
from assets_support import write_private_key
from conftest import assert_error
from conftest import unavailable
from coredump_fixtures import AppElf
from coredump_fixtures import CompilerMissing
from coredump_fixtures import app_elf
from coredump_fixtures import riscv_dump
from coredump_fixtures import xtensa_dump
from flask.testing import FlaskClient
from local_issuer import LocalIssuer
from release_support import create_model
from sqlalchemy import select
from test_coredumps import add_release
from test_coredumps import decode_pending
from test_coredumps import device
from test_coredumps import post_elf
from test_coredumps import upload

from iotsupport.assets.signing import RELEASE_ELF_PURPOSE
from iotsupport.assets.signing import RELEASE_PURPOSE
from iotsupport.assets.signing import sign_upload
from iotsupport.crashes.backtraces import record_backtrace
from iotsupport.crashes.decode import decode
from iotsupport.crashes.groups import record_backtrace_line
from iotsupport.crashes.routes import DECODER_KEY
from iotsupport.crashes.symbols import Symbols
from iotsupport.extensions import state
from iotsupport.releases.tables import Release

TITLE = "store_value < parse_packet < process_reading"


@pytest.fixture(scope="module")
def elf() -> AppElf:
    try:
        return app_elf()
    except CompilerMissing as exc:
        unavailable(str(exc))


def crash_on(client: FlaskClient, elf: AppElf, value: int) -> int:
    """A new device crashes on the release built from `elf`; returns its dump's group."""
    _, _, token = device(client)
    raw, _ = riscv_dump(elf, value=value)
    dump_id = upload(client, raw, token).get_json()["id"]
    decode_pending(client)
    group: int = client.get(f"/api/coredumps/{dump_id}").get_json()["crash_group"]
    return group


def test_crashes_group_by_function_and_a_resolved_one_returns_as_a_regression(
    api: FlaskClient, elf: AppElf
) -> None:
    newer = app_elf("1.1.0")  # the same code rebuilt: other addresses may, names do not
    create_model(api, "sensor")
    add_release(api, elf, "1.0.0")
    add_release(api, newer, "1.1.0")
    assert post_elf(api, "1.0.0", elf.data).status_code == 201
    assert post_elf(api, "1.1.0", newer.data).status_code == 201
    group = crash_on(api, elf, 1)
    assert crash_on(api, elf, 2) == group
    body = api.get(f"/api/crashes/{group}").get_json()
    assert body["title"] == TITLE and body["exception"] == "Store access fault"
    assert body["occurrences"] == 2 and body["devices_affected"] == 2
    assert [frame["function"] for frame in body["frames"]] == TITLE.split(" < ")
    assert body["frames"][0]["file"] == "sensor.c" and body["frames"][0]["line"] == 8
    assert body["status"] == "open" and body["regression"] is False
    resolved = api.patch(f"/api/crashes/{group}", json={"status": "resolved"})
    assert resolved.status_code == 200 and resolved.get_json()["status"] == "resolved"
    assert crash_on(api, elf, 3) == group  # again on the release it was resolved in
    assert api.get(f"/api/crashes/{group}").get_json()["status"] == "resolved"
    assert crash_on(api, newer, 4) == group  # on a newer release: back
    again = api.get(f"/api/crashes/{group}").get_json()
    assert again["status"] == "open" and again["regression"] is True
    assert again["releases_affected"] == 2 and again["devices_affected"] == 4
    assert [(r["version"], r["occurrences"]) for r in again["releases"]] == [
        ("1.0.0", 3),
        ("1.1.0", 1),
    ]

    def ids(query: str) -> list[int]:
        return [item["id"] for item in api.get(f"/api/crashes?{query}").get_json()["crashes"]]

    assert ids("release=1.1.0") == [group] and ids("model=sensor&status=open") == [group]
    assert ids("model=other") == [] and ids("status=ignored") == []
    ignored = api.put(f"/api/crashes/{group}", json={"status": "ignored"})
    assert ignored.get_json()["status"] == "ignored" and ids("status=ignored") == [group]
    assert_error(api.patch(f"/api/crashes/{group}", json={"status": "fixed"}), 400)
    assert_error(api.get("/api/crashes/999999"), 404)


def test_a_backtrace_line_counts_as_the_same_crash(client: FlaskClient, elf: AppElf) -> None:
    create_model(client, "sensor")
    add_release(client, elf, "1.0.0")
    assert post_elf(client, "1.0.0", elf.data).status_code == 201
    group = crash_on(client, elf, 1)
    config_id, _, _ = device(client)
    _, crash = riscv_dump(elf)
    pairs = [crash.pc, *crash.return_addresses]
    line = "Backtrace: " + " ".join(f"{pc:#010x}:0x3fc97fb0" for pc in pairs) + " |<-CORRUPTED"
    app = client.application
    with state(app).database.session() as session:
        release = session.scalars(select(Release).where(Release.version == "1.0.0")).one()
        found = record_backtrace_line(
            session, config_id=config_id, release=release, line=line, symbols=Symbols(elf.data)
        )
        assert found is not None and found.id == group
        assert record_backtrace_line(session, config_id=config_id, release=None, line="x") is None
        session.commit()
    body = client.get(f"/api/crashes/{group}").get_json()
    assert body["occurrences"] == 2 and body["devices_affected"] == 2
    # What the logs feature calls: the device's model and version find the release.
    modelled = client.post(
        "/api/configs", json={"mac_address": "24:0a:c4:aa:00:01", "content": {}, "model": "sensor"}
    ).get_json()["id"]
    with state(app).database.session() as session:
        found = record_backtrace(session, modelled, line, firmware_version="1.0.0")
        assert found is not None and found.id == group
        session.commit()
    assert client.get(f"/api/crashes/{group}").get_json()["occurrences"] == 3


def test_ci_signs_the_elf_for_its_model_and_version(
    database_url: str, tmp_path: Path, issuer: LocalIssuer, elf: AppElf
) -> None:
    key = write_private_key(tmp_path / "ci.pem", rsa_key())
    app = build_assets_app(database_url, None, key, **issuer.login_settings())
    admin = {"Authorization": f"Bearer {issuer.token(roles=['admin'])}"}
    ci = {"Authorization": f"Bearer {issuer.token(roles=['asset-uploader'])}"}
    client = app.test_client()
    model = {"code": "sensor", "name": "S", "schema": {}}
    assert client.post("/api/models", json=model, headers=admin).status_code == 201
    add_release_as(client, elf, admin)

    def fields(name: str, purpose: str) -> dict[str, str]:
        stamp, sha = iso_now(), hashlib.sha256(elf.data).hexdigest()
        signature = sign_upload(rsa_key(), timestamp=stamp, name=name, sha256=sha, purpose=purpose)
        return {"timestamp": stamp, "sha256": sha, "signature": signature}

    assert_error(post_elf(client, "1.0.0", elf.data, headers=ci), 400, "missing_field")
    as_release = fields("sensor", RELEASE_PURPOSE)  # a release's signature is no ELF's
    refused = post_elf(client, "1.0.0", elf.data, fields=as_release, headers=ci)
    assert_error(refused, 400, "signature_mismatch")
    other_version = fields("sensor/2.0.0", RELEASE_ELF_PURPOSE)
    refused = post_elf(client, "1.0.0", elf.data, fields=other_version, headers=ci)
    assert_error(refused, 400, "signature_mismatch")
    signed = fields("sensor/1.0.0", RELEASE_ELF_PURPOSE)
    stored = post_elf(client, "1.0.0", elf.data, fields=signed, headers=ci)
    assert stored.status_code == 201, stored.get_json()
    assert_error(client.get("/api/models/sensor/releases/1.0.0/elf", headers=ci), 403)
    state(app).database.dispose()


def add_release_as(client: FlaskClient, elf: AppElf, headers: dict[str, str]) -> None:
    from esp_images import AppInfo
    from esp_images import build_image
    from release_support import post_release

    image = build_image(
        "esp32c3", app=AppInfo(version="1.0.0", elf_sha256=bytes.fromhex(elf.sha256))
    )
    assert post_release(client, "sensor", image, headers=headers).status_code == 201


def test_dumps_not_decoded_before_a_restart_are_decoded_after(
    client_with: t.Any, elf: AppElf
) -> None:
    before = client_with()
    _, _, token = device(before)
    raw, _ = riscv_dump(elf)
    dump_id = upload(before, raw, token).get_json()["id"]
    after = client_with()  # another process's app on the same database
    assert decode_pending(after) == 1
    assert after.get(f"/api/coredumps/{dump_id}").get_json()["state"] == "decoded"
    assert decode_pending(after) == 0


def test_esp_coredump_reads_the_fixture_and_gdb_unwinds_it_alike(
    elf: AppElf, tmp_path: Path
) -> None:
    from esp_coredump.corefile.elf import ESPCoreDumpElfFile
    from esp_coredump.corefile.loader import ESPCoreDumpFileLoader

    raw, crash = riscv_dump(elf)
    (tmp_path / "dump.bin").write_bytes(raw)
    loader = ESPCoreDumpFileLoader(str(tmp_path / "dump.bin"))
    assert loader.target == "esp32c3"
    # Checks the checksum, and the app ELF's SHA-256 against the dump's.
    loader.create_corefile(exe_name=str(elf.path), e_machine=ESPCoreDumpElfFile.EM_RISCV)
    core = tmp_path / "core.elf"
    shutil.copy(loader.core_elf_file, core)
    gdb = shutil.which("gdb-multiarch")
    if gdb is None:
        unavailable("gdb-multiarch is missing (apt-get install gdb-multiarch)")
    out = subprocess.run(
        [gdb, "-batch", "-nx", "-ex", "set architecture riscv:rv32", "-ex", f"file {elf.path}"]
        + ["-ex", f"core-file {core}", "-ex", "bt"],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    backtrace = out[out.rindex("#0 ") :]  # gdb shows frame 0 once as it loads the core
    frames = re.findall(r"^#(\d+)\s+(?:(0x[0-9a-f]+) in )?(\w+) ", backtrace, re.M)
    assert [name for _, _, name in frames][:4] == TITLE.split(" < ") + ["sensor_task"]
    assert [int(address, 16) for _, address, _ in frames[1:4]] == list(crash.return_addresses)


def test_an_xtensa_dump_names_its_cause_and_walks_the_window_chain() -> None:
    """Hand-laid (no Xtensa compiler here): the cause names, registers and the windowed
    ABI's walk; esp-coredump reads the partition as for RISC-V."""
    pcs = (0x400D1234, 0x400D2000, 0x400D3456, 0x40081000)
    raw, sps = xtensa_dump(pcs, exccause=28, excvaddr=0x10)
    decoded = decode(raw, None)
    assert decoded.chip == "esp32" and decoded.task == "main"
    assert (decoded.cause, decoded.cause_name, decoded.fault_address) == (
        28,
        "LoadProhibited",
        0x10,
    )
    assert decoded.registers["pc"] == pcs[0] and decoded.registers["a1"] == sps[0]
    assert [frame.address for frame in decoded.frames] == list(pcs)
    raw, _ = xtensa_dump(pcs, exccause=6, excvaddr=0)
    assert decode(raw, None).cause_name == "IntegerDivideByZero"


def test_the_running_decoder_decodes_an_upload_off_the_request(
    client_with: t.Any, elf: AppElf
) -> None:
    client = client_with()
    decoder = client.application.extensions[DECODER_KEY]
    decoder.start()  # as `iotsupport serve` starts it in each worker
    try:
        _, _, token = device(client)
        raw, _ = riscv_dump(elf)
        dump_id = upload(client, raw, token).get_json()["id"]  # wakes it
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if client.get(f"/api/coredumps/{dump_id}").get_json()["state"] != "pending":
                break
            time.sleep(0.1)
        assert client.get(f"/api/coredumps/{dump_id}").get_json()["state"] == "decoded"
    finally:
        decoder.stop()
