"""The `iotsupport` commands, run on the test app and once through the real console script."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import Result
from conftest import RecordingPublisher
from conftest import make_settings
from conftest import run_script
from flask import Flask
from flask.testing import FlaskClient
from flask.testing import FlaskCliRunner
from prometheus_client import CollectorRegistry
from sqlalchemy import create_engine

from iotsupport import create_app
from iotsupport import migrate
from iotsupport.extensions import state

SAMPLE_DIR = Path(migrate.__file__).parent / "sample_data"
TOPIC = "iotsupport/updates/configs"


def invoke(runner: FlaskCliRunner, *args: str) -> Result:
    result: Result = runner.invoke(args=list(args))
    return result


def ok(runner: FlaskCliRunner, *args: str) -> str:
    result = invoke(runner, *args)
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


def macs(client: FlaskClient) -> list[str]:
    return [row["mac_address"] for row in client.get("/api/configs").get_json()["configs"]]


def lines_by_file(output: str) -> dict[str, str]:
    """`created   aa-bb-....json -> ...` -> {"aa-bb-....json": "created   ..."}."""
    result = {}
    for line in output.splitlines():
        words = line.split()
        if len(words) >= 2:
            result[words[1].rstrip(":")] = line
    return result


def create(client: FlaskClient, mac: str, content: str) -> None:
    response = client.post("/api/configs", json={"mac_address": mac, "content": content})
    assert response.status_code == 201, response.get_data(as_text=True)


# --- upgrade-db ---------------------------------------------------------------------


def test_upgrade_db_reports_the_revision(runner: FlaskCliRunner, app: Flask) -> None:
    output = ok(runner, "upgrade-db")
    head = migrate.status(state(app).database.engine).head
    assert head is not None and head in output


def test_upgrade_db_on_an_empty_database(tmp_path: Path, publisher: RecordingPublisher) -> None:
    app = create_app(
        make_settings(f"sqlite:///{tmp_path / 'blank.db'}"),
        publisher=publisher,
        registry=CollectorRegistry(),
    )
    runner = app.test_cli_runner()
    before = ok(runner, "db-status")
    assert "current revision: (none)" in before
    assert "pending: none" not in before
    ok(runner, "upgrade-db")
    after = ok(runner, "db-status")
    assert "pending: none" in after
    assert "configs: 0" in after
    assert app.test_client().get("/api/configs").get_json()["configs"] == []
    state(app).database.dispose()


@pytest.mark.parametrize("command", [["upgrade-db", "--recreate"], ["load-test-data"]])
def test_data_loss_is_refused_without_confirmation(
    runner: FlaskCliRunner, client: FlaskClient, command: list[str]
) -> None:
    create(client, "aa:bb:cc:dd:ee:ff", "{}")
    result = invoke(runner, *command)
    assert result.exit_code != 0
    assert "--yes-i-am-sure" in result.output
    assert macs(client) == ["aa:bb:cc:dd:ee:ff"]


def test_recreate_with_confirmation_empties_the_database(
    runner: FlaskCliRunner, client: FlaskClient
) -> None:
    create(client, "aa:bb:cc:dd:ee:ff", "{}")
    ok(runner, "upgrade-db", "--recreate", "--yes-i-am-sure")
    assert macs(client) == []
    create(client, "aa:bb:cc:dd:ee:ff", "{}")  # the schema is back and usable
    assert "pending: none" in ok(runner, "db-status")


# --- load-test-data ------------------------------------------------------------------

SAMPLE_MACS = sorted(path.stem.replace("-", ":") for path in SAMPLE_DIR.glob("*.json"))


def test_load_test_data_loads_the_sample_devices(
    runner: FlaskCliRunner, client: FlaskClient
) -> None:
    create(client, "aa:bb:cc:dd:ee:ff", "{}")
    ok(runner, "load-test-data", "--yes-i-am-sure")
    body = client.get("/api/configs").get_json()
    assert body["count"] == 5
    assert macs(client) == SAMPLE_MACS
    for path in SAMPLE_DIR.glob("*.json"):
        device = client.get(f"/api/configs/{path.stem}.json")
        assert device.data == path.read_bytes()
    assert all(row["device_name"] for row in body["configs"])


def test_load_test_data_if_empty_loads_into_an_empty_database(
    runner: FlaskCliRunner, client: FlaskClient
) -> None:
    ok(runner, "load-test-data", "--if-empty")
    assert macs(client) == SAMPLE_MACS


def test_load_test_data_if_empty_keeps_existing_configs(
    runner: FlaskCliRunner, client: FlaskClient
) -> None:
    create(client, "aa:bb:cc:dd:ee:ff", '{"mine": true}')
    ok(runner, "load-test-data", "--if-empty")
    assert macs(client) == ["aa:bb:cc:dd:ee:ff"]
    assert client.get("/api/configs/aa:bb:cc:dd:ee:ff.json").data == b'{"mine": true}'


# --- db-status ---------------------------------------------------------------------


def test_db_status_shows_revision_pending_and_count(
    runner: FlaskCliRunner, client: FlaskClient, app: Flask
) -> None:
    head = migrate.status(state(app).database.engine).head
    output = ok(runner, "db-status")
    assert f"current revision: {head}" in output
    assert "pending: none" in output
    assert "configs: 0" in output
    create(client, "aa:bb:cc:dd:ee:01", "{}")
    create(client, "aa:bb:cc:dd:ee:02", "{}")
    assert "configs: 2" in ok(runner, "db-status")


# --- import-dir ----------------------------------------------------------------------

GOOD = '{\n  "deviceName": "Porch",\n  "enableOTA": false\n}\n'
UPPER = '{"deviceName": "Garage"}'


@pytest.fixture
def old_layout(tmp_path: Path) -> Path:
    folder = tmp_path / "configs"
    folder.mkdir()
    (folder / "aa-bb-cc-dd-ee-01.json").write_text(GOOD)
    (folder / "AA:BB:CC:DD:EE:02.json").write_text(UPPER)
    (folder / "not-a-mac.json").write_text("{}")
    (folder / "aa-bb-cc-dd-ee-03.json").write_text('{"broken": ')
    (folder / "aa-bb-cc-dd-ee-04.json").write_text("[1, 2, 3]")
    (folder / "aa-bb-cc-dd-ee-05.json").write_bytes(b'{"deviceName": "caf\xe9"}')
    (folder / "aa-bb-cc-dd-ee-06.json").write_text('{"a": NaN}')
    (folder / "aa-bb-cc-dd-ee-07.json").write_text("")
    return folder


def test_import_dir_reports_each_file(
    runner: FlaskCliRunner, client: FlaskClient, old_layout: Path, publisher: RecordingPublisher
) -> None:
    lines = lines_by_file(ok(runner, "import-dir", str(old_layout)))
    assert lines["aa-bb-cc-dd-ee-01.json"].startswith("created")
    assert "aa:bb:cc:dd:ee:01" in lines["aa-bb-cc-dd-ee-01.json"]
    assert lines["AA:BB:CC:DD:EE:02.json"].startswith("created")
    assert "aa:bb:cc:dd:ee:02" in lines["AA:BB:CC:DD:EE:02.json"]
    assert lines["not-a-mac.json"].startswith("skipped")
    assert "bad name" in lines["not-a-mac.json"]
    assert lines["aa-bb-cc-dd-ee-03.json"].startswith("skipped")
    assert "JSON" in lines["aa-bb-cc-dd-ee-03.json"]
    assert lines["aa-bb-cc-dd-ee-04.json"].startswith("skipped")
    assert "object" in lines["aa-bb-cc-dd-ee-04.json"]
    assert lines["aa-bb-cc-dd-ee-05.json"].startswith("skipped")
    assert "UTF-8" in lines["aa-bb-cc-dd-ee-05.json"]
    assert lines["aa-bb-cc-dd-ee-06.json"].startswith("skipped")
    assert lines["aa-bb-cc-dd-ee-07.json"].startswith("skipped")

    assert macs(client) == ["aa:bb:cc:dd:ee:01", "aa:bb:cc:dd:ee:02"]
    assert client.get("/api/configs/aa:bb:cc:dd:ee:01.json").get_data(as_text=True) == GOOD
    assert client.get("/api/configs/aa:bb:cc:dd:ee:02.json").get_data(as_text=True) == UPPER
    row = client.get("/api/configs").get_json()["configs"][0]
    assert (row["device_name"], row["enable_ota"]) == ("Porch", False)
    assert sorted(publisher.messages, key=repr) == [
        (TOPIC, {"filename": "aa:bb:cc:dd:ee:01.json"}),
        (TOPIC, {"filename": "aa:bb:cc:dd:ee:02.json"}),
    ]


def test_import_dir_ignores_other_entries(
    runner: FlaskCliRunner, client: FlaskClient, tmp_path: Path
) -> None:
    (tmp_path / "aa-bb-cc-dd-ee-01.json").write_text("{}")
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / ".aa-bb-cc-dd-ee-02.json").write_text("{}")
    (tmp_path / "aa-bb-cc-dd-ee-03.json.bak").write_text("{}")
    (tmp_path / "aa-bb-cc-dd-ee-04.json").mkdir()
    output = ok(runner, "import-dir", str(tmp_path))
    assert macs(client) == ["aa:bb:cc:dd:ee:01"]
    assert ".aa-bb-cc-dd-ee-02.json" not in output
    lines = lines_by_file(output)
    assert not lines.get("notes.txt", "skipped").startswith(("created", "updated"))


def test_reimport_is_unchanged_and_a_modified_file_is_updated(
    runner: FlaskCliRunner, client: FlaskClient, old_layout: Path, publisher: RecordingPublisher
) -> None:
    ok(runner, "import-dir", str(old_layout))
    before = client.get("/api/configs").get_json()["configs"]
    publisher.messages.clear()

    lines = lines_by_file(ok(runner, "import-dir", str(old_layout)))
    assert lines["aa-bb-cc-dd-ee-01.json"].startswith("unchanged")
    assert lines["AA:BB:CC:DD:EE:02.json"].startswith("unchanged")
    assert client.get("/api/configs").get_json()["configs"] == before
    assert publisher.messages == []

    changed = '{"deviceName": "Porch v2"}'
    (old_layout / "aa-bb-cc-dd-ee-01.json").write_text(changed)
    lines = lines_by_file(ok(runner, "import-dir", str(old_layout)))
    assert lines["aa-bb-cc-dd-ee-01.json"].startswith("updated")
    assert lines["AA:BB:CC:DD:EE:02.json"].startswith("unchanged")
    assert client.get("/api/configs/aa:bb:cc:dd:ee:01.json").get_data(as_text=True) == changed
    config_id = before[0]["id"]
    assert client.get(f"/api/configs/{config_id}").get_json()["version"] == 2
    assert publisher.messages == [(TOPIC, {"filename": "aa:bb:cc:dd:ee:01.json"})]


def test_import_dry_run_changes_nothing(
    runner: FlaskCliRunner, client: FlaskClient, old_layout: Path, publisher: RecordingPublisher
) -> None:
    create(client, "aa:bb:cc:dd:ee:01", '{"old": 1}')
    before = client.get("/api/configs").get_json()["configs"]
    publisher.messages.clear()
    output = ok(runner, "import-dir", "--dry-run", str(old_layout))
    lines = lines_by_file(output)
    assert lines["aa-bb-cc-dd-ee-01.json"].startswith("updated")
    assert lines["AA:BB:CC:DD:EE:02.json"].startswith("created")
    assert "dry run" in output.lower()
    assert client.get("/api/configs").get_json()["configs"] == before
    assert client.get("/api/configs/aa:bb:cc:dd:ee:01.json").data == b'{"old": 1}'
    assert publisher.messages == []


def test_import_of_a_missing_directory_fails(runner: FlaskCliRunner, tmp_path: Path) -> None:
    result = invoke(runner, "import-dir", str(tmp_path / "absent"))
    assert result.exit_code != 0


# --- export-dir ---------------------------------------------------------------------

CONTENTS = {
    "aa:bb:cc:dd:ee:01": '{\n  "deviceName": "A",\n  "n": 1.50\n}',
    "aa:bb:cc:dd:ee:02": '{"emoji":"\\ud83d\\ude00","raw":"caf\u00e9"}',
    "0a:00:00:00:00:03": "{ }",
}


def test_export_dir_writes_the_stored_bytes(
    runner: FlaskCliRunner, client: FlaskClient, tmp_path: Path
) -> None:
    for mac, content in CONTENTS.items():
        create(client, mac, content)
    target = tmp_path / "out" / "nested"
    ok(runner, "export-dir", str(target))
    written = {path.name: path.read_bytes() for path in target.iterdir()}
    assert written == {
        mac.replace(":", "-") + ".json": content.encode("utf-8")
        for mac, content in CONTENTS.items()
    }


def test_export_overwrites_older_files(
    runner: FlaskCliRunner, client: FlaskClient, tmp_path: Path
) -> None:
    create(client, "aa:bb:cc:dd:ee:01", '{"new": true}')
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "aa-bb-cc-dd-ee-01.json").write_text('{"old": true}')
    ok(runner, "export-dir", str(folder))
    assert (folder / "aa-bb-cc-dd-ee-01.json").read_text() == '{"new": true}'
    # Written whole, through a temporary file that does not stay behind.
    assert sorted(path.name for path in folder.iterdir()) == ["aa-bb-cc-dd-ee-01.json"]


def test_export_then_import_into_a_fresh_database_round_trips(
    runner: FlaskCliRunner,
    client: FlaskClient,
    tmp_path: Path,
    sqlite_template: Path,
    publisher: RecordingPublisher,
) -> None:
    for mac, content in CONTENTS.items():
        create(client, mac, content)
    ok(runner, "load-test-data", "--if-empty")  # not empty: nothing happens
    folder = tmp_path / "export"
    ok(runner, "export-dir", str(folder))

    fresh_path = tmp_path / "fresh.db"
    shutil.copyfile(sqlite_template, fresh_path)
    fresh = create_app(
        make_settings(f"sqlite:///{fresh_path}"), publisher=publisher, registry=CollectorRegistry()
    )
    fresh_runner = fresh.test_cli_runner()
    lines = lines_by_file(ok(fresh_runner, "import-dir", str(folder)))
    for mac in CONTENTS:
        assert lines[mac.replace(":", "-") + ".json"].startswith("created")
    fresh_client = fresh.test_client()
    original = client.get("/api/configs").get_json()
    copied = fresh_client.get("/api/configs").get_json()
    assert copied["count"] == original["count"] == len(CONTENTS)
    for row in original["configs"]:
        mac = row["mac_address"]
        assert (
            fresh_client.get(f"/api/configs/{mac}.json").data
            == client.get(f"/api/configs/{mac}.json").data
            == CONTENTS[mac].encode()
        )
    summary = ("device_name", "device_entity_id", "enable_ota")
    assert [[row[key] for key in summary] for row in copied["configs"]] == [
        [row[key] for key in summary] for row in original["configs"]
    ]
    state(fresh).database.dispose()


# --- the installed console script ---------------------------------------------------


def test_console_script_lists_every_command(tmp_path: Path) -> None:
    result = run_script(tmp_path, "--help")
    assert result.returncode == 0, result.stderr
    for command in (
        "serve",
        "upgrade-db",
        "load-test-data",
        "db-status",
        "import-dir",
        "export-dir",
        "upload-asset",
    ):
        assert command in result.stdout


@pytest.mark.parametrize(
    ("command", "options"),
    [
        ("serve", ["--host", "--port", "--workers", "--threads"]),
        ("upgrade-db", ["--recreate", "--yes-i-am-sure"]),
        ("load-test-data", ["--yes-i-am-sure"]),
        ("import-dir", ["--dry-run"]),
        ("upload-asset", ["--url", "--key", "--name", "--token"]),
    ],
)
def test_console_script_command_options(tmp_path: Path, command: str, options: list[str]) -> None:
    result = run_script(tmp_path, command, "--help")
    assert result.returncode == 0, result.stderr
    for option in options:
        assert option in result.stdout


def test_console_script_works_end_to_end(tmp_path: Path) -> None:
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}"}
    refused = run_script(tmp_path, "upgrade-db", "--recreate", **env)
    assert refused.returncode != 0
    assert "--yes-i-am-sure" in refused.stderr + refused.stdout
    assert run_script(tmp_path, "upgrade-db", **env).returncode == 0
    loaded = run_script(tmp_path, "load-test-data", "--yes-i-am-sure", **env)
    assert loaded.returncode == 0, loaded.stderr
    status = run_script(tmp_path, "db-status", **env)
    assert status.returncode == 0, status.stderr
    assert "pending: none" in status.stdout
    assert "configs: 5" in status.stdout
    engine = create_engine(env["DATABASE_URL"])
    assert migrate.status(engine).pending == []
    engine.dispose()
