"""Device queries through the API, on SQLite and PostgreSQL: the list (`where=`), bulk
change (`select.where`), export and a rollout's devices."""

from __future__ import annotations

import io
import json
import typing as t
import zipfile
from datetime import timedelta

import pytest
from conftest import assert_error
from conftest import random_mac
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from rollout_support import Fleet
from sqlalchemy import update
from test_bulk_change import apply_bulk
from test_bulk_change import bulk
from test_bulk_change import device_text
from test_bulk_change import preview
from test_device_models import create_config
from test_device_models import create_model

from iotsupport.configs.tables import DeviceCheckin
from iotsupport.db.base import utcnow
from iotsupport.extensions import state

LOOSE = {"type": "object"}


def macs(client: FlaskClient, query: str, **params: str) -> set[str]:
    response = client.get("/api/configs", query_string={"where": query, **params})
    assert response.status_code == 200, response.get_data(as_text=True)
    return {row["mac_address"] for row in response.get_json()["configs"]}


@pytest.fixture
def fleet(api: FlaskClient) -> dict[str, str]:
    """Devices with brightness in two spellings and three models; name -> MAC."""
    for code in ("lamp", "strip", "thermo"):
        create_model(api, code, LOOSE)
    contents: dict[str, tuple[t.Any, str | None]] = {
        "lamp-1": ({"display": {"brightness": 90}, "mqtt": {"broker": "old.local"}}, "lamp"),
        "lamp-2": ({"display": {"brightness": 80}, "mqtt": {"broker": "new.local"}}, "lamp"),
        "strip-1": ({"led": {"brightness": 255}, "sensors": [{"type": "sht40"}]}, "strip"),
        "strip-2": ({"led": {"brightness": 128.5}, "sensors": [{"type": "bme280"}, 3]}, "strip"),
        "thermo-1": ({"display": {"brightness": "95"}, "ota": {"url": "x"}}, "thermo"),
        "thermo-2": ({"display": {"brightness": True}, "ota": None, "sensors": "sht40"}, "thermo"),
        "free": ({"display": [1, 2], "Name": "Ünïcode Lamp", "m": {"0": 5}}, None),
    }
    made = {}
    for name, (content, model) in contents.items():
        mac = random_mac()
        create_config(api, mac, {"deviceName": name, **content}, model)
        made[name] = mac
    return made


def names(fleet: dict[str, str], found: set[str]) -> set[str]:
    return {name for name, mac in fleet.items() if mac in found}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        # Numbers compare as numbers; a string "95", true or an array never match.
        ("display.brightness > 80", {"lamp-1"}),
        ("display.brightness >= 80", {"lamp-1", "lamp-2"}),
        ("display.brightness < 90", {"lamp-2"}),
        ("display.brightness <= 90", {"lamp-1", "lamp-2"}),
        ("display.brightness == 80", {"lamp-2"}),
        ("display.brightness != 80", {"lamp-1"}),
        ("led.brightness > 128", {"strip-1", "strip-2"}),
        ("led.brightness == 128.5", {"strip-2"}),
        ('display.brightness == "95"', {"thermo-1"}),
        ("display.brightness == true", {"thermo-2"}),
        ("display.brightness != true", set()),
        ("display.brightness > 1e3", set()),
        # Strings compare as strings.
        ('mqtt.broker == "old.local"', {"lamp-1"}),
        ("mqtt.broker != old.local", {"lamp-2"}),
        ("mqtt.broker > nf", {"lamp-1"}),
        ("mqtt.broker == *.LOCAL", {"lamp-1", "lamp-2"}),
        ("mqtt.broker != old*", {"lamp-2"}),
        ('Name == "ünï*"', {"free"}),
        # Arrays: [*] is any element, [n] one; an element of another type is skipped.
        ('sensors[*].type == "sht40"', {"strip-1"}),
        ("sensors[*].type in (sht40, bme280)", {"strip-1", "strip-2"}),
        ("sensors[1] == 3", {"strip-2"}),
        ("sensors[*] == 3", {"strip-2"}),
        ("sensors[0].type == bme280", {"strip-2"}),
        ("display[*] > 1", {"free"}),
        ("display[0] == 1", {"free"}),
        # An index steps into arrays only, a quoted key into objects only.
        ('display["0"] == 1', set()),
        ("m[0] == 5", set()),
        ('m["0"] == 5', {"free"}),
        # exists: present, even as null.
        ("exists(ota)", {"thermo-1", "thermo-2"}),
        ("exists(ota.url)", {"thermo-1"}),
        ("ota == null", {"thermo-2"}),
        ("ota != null", {"thermo-1"}),
        ("not exists(display)", {"strip-1", "strip-2"}),
        # Absent paths and other types: false, and their not true.
        ("nothing.here == 1", set()),
        ("mqtt.broker.deeper == 1", set()),
        (
            "not (display.brightness > 80)",
            {"lamp-2", "strip-1", "strip-2", "thermo-1", "thermo-2", "free"},
        ),
        # in / not in
        ("display.brightness in (80, 90)", {"lamp-1", "lamp-2"}),
        ("display.brightness not in (80)", {"lamp-1"}),
        # Attributes
        ("name == lamp*", {"lamp-1", "lamp-2"}),
        ("name == LAMP-1", set()),
        ("name in (lamp-1, strip-2)", {"lamp-1", "strip-2"}),
        ("model == strip", {"strip-1", "strip-2"}),
        ("model == null", {"free"}),
        ("model != lamp and model != thermo", {"strip-1", "strip-2"}),
        ("model not in (lamp, thermo)", {"strip-1", "strip-2"}),
        ("schema_valid == true and model == thermo", {"thermo-1", "thermo-2"}),
        ("schema_valid == null", {"free"}),
        ("sync_state == never and name == lamp-1", {"lamp-1"}),
        ("credential == none and name == free", {"free"}),
        ("last_seen == null and name == free", {"free"}),
        ("firmware_version == null and name == free", {"free"}),
        # Content paths named like attributes: with $.
        ("$.name == 1", set()),
        ("$.deviceName == strip-1", {"strip-1"}),
        # The brightness task: both spellings, all models, one query.
        (
            "display.brightness > 80 or led.brightness > 80",
            {"lamp-1", "strip-1", "strip-2"},
        ),
        (
            "(display.brightness > 80 or led.brightness > 80) and not model == lamp",
            {"strip-1", "strip-2"},
        ),
    ],
)
def test_operators(api: FlaskClient, fleet: dict[str, str], query: str, expected: set[str]) -> None:
    assert names(fleet, macs(api, query)) == expected, query


def test_mac_in_any_spelling(api: FlaskClient, fleet: dict[str, str]) -> None:
    mac = fleet["lamp-1"]
    assert macs(api, f"mac == {mac.upper().replace(':', '-')}") == {mac}
    assert macs(api, f'mac == "{mac[:8].upper()}*"') >= {mac}


def test_relative_times_and_the_other_attributes(api: FlaskClient, fleet: dict[str, str]) -> None:
    app: Flask = api.application
    seen = fleet["lamp-1"]
    api.get(f"/api/configs/{seen}.json", headers={"X-Firmware-Version": "1.20"})
    old = fleet["lamp-2"]
    api.get(f"/api/configs/{old}.json", headers={"X-Firmware-Version": "1.9.0"})
    app_state = state(app)
    app_state.reports.flush()
    with app_state.database.session() as session, session.begin():
        session.execute(
            update(DeviceCheckin)
            .where(DeviceCheckin.config_id == _id(api, old))
            .values(fetched_at=utcnow() - timedelta(hours=3))
        )
    assert names(fleet, macs(api, "last_seen > -1h")) == {"lamp-1"}
    assert names(fleet, macs(api, "last_seen < -1h")) == {"lamp-2"}
    assert names(fleet, macs(api, "last_seen < -4h")) == set()
    assert names(fleet, macs(api, "last_seen >= -1d")) == {"lamp-1", "lamp-2"}
    assert names(fleet, macs(api, "last_seen != null")) == {"lamp-1", "lamp-2"}
    assert names(fleet, macs(api, 'last_seen > "2000-01-01T00:00:00Z"')) == {"lamp-1", "lamp-2"}
    assert names(fleet, macs(api, "sync_state == in_sync")) == {"lamp-1", "lamp-2"}
    assert names(fleet, macs(api, "firmware_version == 1.20")) == {"lamp-1"}
    assert names(fleet, macs(api, "firmware_version == 1.*")) == {"lamp-1", "lamp-2"}
    assert names(fleet, macs(api, "not last_seen > -1h")) == set(fleet) - {"lamp-1"}


def _id(client: FlaskClient, mac: str) -> int:
    rows = client.get("/api/configs").get_json()["configs"]
    return int(next(row["id"] for row in rows if row["mac_address"] == mac))


def test_where_with_model_and_q(api: FlaskClient, fleet: dict[str, str]) -> None:
    query = "display.brightness >= 80"
    assert names(fleet, macs(api, query, model="lamp")) == {"lamp-1", "lamp-2"}
    assert names(fleet, macs(api, query, model="thermo")) == set()
    assert names(fleet, macs(api, query, q="old.local")) == {"lamp-1"}


@pytest.mark.parametrize(
    ("query", "position", "words"),
    [
        ("display.brightness > ", 21, "expected a value"),
        ("name = lamp", 5, "write =="),
        ("sync_state == sleepy", 14, "one of in_sync, pending, never"),
        ("sync_state > pending", 13, "== and != only"),
        ("last_seen < 5", 12, "time before now"),
        ("last_seen == -1h", 13, "< <= > >="),
        ("display.brightness < -1h", 21, "relative time"),
        ("name < true", 7, "compares with a text"),
        ("ota > null", 6, "null compare with == and != only"),
        ("firmware_version > 1.2", 19, "== != and in only"),
        ("a > 1e300", 4, "at most"),
        ("mac == null", 7, "never null"),
        ("last_seen < -999999w", 12, "out of range"),
        ('last_seen > "9999-12-31T23:59:59-01:00"', 12, "out of range"),
        ('last_seen > "0001-01-01T00:00:00+01:00"', 12, "out of range"),
        ("a == 1 or " * 300, 2000, "longer than 2000"),
    ],
)
def test_errors_are_400_with_the_position(
    api: FlaskClient, query: str, position: int, words: str
) -> None:
    for response in (
        api.get("/api/configs", query_string={"where": query}),
        api.get("/api/configs/export", query_string={"where": query}),
        bulk(api, {"where": query}, {"a": 1}),
    ):
        body = assert_error(response, 400, "invalid_query")
        assert body["details"] == {"position": position}, body
        assert words in body["error"], body["error"]


def test_the_largest_queries_run(api: FlaskClient, fleet: dict[str, str]) -> None:
    """At the bounds (values, comparisons, [*]) the database still takes the query."""
    values = ", ".join(str(number) for number in range(200))
    wide = " or ".join([f"a[*].b[*].c[*] in ({values})"] * 2)
    assert macs(api, wide) == set()
    many = " and ".join(f'not m["0"] == {number}' for number in range(100, 163))
    assert names(fleet, macs(api, many + " and exists(m)")) == {"free"}
    response = api.get("/api/configs", query_string={"where": f"a in ({values}, {values})"})
    body = assert_error(response, 400, "invalid_query")
    assert "more than 200 values" in body["error"] or "at most 200" in body["error"]


def test_select_takes_exactly_one(api: FlaskClient) -> None:
    body = assert_error(bulk(api, {"where": "a == 1", "model": "x"}, {"a": 1}), 400)
    assert "exactly one" in str(body["details"])


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.sampled_from(
            [
                "a",
                ".",
                "[*]",
                "[0]",
                " == ",
                " < ",
                " != ",
                "1",
                '"x*"',
                "-1h",
                "null",
                "(",
                ")",
                " and ",
                " or ",
                "not ",
                "exists(",
                " in (",
                ",",
                "name",
                "last_seen",
                "model",
                "sync_state",
                "true",
                "é",
                "\x00",
                "'",
                "-999999w",
                '"9999-12-31T23:59:59-01:00"',
                "9e15",
            ]
        ),
        max_size=14,
    )
)
def test_no_query_is_a_500(api: FlaskClient, parts: list[str]) -> None:
    response = api.get("/api/configs", query_string={"where": "".join(parts)})
    assert response.status_code in (200, 400), response.get_data(as_text=True)
    if response.status_code == 400:
        assert response.get_json()["code"] in ("invalid_query", "invalid_input", "nul_character")


def test_the_brightness_task_is_one_query_and_one_bulk_change(api: FlaskClient) -> None:
    """Issue 24: brightness over 80 on three models, written two ways (compact and
    pretty), LED strips at 128-255 among them: one query finds them, one bulk change
    sets 60, and the text a text search would have needed never matters."""
    for code in ("lamp", "strip", "panel"):
        create_model(api, code, LOOSE)
    texts = {
        "lamp-hot": ('{"display":{"brightness":90},"mqtt":{"broker":"a"}}', "lamp"),
        "lamp-ok": ('{"display":{"brightness":80}}', "lamp"),
        "strip-128": ('{\n  "display": {\n    "brightness": 128\n  }\n}', "strip"),
        "strip-255": ('{\n  "display": {\n    "brightness": 255\n  }\n}', "strip"),
        "panel-hot": ('{"display": {"brightness": 81.5, "mode": "x"}}', "panel"),
        "panel-text": ('{"display": {"brightness": "99"}}', "panel"),
    }
    made = {}
    for name, (content, model) in texts.items():
        made[name] = random_mac()
        create_config(api, made[name], content, model)
    query = "display.brightness > 80"
    hot = {made[name] for name in ("lamp-hot", "strip-128", "strip-255", "panel-hot")}
    assert macs(api, query) == hot
    applied = apply_bulk(api, {"where": query}, {"display": {"brightness": 60}})
    assert len(applied["changed"]) == 4
    assert macs(api, query) == set()
    assert device_text(api, made["strip-255"]) == '{\n  "display": {\n    "brightness": 60\n  }\n}'
    assert (
        device_text(api, made["lamp-hot"]) == '{"display":{"brightness":60},"mqtt":{"broker":"a"}}'
    )
    assert json.loads(device_text(api, made["panel-text"]))["display"]["brightness"] == "99"


def test_bulk_apply_refuses_when_the_query_selects_others_since(
    api: FlaskClient, fleet: dict[str, str]
) -> None:
    select = {"where": "display.brightness >= 80"}
    previewed = preview(api, select, {"x": 1})
    expect = {str(change["id"]): change["etag"] for change in previewed["changes"]}
    apply_bulk(api, {"ids": [_id(api, fleet["lamp-2"])]}, {"display": {"brightness": 10}})
    response = bulk(api, select, {"x": 1}, dry_run=False, expect=expect)
    body = assert_error(response, 412)
    assert body["details"]["configs"][0]["reason"].startswith("no longer picked")


def test_export_takes_the_query(api: FlaskClient, fleet: dict[str, str]) -> None:
    response = api.get("/api/configs/export", query_string={"where": "model == lamp"})
    assert response.status_code == 200
    with zipfile.ZipFile(io.BytesIO(response.data)) as archive:
        found = set(archive.namelist())
    assert found == {f"{fleet[name].replace(':', '-')}.json" for name in ("lamp-1", "lamp-2")}


def test_a_rollout_takes_the_devices_the_query_selects(
    request: pytest.FixtureRequest, api: FlaskClient
) -> None:
    app: Flask = api.application
    fleet = Fleet(app, 6)
    chosen = {device.mac for device in fleet.devices[:4]}
    query = " or ".join(f"mac == {mac}" for mac in sorted(chosen))
    bad = fleet.client.post(
        f"/api/models/{fleet.code}/rollouts",
        json={"version": "2.0.0", "stages": ["100%"], "where": "mac =="},
    )
    assert assert_error(bad, 400, "invalid_query")["details"] == {"position": 6}
    none = fleet.client.post(
        f"/api/models/{fleet.code}/rollouts",
        json={"version": "2.0.0", "stages": ["100%"], "where": "name == nobody"},
    )
    assert "selects none" in assert_error(none, 400, "nothing_selected")["error"]
    rollout = fleet.start([1, "100%"], where=query)
    members = {d["mac_address"] for stage in rollout["stages"] for d in stage["devices"]}
    assert members == chosen
    assert [len(stage["devices"]) for stage in rollout["stages"]] == [1, 3]
