"""Content that devices and people read: duplicate keys, depth, names, query strings.

Issue 20 item 7: each way content arrives refuses a key given twice (the device reads
the first, the schema the last); JSON is at most MAX_DEPTH deep wherever it is parsed;
a name a person sees reads as it is; a query parameter counts once.
"""

from __future__ import annotations

import io
import json
import typing as t
import zipfile
from urllib.parse import quote

import pytest
import release_support
from conftest import assert_error
from conftest import random_mac
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text
from test_device_models import SCHEMA
from test_device_models import create_config
from test_device_models import create_model
from test_transfer import upload
from test_transfer import zipped

from iotsupport.json_text import MAX_DEPTH
from iotsupport.names import attachment
from iotsupport.names import hidden

DUPLICATE = '{"display": {"brightness": 1000, "brightness": 50}, "deviceName": "Hall"}'


def assert_duplicate(response: t.Any, path: list[t.Any]) -> None:
    refusal = assert_error(response, 400, "duplicate_key")
    assert refusal["details"]["path"][-len(path) :] == path
    assert "brightness" in refusal["error"] or path[-1] in refusal["error"]


def raw_post(client: FlaskClient, url: str, body: str, method: str = "POST") -> t.Any:
    return client.open(url, method=method, data=body, content_type="application/json")


def test_duplicate_keys_are_refused_in_every_way_content_arrives(api: FlaskClient) -> None:
    mac = random_mac()
    # As an object in the body, and as a string holding one; on create and update.
    body = f'{{"mac_address": "{mac}", "content": {DUPLICATE}}}'
    assert_duplicate(raw_post(api, "/api/configs", body), ["content", "display", "brightness"])
    as_string = json.dumps({"mac_address": mac, "content": DUPLICATE})
    assert_duplicate(raw_post(api, "/api/configs", as_string), ["display", "brightness"])
    config = create_config(api, mac, {"deviceName": "Hall"})
    url = f"/api/configs/{config['id']}"
    assert_duplicate(raw_post(api, url, json.dumps({"content": DUPLICATE}), "PUT"), ["brightness"])
    nested = '{"content": {"a": [1, {"b": {"c": 1, "c": 2}}]}}'
    assert_duplicate(raw_post(api, url, nested, "PUT"), ["content", "a", 1, "b", "c"])
    # Bulk patch, as an object and as a string.
    select = {"ids": [config["id"]]}
    patch = '{"select": ' + json.dumps(select) + ', "patch": {"x": 1, "x": 2}}'
    assert_duplicate(raw_post(api, "/api/configs/bulk", patch), ["patch", "x"])
    patch_string = json.dumps({"select": select, "patch": '{"x": 1, "x": 2}'})
    assert_duplicate(raw_post(api, "/api/configs/bulk", patch_string), ["x"])
    # A model's template (as a string) and its schema (as a string).
    model = {"code": "lamp", "name": "Lamp", "schema": SCHEMA, "template": DUPLICATE}
    assert_duplicate(raw_post(api, "/api/models", json.dumps(model)), ["display", "brightness"])
    twice = '{"type": "object", "type": "string"}'
    model = {"code": "lamp", "name": "Lamp", "schema": twice}
    assert_duplicate(raw_post(api, "/api/models", json.dumps(model)), ["type"])
    # Import: a file part and a zip member are skipped, saying where.
    other = random_mac().replace(":", "-")
    results = upload(
        api,
        (f"{other}.json", DUPLICATE.encode()),
        ("x.zip", zipped((f"folder/{other}.json", DUPLICATE.encode()))),
    ).get_json()["results"]
    assert [row["outcome"] for row in results] == ["skipped", "skipped"]
    assert all("/display/brightness" in row["reason"] for row in results)
    rows = api.get("/api/configs").get_json()["configs"]
    assert [row["mac_address"] for row in rows] == [mac]
    assert api.get(f"/api/configs/{mac}.json").get_json() == {"deviceName": "Hall"}


def test_an_older_version_with_duplicate_keys_shows_as_invalid(app: Flask) -> None:
    client = app.test_client()
    create_model(client, "lamp", SCHEMA)
    config = create_config(client, random_mac(), {"deviceName": "A"}, "lamp")
    url = f"/api/configs/{config['id']}"
    assert client.put(url, json={"content": {"deviceName": "B"}}).status_code == 200
    # Saved before the rule held: version 1 in history, and the current content.
    engine = app.extensions["iotsupport"].database.engine
    with engine.begin() as connection:
        connection.execute(
            text("UPDATE config_history SET content = :c WHERE config_id = :i AND version = 1"),
            {"c": DUPLICATE, "i": config["id"]},
        )
        connection.execute(
            text("UPDATE device_configs SET content = :c WHERE id = :i"),
            {"c": DUPLICATE, "i": config["id"]},
        )
    version = client.get(f"{url}/history/1")
    assert version.status_code == 200
    assert client.get(f"{url}/diff?from=1&to=2").status_code == 200
    assert client.get(url).status_code == 200
    refusal = assert_error(client.post(f"{url}/rollback", json={"version": 1}), 400)
    assert refusal["code"] == "duplicate_key"
    assert refusal["details"]["pointer"] == "/display/brightness"
    # The bulk preview lists it as invalid instead of failing.
    preview = client.post(
        "/api/configs/bulk", json={"select": {"model": "lamp"}, "patch": {"x": 1}}
    )
    assert preview.status_code == 200, preview.get_data(as_text=True)
    (row,) = preview.get_json()["changes"]
    assert row["valid"] is False
    assert row["errors"][0]["keyword"] == "duplicate_key"


def zip_of(name: str, data: bytes = b"{}") -> bytes:
    """A zip with one member named `name` exactly, NUL included (zipfile would cut the
    name there: it is written with a stand-in, then patched in the bytes)."""
    if "\x00" not in name:
        return zipped((name, data))
    stand_in = name.replace("\x00", "~")
    archive = zipped((stand_in, data), method=zipfile.ZIP_STORED)
    assert archive.count(stand_in.encode()) == 2  # the local header and the directory
    return archive.replace(stand_in.encode(), name.encode())


def nested(depth: int) -> str:
    """An object `depth` levels deep: {"a": {"a": ... {} ...}}."""
    return '{"a": ' * (depth - 1) + "{}" + "}" * (depth - 1)


def test_json_deeper_than_the_limit_is_a_400_everywhere(api: FlaskClient) -> None:
    config = create_config(api, random_mac(), json.loads(nested(MAX_DEPTH)))
    url = f"/api/configs/{config['id']}"
    too_deep = nested(MAX_DEPTH + 1)
    for response in (
        raw_post(api, url, '{"content": ' + too_deep + "}", "PUT"),
        raw_post(api, url, json.dumps({"content": too_deep}), "PUT"),
        raw_post(api, "/api/models", json.dumps({"code": "m", "name": "M", "schema": too_deep})),
    ):
        refusal = assert_error(response, 400)
        assert refusal["details"]["max_depth"] == MAX_DEPTH


def test_a_version_saved_deeper_before_the_limit_still_shows(app: Flask) -> None:
    client = app.test_client()
    config = create_config(client, random_mac(), {"a": 1})
    url = f"/api/configs/{config['id']}"
    old = nested(900)  # what json.loads still read before the limit
    engine = app.extensions["iotsupport"].database.engine
    with engine.begin() as connection:
        connection.execute(
            text("UPDATE config_history SET content = :c WHERE config_id = :i"),
            {"c": old, "i": config["id"]},
        )
        connection.execute(
            text("UPDATE device_configs SET content = :c WHERE id = :i"),
            {"c": old, "i": config["id"]},
        )
    assert client.put(url, json={"content": {"a": 2}}).status_code == 200
    assert client.get(f"{url}/history/1").status_code == 200
    assert client.get(f"{url}/diff?from=1&to=2").status_code == 200
    refusal = assert_error(client.post(f"{url}/rollback", json={"version": 1}), 400)
    assert refusal["details"]["max_depth"] == MAX_DEPTH


def test_a_deep_bulk_patch_along_the_configs_own_nesting_is_a_400(
    api: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    config = create_config(api, random_mac(), json.loads(nested(MAX_DEPTH)))
    for depth in (MAX_DEPTH + 1, 400, 5000):
        patch = '{"a": ' * depth + "1" + "}" * depth
        body = '{"select": {"ids": [' + str(config["id"]) + ']}, "patch": ' + patch + "}"
        refusal = assert_error(raw_post(api, "/api/configs/bulk", body), 400)
        assert "nested too deeply" in refusal["error"]
        as_string = json.dumps({"select": {"ids": [config["id"]]}, "patch": patch})
        assert_error(raw_post(api, "/api/configs/bulk", as_string), 400)
    assert "Traceback" not in caplog.text
    # Up to the limit it works.
    patch_text = '{"a": ' * (MAX_DEPTH - 1) + '{"b": 1}' + "}" * (MAX_DEPTH - 1)
    body = json.dumps({"select": {"ids": [config["id"]]}, "patch": patch_text})
    assert raw_post(api, "/api/configs/bulk", body).status_code == 200


# --- names ------------------------------------------------------------------------------

ODD_NAMES = {
    "bidi override": "fw\u202eexe.bin",
    "right-to-left isolate": "a\u2067b",
    "zero-width space": "a\u200bb",
    "zero-width joiner": "a\u200db",
    "byte order mark": "\ufeffa",
    "C1 control": "a\x85b",
    "C0 control": "a\x1bb",
    "DEL": "a\x7fb",
    "NUL": "a\x00b",
    "trailing space": "lamp ",
    "leading space": " lamp",
    "no-break space": "a\u00a0b",
    "line separator": "a\u2028b",
}


@pytest.mark.parametrize("name", ODD_NAMES.values(), ids=ODD_NAMES.keys())
def test_a_model_name_must_read_as_it_is(api: FlaskClient, name: str) -> None:
    body = {"code": "lamp", "name": name, "schema": SCHEMA}
    assert_error(api.post("/api/models", json=body), 400)
    assert api.get("/api/models").get_json()["count"] == 0


@pytest.mark.parametrize("name", ODD_NAMES.values(), ids=ODD_NAMES.keys())
@pytest.mark.parametrize("where", ["file", "folder", "zip member", "zip folder"])
def test_import_names_must_read_as_they_are(client: FlaskClient, name: str, where: str) -> None:
    good = "aa-bb-cc-dd-ee-01.json"
    files = {
        "file": [(name, b"{}")],
        "folder": [(f"{name}/{good}", b"{}")],
        "zip member": [("x.zip", zip_of(f"f/{name}"))],
        "zip folder": [("x.zip", zip_of(f"{name}/{good}"))],
    }[where]
    refusal = assert_error(upload(client, ("aa-bb-cc-dd-ee-02.json", b"{}"), *files), 400)
    assert refusal["code"] == "invalid_upload"
    assert not any(hidden(char) for char in refusal["error"] + str(refusal["details"]))
    assert client.get("/api/configs").get_json()["count"] == 0


SEGMENT_TRICKS = ["..", ".", "", "C:", "/", "\\", "\x00"]


def placements(trick: str) -> list[str]:
    """`trick` as a whole segment (or inside one) at every position of a name."""
    mac = "aa-bb-cc-dd-ee-02.json"
    if trick == "/":
        return [f"/{mac}", f"/etc/{mac}", f"a//{mac}"]
    if trick in ("\\", "\x00"):
        return [f"{trick}{mac}", f"a{trick}b/{mac}", f"a/{trick}/{mac}", f"a/b{trick}{mac}"]
    return [
        f"{trick}/{mac}",
        f"a/{trick}/{mac}",
        f"a/{trick}/b/{mac}",
        f"a/b/{trick}/{mac}",
        f"{trick}/{trick}/{mac}",
        f"a/{trick}/{trick}/b/{mac}",
    ]


@pytest.mark.parametrize("trick", SEGMENT_TRICKS, ids=repr)
@pytest.mark.parametrize("as_zip", [False, True], ids=["file part", "zip member"])
def test_path_segments_in_every_position_are_refused(
    client: FlaskClient, trick: str, as_zip: bool
) -> None:
    for name in placements(trick):
        part = ("x.zip", zip_of(name)) if as_zip else (name, b"{}")
        response = upload(client, ("aa-bb-cc-dd-ee-01.json", b"{}"), part)
        assert_error(response, 400, "invalid_upload")
    assert client.get("/api/configs").get_json()["count"] == 0


def test_a_zip_member_may_not_be_named_with_a_drive_anywhere(client: FlaskClient) -> None:
    for name in ("a/C:/aa-bb-cc-dd-ee-02.json", "a/b/D:x/aa-bb-cc-dd-ee-02.json"):
        assert_error(upload(client, ("x.zip", zipped((name, b"{}")))), 400, "invalid_upload")


def test_content_disposition_carries_any_name_safely() -> None:
    header = attachment('v1 "x"\r\nSet-Cookie: a=b\u202e.bin')
    assert "\r" not in header and "\n" not in header and "\u202e" not in header
    assert header.startswith('attachment; filename="v1 _x___Set-Cookie: a=b_.bin"; ')
    assert header.endswith("filename*=UTF-8''" + quote('v1 "x"\r\nSet-Cookie: a=b\u202e.bin', ""))


# --- query strings ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "/api/configs?model=a&model=b",
        "/api/configs?q=x&q=x",
        "/api/configs/export?model=a&model=a",
        "/api/models?x=1&x=2",
        "/api/device/firmware?a=1&a=2",
    ],
)
def test_a_query_parameter_given_twice_is_refused(client: FlaskClient, url: str) -> None:
    refusal = assert_error(client.get(url), 400, "duplicate_query_parameter")
    assert refusal["details"]["parameter"] == url.rsplit("&", 1)[1].split("=")[0]


def test_import_zip_member_names_in_the_report_are_as_given(client: FlaskClient) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("fleet/", b"")
        archive.writestr("fleet/aa-bb-cc-dd-ee-01.json", b"{}")
    results = upload(client, ("x.zip", buffer.getvalue())).get_json()["results"]
    assert [row["file"] for row in results] == ["x.zip/fleet/aa-bb-cc-dd-ee-01.json"]


# In an image, NUL ends the C string: the version is what comes before it, for the device too.
IMAGE_NAMES = {key: value for key, value in ODD_NAMES.items() if key != "NUL"}


@pytest.mark.parametrize("name", IMAGE_NAMES.values(), ids=IMAGE_NAMES.keys())
def test_a_release_version_must_read_as_it_is(client: FlaskClient, name: str) -> None:
    release_support.create_model(client, "thermo")
    image = release_support.release_image(f"1.0{name}" if name.strip() == name else name)
    response = release_support.post_release(client, "thermo", image)
    refusal = assert_error(response, 422)
    assert refusal["code"] in ("release_bad_version", "image_bad_app_description")
    assert not any(hidden(char) for char in refusal["error"] + str(refusal["details"]))
    assert client.get("/api/models/thermo/releases").get_json()["count"] == 0


def test_a_download_names_any_version_safely(client: FlaskClient) -> None:
    release_support.create_model(client, "thermo")
    release_support.add_release(client, "thermo", "1.0-grün")
    response = client.get("/api/models/thermo/releases/1.0-grün/image")
    assert response.status_code == 200
    header = response.headers["Content-Disposition"]
    assert header == attachment("thermo-1.0-grün.bin")
    assert header.startswith('attachment; filename="thermo-1.0-gr_n.bin"; ')
    assert "filename*=UTF-8''" in header and "gr%C3%BCn" in header
