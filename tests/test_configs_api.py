"""Every row of SPEC.md's config table, plus versions, ETags and If-Match, on SQLite."""

from __future__ import annotations

import json
import typing as t
from datetime import UTC
from datetime import datetime
from datetime import timedelta

import pytest
from conftest import assert_error
from conftest import config_count
from conftest import post_raw
from conftest import race
from conftest import spellings
from flask import Flask
from flask.testing import FlaskClient

MAC = "aa:bb:cc:dd:ee:ff"
CONFIG_KEYS = {
    "id",
    "mac_address",
    "content",
    "device_name",
    "device_entity_id",
    "enable_ota",
    "model",
    "schema_valid",
    "version",
    "created_at",
    "updated_at",
    "updated_by",
    "online",
    "last_seen_at",
    "last_fetched_at",
    "last_fetched_version",
    "last_fetched_from",
    "last_fetched_user_agent",
    "last_fetched_firmware_version",
    "sync_state",
    "last_fetched_with_credential",
    "credential",
}
SUMMARY_KEYS = {"id", "mac_address", "device_name", "device_entity_id", "enable_ota"}


def create(client: FlaskClient, mac: str = MAC, content: t.Any = None) -> dict[str, t.Any]:
    body = {"mac_address": mac, "content": {"deviceName": "x"} if content is None else content}
    response = client.post("/api/configs", json=body)
    assert response.status_code == 201, response.get_data(as_text=True)
    created: dict[str, t.Any] = response.get_json()
    return created


def device_url(mac: str) -> str:
    return f"/api/configs/{mac}.json"


# --- GET /api/configs -------------------------------------------------------------


def test_list_is_empty_at_first(client: FlaskClient) -> None:
    response = client.get("/api/configs")
    assert response.status_code == 200
    body = response.get_json()
    assert body == {"configs": [], "count": 0, "deleted": [], "cursor": body["cursor"]}


def test_list_is_sorted_by_mac_with_count(client: FlaskClient) -> None:
    macs = ["cc:00:00:00:00:01", "0a:00:00:00:00:02", "ff:ff:ff:ff:ff:ff", "00:00:00:00:00:00"]
    for mac in macs:
        create(client, mac.upper().replace(":", "-"), {"deviceName": mac})
    body = client.get("/api/configs").get_json()
    assert body["count"] == 4
    assert [row["mac_address"] for row in body["configs"]] == sorted(macs)
    for row in body["configs"]:
        assert SUMMARY_KEYS <= set(row)
        assert "content" not in row
        assert row["device_name"] == row["mac_address"]


def test_list_summary_fields_match_the_config(client: FlaskClient) -> None:
    content = {"deviceName": "Hall", "deviceEntityId": "light.hall", "enableOTA": False}
    created = create(client, content=content)
    (row,) = client.get("/api/configs").get_json()["configs"]
    assert {key: row[key] for key in SUMMARY_KEYS} == {key: created[key] for key in SUMMARY_KEYS}
    assert row["device_name"] == "Hall"
    assert row["device_entity_id"] == "light.hall"
    assert row["enable_ota"] is False


# --- POST /api/configs ------------------------------------------------------------


def test_create_returns_the_full_config(client: FlaskClient) -> None:
    response = client.post(
        "/api/configs", json={"mac_address": "AA-BB-CC-DD-EE-FF", "content": {"deviceName": "k"}}
    )
    assert response.status_code == 201
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == CONFIG_KEYS
    assert isinstance(body["id"], int)
    assert body["mac_address"] == MAC
    assert body["content"] == {"deviceName": "k"}
    assert body["version"] == 1
    assert client.get(f"/api/configs/{body['id']}").get_json() == body


def test_create_with_object_content_is_stored_byte_for_byte(client: FlaskClient) -> None:
    raw = b'{"mac_address": "AA-BB-CC-DD-EE-FF", "content": {"b": 1,   "a": [1,2]}}'
    assert post_raw(client, raw).status_code == 201
    device = client.get(device_url(MAC))
    assert device.status_code == 200
    assert device.data == b'{"b": 1,   "a": [1,2]}'


@pytest.mark.parametrize(
    "content_source",
    [
        '{"b": 1,   "a": [1,2]}',
        '{\n  "z": 1.10,\n  "y": 12345678901234567890123,\n  "x": "\\u00e9"\n}',
        '{"deviceName":"caf\u00e9 \u2615","nested":{"content":[{"k":null}]}}',
        "{ }",
        '{"a": {"b": {"c": {"d": [true, false, null, -0.0, 1e-7]}}}}',
    ],
)
def test_object_content_keeps_formatting_numbers_and_escapes(
    client: FlaskClient, content_source: str
) -> None:
    body = '{"mac_address": "aa:bb:cc:dd:ee:ff", "content": ' + content_source + "}"
    assert post_raw(client, body.encode()).status_code == 201
    assert client.get(device_url(MAC)).get_data(as_text=True) == content_source


@pytest.mark.parametrize(
    "content_text",
    [
        '{"b": 1,   "a": [1,2]}',
        '{\n\t"x": "y"\n}',
        '{"deviceName": "k\u00fcche"}',
        "{}",
        '  {"padded" : 1}\n',
    ],
)
def test_create_with_string_content_is_stored_verbatim(
    client: FlaskClient, content_text: str
) -> None:
    response = client.post("/api/configs", json={"mac_address": MAC, "content": content_text})
    assert response.status_code == 201
    assert response.get_json()["content"] == json.loads(content_text)
    assert client.get(device_url(MAC)).get_data(as_text=True) == content_text


def test_content_member_is_found_wherever_it_is_in_the_body(client: FlaskClient) -> None:
    raw = b'{ "content" :\n  {"z":  0, "a": "content"} , "mac_address": "aa:bb:cc:dd:ee:ff" }'
    assert post_raw(client, raw).status_code == 201
    assert client.get(device_url(MAC)).data == b'{"z":  0, "a": "content"}'


def test_a_repeated_content_member_stores_the_one_that_was_validated(
    client: FlaskClient,
) -> None:
    # json.loads keeps the last of duplicate keys; the stored text must be that one too.
    raw = b'{"mac_address": "aa:bb:cc:dd:ee:ff", "content": {"a": 1}, "content": {"b":  2}}'
    response = post_raw(client, raw)
    assert response.status_code == 201
    assert response.get_json()["content"] == {"b": 2}
    assert client.get(device_url(MAC)).data == b'{"b":  2}'


@pytest.mark.parametrize(
    "spelling",
    [
        "aa:bb:cc:dd:ee:ff",
        "AA:BB:CC:DD:EE:FF",
        "aa-bb-cc-dd-ee-ff",
        "AA-BB-CC-DD-EE-FF",
        "Aa:bB-Cc:dD-eE:Ff",
        "aa-bb:cc-dd:ee-ff",
        "AA:bb:CC:dd:EE:ff",
    ],
)
def test_mac_spellings_are_normalized(client: FlaskClient, spelling: str) -> None:
    created = create(client, spelling)
    assert created["mac_address"] == MAC
    assert client.get("/api/configs").get_json()["configs"][0]["mac_address"] == MAC
    assert client.get(device_url(MAC)).status_code == 200
    assert client.get(device_url(spelling)).status_code == 200


BAD_MACS = [
    "",
    "aa:bb:cc:dd:ee",
    "aa:bb:cc:dd:ee:ff:00",
    "aabbccddeeff",
    "aa.bb.cc.dd.ee.ff",
    "aa_bb_cc_dd_ee_ff",
    "aa bb cc dd ee ff",
    "aabb:ccdd:eeff",
    "gg:bb:cc:dd:ee:ff",
    "aa:bb:cc:dd:ee:fg",
    "aa:bb:cc:dd:ee:f",
    "aa:bb:cc:dd:ee:fff",
    "a:bb:cc:dd:ee:ff",
    "aa::bb:cc:dd:ee:ff",
    "aa:bb:cc:dd:ee:ff:",
    ":aa:bb:cc:dd:ee:ff",
    " aa:bb:cc:dd:ee:ff",
    "aa:bb:cc:dd:ee:ff ",
    "aa:bb:cc:dd:ee:ff\n",
    "aa: bb:cc:dd:ee:ff",
    "0xaa:bb:cc:dd:ee:ff",
    "\uff41\uff41:bb:cc:dd:ee:ff",  # fullwidth letters
    "\u0661\u0662:bb:cc:dd:ee:ff",  # Arabic-Indic digits
    "aa:bb:cc:dd:ee:f\u00e9",
    "aa\u2010bb\u2010cc\u2010dd\u2010ee\u2010ff",  # Unicode hyphens
    "aa:bb:cc:dd:ee:ff\u0000",
    "aa:bb:cc:dd:ee:ff" * 10,
    "null",
]


@pytest.mark.parametrize("mac", BAD_MACS)
def test_bad_mac_is_400_and_stores_nothing(client: FlaskClient, mac: str) -> None:
    response = client.post("/api/configs", json={"mac_address": mac, "content": {"a": 1}})
    assert_error(response, 400)
    assert config_count(client) == 0


@pytest.mark.parametrize("mac", [None, 5, ["aa:bb:cc:dd:ee:ff"], {"mac": "aa:bb:cc:dd:ee:ff"}])
def test_mac_that_is_not_a_string_is_400(client: FlaskClient, mac: object) -> None:
    response = client.post("/api/configs", json={"mac_address": mac, "content": {"a": 1}})
    assert_error(response, 400)
    assert config_count(client) == 0


@pytest.mark.parametrize("second", ["aa:bb:cc:dd:ee:ff", "AA-BB-CC-DD-EE-FF", "aA:Bb-cC:dD-Ee:fF"])
def test_duplicate_mac_in_any_spelling_is_409(client: FlaskClient, second: str) -> None:
    first = create(client, MAC, {"deviceName": "first"})
    response = client.post("/api/configs", json={"mac_address": second, "content": {"n": 2}})
    assert_error(response, 409, "conflict")
    assert config_count(client) == 1
    assert client.get(device_url(MAC)).data == json.dumps({"deviceName": "first"}).encode()
    assert client.get(f"/api/configs/{first['id']}").get_json()["version"] == 1


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (
            {"deviceName": "Kitchen", "deviceEntityId": "sensor.kitchen", "enableOTA": True},
            ("Kitchen", "sensor.kitchen", True),
        ),
        ({"enableOTA": False}, (None, None, False)),
        ({}, (None, None, None)),
        ({"deviceName": "", "deviceEntityId": ""}, ("", "", None)),
        ({"deviceName": None, "deviceEntityId": None, "enableOTA": None}, (None, None, None)),
        ({"deviceName": 5, "deviceEntityId": ["x"], "enableOTA": "true"}, (None, None, None)),
        ({"deviceName": {"a": 1}, "deviceEntityId": 1.5, "enableOTA": 1}, (None, None, None)),
        ({"enableOTA": 0}, (None, None, None)),
        ({"devicename": "x", "DeviceName": "y", "enableOta": True}, (None, None, None)),
        ({"nested": {"deviceName": "x", "enableOTA": True}}, (None, None, None)),
        ({"deviceName": "a\u0000b"}, (None, None, None)),
        ({"deviceName": "\u00e9\u2615 \U0001f600"}, ("\u00e9\u2615 \U0001f600", None, None)),
    ],
)
def test_derived_fields(
    client: FlaskClient, content: dict[str, t.Any], expected: tuple[t.Any, ...]
) -> None:
    created = create(client, content=content)
    fields = ("device_name", "device_entity_id", "enable_ota")
    assert tuple(created[name] for name in fields) == expected
    fetched = client.get(f"/api/configs/{created['id']}").get_json()
    assert tuple(fetched[name] for name in fields) == expected
    (row,) = client.get("/api/configs").get_json()["configs"]
    assert tuple(row[name] for name in fields) == expected


def test_derived_fields_follow_every_save(client: FlaskClient) -> None:
    created = create(client, content={"deviceName": "a", "enableOTA": True})
    url = f"/api/configs/{created['id']}"
    updated = client.put(url, json={"content": {"deviceEntityId": "switch.b"}}).get_json()
    assert (updated["device_name"], updated["device_entity_id"], updated["enable_ota"]) == (
        None,
        "switch.b",
        None,
    )
    (row,) = client.get("/api/configs").get_json()["configs"]
    assert (row["device_name"], row["device_entity_id"], row["enable_ota"]) == (
        None,
        "switch.b",
        None,
    )


def test_derived_fields_take_the_last_of_duplicate_keys(client: FlaskClient) -> None:
    raw = b'{"mac_address": "aa:bb:cc:dd:ee:ff", "content": {"deviceName": "a", "deviceName": "b"}}'
    assert post_raw(client, raw).get_json()["device_name"] == "b"


# --- timestamps and versions -----------------------------------------------------


def parse_timestamp(value: str) -> datetime:
    assert value.endswith("+00:00"), value
    parsed = datetime.fromisoformat(value)
    assert parsed.utcoffset() == timedelta(0)
    return parsed


def test_timestamps_are_iso8601_utc_with_offset(client: FlaskClient) -> None:
    before = datetime.now(UTC)
    created = create(client)
    created_at = parse_timestamp(created["created_at"])
    updated_at = parse_timestamp(created["updated_at"])
    assert before - timedelta(minutes=5) <= created_at <= datetime.now(UTC) + timedelta(minutes=5)
    assert updated_at >= created_at
    fetched = client.get(f"/api/configs/{created['id']}").get_json()
    assert fetched["created_at"] == created["created_at"]
    assert fetched["updated_at"] == created["updated_at"]


def test_update_moves_updated_at_and_keeps_created_at(client: FlaskClient) -> None:
    created = create(client)
    updated = client.put(f"/api/configs/{created['id']}", json={"content": {"v": 2}}).get_json()
    assert updated["created_at"] == created["created_at"]
    assert parse_timestamp(updated["updated_at"]) >= parse_timestamp(created["updated_at"])
    assert parse_timestamp(updated["updated_at"]) >= parse_timestamp(updated["created_at"])


def test_version_starts_at_1_and_grows_by_one_per_put(client: FlaskClient) -> None:
    created = create(client)
    assert created["version"] == 1
    url = f"/api/configs/{created['id']}"
    for expected in range(2, 7):
        response = client.put(url, json={"content": {"n": expected}})
        assert response.status_code == 200
        assert response.get_json()["version"] == expected
        assert client.get(url).get_json()["version"] == expected
    # The same bytes save nothing (see test_an_identical_save_saves_nothing); others do.
    assert client.put(url, json={"content": {"n": 6}}).get_json()["version"] == 6
    assert client.put(url, json={"content": '{"n":6}'}).get_json()["version"] == 7


# --- GET /api/configs/{id} --------------------------------------------------------


def test_get_by_id_returns_content_as_object_in_key_order(client: FlaskClient) -> None:
    raw = b'{"mac_address": "aa:bb:cc:dd:ee:ff", "content": {"zeta": 1, "alpha": {"y": 2, "b": 3}}}'
    config_id = post_raw(client, raw).get_json()["id"]
    response = client.get(f"/api/configs/{config_id}")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    pairs = json.loads(response.data, object_pairs_hook=list)
    content = dict(pairs)["content"]
    assert content == [("zeta", 1), ("alpha", [("y", 2), ("b", 3)])]
    assert response.headers["ETag"]


@pytest.mark.parametrize("config_id", ["1", "2", "999", "0", "2147483647"])
def test_get_unknown_id_is_404(client: FlaskClient, config_id: str) -> None:
    assert_error(client.get(f"/api/configs/{config_id}"), 404, "not_found")


# --- PUT /api/configs/{id} -------------------------------------------------------


def test_put_replaces_content_verbatim(client: FlaskClient) -> None:
    created = create(client, content={"old": True})
    raw = b'{"content": {"new" :  [3, 2, 1]}}'
    response = client.put(
        f"/api/configs/{created['id']}", data=raw, content_type="application/json"
    )
    assert response.status_code == 200
    body = response.get_json()
    assert body["content"] == {"new": [3, 2, 1]}
    assert body["mac_address"] == MAC
    assert body["id"] == created["id"]
    assert client.get(device_url(MAC)).data == b'{"new" :  [3, 2, 1]}'


def test_put_with_string_content(client: FlaskClient) -> None:
    created = create(client)
    text = '{\n  "deviceName": "renamed"\n}'
    response = client.put(f"/api/configs/{created['id']}", json={"content": text})
    assert response.status_code == 200
    assert response.get_json()["device_name"] == "renamed"
    assert client.get(device_url(MAC)).get_data(as_text=True) == text


@pytest.mark.parametrize("same_mac", ["aa:bb:cc:dd:ee:ff", "AA-BB-CC-DD-EE-FF"])
def test_put_may_repeat_the_configs_own_mac(client: FlaskClient, same_mac: str) -> None:
    created = create(client)
    response = client.put(
        f"/api/configs/{created['id']}", json={"mac_address": same_mac, "content": {"v": 2}}
    )
    assert response.status_code == 200
    assert response.get_json()["mac_address"] == MAC


@pytest.mark.parametrize("other_mac", ["aa:bb:cc:dd:ee:00", "11-22-33-44-55-66", "not a mac"])
def test_put_cannot_change_the_mac(client: FlaskClient, other_mac: str) -> None:
    created = create(client, content={"keep": 1})
    response = client.put(
        f"/api/configs/{created['id']}", json={"mac_address": other_mac, "content": {"v": 2}}
    )
    assert_error(response, 400)
    fetched = client.get(f"/api/configs/{created['id']}").get_json()
    assert fetched == created
    assert client.get(device_url("aa:bb:cc:dd:ee:00")).status_code == 401  # unknown MAC
    assert config_count(client) == 1


def test_put_unknown_id_is_404(client: FlaskClient) -> None:
    assert_error(client.put("/api/configs/7", json={"content": {"a": 1}}), 404, "not_found")
    assert config_count(client) == 0


# --- DELETE /api/configs/{id} ------------------------------------------------------


def test_delete_then_404(client: FlaskClient) -> None:
    created = create(client)
    other = create(client, "11:22:33:44:55:66")
    url = f"/api/configs/{created['id']}"
    response = client.delete(url)
    assert response.status_code == 204
    assert response.data == b""
    assert_error(client.get(url), 404)
    assert_error(client.delete(url), 404)
    assert_error(client.put(url, json={"content": {}}), 404)
    assert_error(client.get(device_url(MAC)), 401, "device_unauthorized")
    body = client.get("/api/configs").get_json()
    assert body["count"] == 1
    assert body["configs"][0]["id"] == other["id"]


@pytest.mark.parametrize(
    ("new_content", "status", "body"),
    [
        ({"new": 1}, 200, b'{"new": 1}'),
        # The very same text again: the device's copy is still exact, so
        # revalidating it is a 304 rather than a needless download.
        ({"old": 1}, 304, b""),
    ],
)
def test_a_recreated_config_is_judged_by_its_bytes(
    client: FlaskClient, new_content: dict[str, int], status: int, body: bytes
) -> None:
    created = create(client, content={"old": 1})
    old_etag = client.get(device_url(MAC)).headers["ETag"]
    assert client.delete(f"/api/configs/{created['id']}").status_code == 204
    again = create(client, content=new_content)
    assert again["version"] == 1
    response = client.get(device_url(MAC), headers={"If-None-Match": old_etag})
    assert response.status_code == status
    assert response.data == body


# --- GET /api/configs/{mac}.json (device endpoint) ----------------------------------


def test_device_endpoint_answers_head_without_a_body(client: FlaskClient) -> None:
    create(client, content={"v": 1})
    response = client.head(device_url(MAC))
    assert response.status_code == 200
    assert response.data == b""
    assert response.headers["ETag"] == client.get(device_url(MAC)).headers["ETag"]
    assert response.headers["Cache-Control"] == "no-cache"


def test_device_endpoint_serves_content_verbatim(client: FlaskClient) -> None:
    post_raw(client, b'{"mac_address": "AA:BB:CC:DD:EE:FF", "content": {"x":[1 , 2]}}')
    response = client.get(device_url("aa-bb-cc-dd-ee-ff"))
    assert response.status_code == 200
    assert response.data == b'{"x":[1 , 2]}'
    assert response.mimetype == "application/json"
    assert response.headers["Cache-Control"] == "no-cache"
    etag = response.headers["ETag"]
    assert etag.startswith('"') and etag.endswith('"') and len(etag) > 2


@pytest.mark.parametrize(
    "mac", ["nope", "aabbccddeeff", "aa:bb:cc:dd:ee", "gg-bb-cc-dd-ee-ff", "aa%20bb", "x" * 200]
)
def test_device_endpoint_malformed_mac_is_400(client: FlaskClient, mac: str) -> None:
    create(client)
    assert_error(client.get(device_url(mac)), 400)


def test_device_endpoint_unknown_mac_is_401_like_a_bad_token(client: FlaskClient) -> None:
    create(client)
    assert_error(client.get(device_url("aa:bb:cc:dd:ee:00")), 401, "device_unauthorized")


def test_device_etag_changes_when_content_changes(client: FlaskClient) -> None:
    created = create(client, content={"v": 1})
    first = client.get(device_url(MAC)).headers["ETag"]
    assert client.get(device_url(MAC)).headers["ETag"] == first
    client.put(f"/api/configs/{created['id']}", json={"content": {"v": 2}})
    second = client.get(device_url(MAC)).headers["ETag"]
    assert second != first
    client.put(f"/api/configs/{created['id']}", json={"content": {"v": 1}})
    third = client.get(device_url(MAC)).headers["ETag"]
    assert third not in (first, second)


def if_none_match_forms(etag: str) -> list[str]:
    return [etag, f"W/{etag}", f'"other", {etag}', f'W/"other", W/{etag}']


@pytest.mark.parametrize("form", range(4))
def test_if_none_match_with_the_current_etag_is_304_with_no_body(
    client: FlaskClient, form: int
) -> None:
    create(client, content={"v": 1})
    etag = client.get(device_url(MAC)).headers["ETag"]
    header = if_none_match_forms(etag)[form]
    response = client.get(device_url(MAC), headers={"If-None-Match": header})
    assert response.status_code == 304, header
    assert response.data == b""
    assert response.headers["ETag"] == etag
    assert response.headers["Cache-Control"] == "no-cache"


def test_if_none_match_star_is_304(client: FlaskClient) -> None:
    create(client)
    response = client.get(device_url(MAC), headers={"If-None-Match": "*"})
    assert response.status_code == 304
    assert response.data == b""


@pytest.mark.parametrize("header", ['"nope"', 'W/"nope"', '"a", "b"', "garbage"])
def test_if_none_match_not_matching_is_200(client: FlaskClient, header: str) -> None:
    create(client, content={"v": 1})
    response = client.get(device_url(MAC), headers={"If-None-Match": header})
    assert response.status_code == 200
    assert response.data == b'{"v": 1}'


def test_if_none_match_with_a_stale_etag_gets_the_new_content(client: FlaskClient) -> None:
    created = create(client, content={"v": 1})
    stale = client.get(device_url(MAC)).headers["ETag"]
    client.put(f"/api/configs/{created['id']}", json={"content": {"v": 2}})
    response = client.get(device_url(MAC), headers={"If-None-Match": stale})
    assert response.status_code == 200
    assert response.data == b'{"v": 2}'
    fresh = response.headers["ETag"]
    assert client.get(device_url(MAC), headers={"If-None-Match": fresh}).status_code == 304


def test_if_none_match_on_unknown_or_malformed_mac(client: FlaskClient) -> None:
    assert_error(client.get(device_url("aa:bb:cc:dd:ee:00"), headers={"If-None-Match": "*"}), 401)
    assert_error(client.get(device_url("zz"), headers={"If-None-Match": "*"}), 400)


# --- ETag and If-Match on GET/PUT by id ------------------------------------------------


def test_get_by_id_etag_follows_the_content(client: FlaskClient) -> None:
    created = create(client, content={"v": 1})
    url = f"/api/configs/{created['id']}"
    first = client.get(url).headers["ETag"]
    put = client.put(url, json={"content": {"v": 2}})
    assert put.headers["ETag"] != first
    assert client.get(url).headers["ETag"] == put.headers["ETag"]


def test_put_with_matching_if_match_succeeds(client: FlaskClient) -> None:
    created = create(client, content={"v": 1})
    url = f"/api/configs/{created['id']}"
    etag = client.get(url).headers["ETag"]
    response = client.put(url, json={"content": {"v": 2}}, headers={"If-Match": etag})
    assert response.status_code == 200, response.get_data(as_text=True)
    saved = response.get_json()
    assert (saved["version"], saved["content"], saved["mac_address"]) == (2, {"v": 2}, MAC)
    assert response.headers["ETag"] != etag
    assert client.get(url).get_json() == saved
    assert client.get(device_url(MAC)).data == b'{"v": 2}'


def test_put_with_if_match_listing_the_current_etag_succeeds(client: FlaskClient) -> None:
    created = create(client, content={"v": 1})
    url = f"/api/configs/{created['id']}"
    etag = client.get(url).headers["ETag"]
    header = f'"something-else", {etag}'
    response = client.put(url, json={"content": {"v": 2}}, headers={"If-Match": header})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert (response.get_json()["version"], response.get_json()["content"]) == (2, {"v": 2})
    assert client.get(device_url(MAC)).data == b'{"v": 2}'


def test_put_with_stale_if_match_is_412_and_changes_nothing(client: FlaskClient) -> None:
    created = create(client, content={"v": 1})
    url = f"/api/configs/{created['id']}"
    stale = client.get(url).headers["ETag"]
    assert client.put(url, json={"content": {"v": 2}}).status_code == 200
    before = client.get(url).get_json()
    response = client.put(url, json={"content": {"v": 3}}, headers={"If-Match": stale})
    assert_error(response, 412, "precondition_failed")
    assert client.get(url).get_json() == before
    assert client.get(device_url(MAC)).data == b'{"v": 2}'


@pytest.mark.parametrize("header", ['"bogus"', 'W/"bogus"', "garbage"])
def test_put_with_unrelated_if_match_is_412(client: FlaskClient, header: str) -> None:
    created = create(client, content={"v": 1})
    url = f"/api/configs/{created['id']}"
    assert_error(client.put(url, json={"content": {"v": 2}}, headers={"If-Match": header}), 412)
    assert client.get(url).get_json() == created


def test_if_match_uses_strong_comparison(client: FlaskClient) -> None:
    # RFC 9110 13.1.1: If-Match never matches a weak tag.
    created = create(client, content={"v": 1})
    url = f"/api/configs/{created['id']}"
    etag = client.get(url).headers["ETag"]
    response = client.put(url, json={"content": {"v": 2}}, headers={"If-Match": f"W/{etag}"})
    assert_error(response, 412)
    assert client.get(url).get_json()["version"] == 1


def test_put_with_if_match_star_succeeds(client: FlaskClient) -> None:
    created = create(client, content={"v": 1})
    url = f"/api/configs/{created['id']}"
    response = client.put(url, json={"content": {"v": 2}}, headers={"If-Match": "*"})
    assert response.status_code == 200
    assert (response.get_json()["version"], response.get_json()["content"]) == (2, {"v": 2})
    assert client.get(device_url(MAC)).data == b'{"v": 2}'


def test_if_match_on_unknown_id_is_404(client: FlaskClient) -> None:
    response = client.put("/api/configs/5", json={"content": {}}, headers={"If-Match": "*"})
    assert_error(response, 404)


def test_two_editors_with_if_match_cannot_lose_an_update(client: FlaskClient) -> None:
    created = create(client, content={"v": 0})
    url = f"/api/configs/{created['id']}"
    etag = client.get(url).headers["ETag"]
    alice = client.put(url, json={"content": {"by": "alice"}}, headers={"If-Match": etag})
    bob = client.put(url, json={"content": {"by": "bob"}}, headers={"If-Match": etag})
    assert alice.status_code == 200, alice.get_data(as_text=True)
    assert_error(bob, 412)
    assert client.get(device_url(MAC)).data == b'{"by": "alice"}'


# --- X-Request-ID -------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/configs"),
        ("GET", "/api/configs/1"),
        ("GET", "/api/configs/aa:bb:cc:dd:ee:ff.json"),
        ("DELETE", "/api/configs"),
        ("GET", "/nowhere"),
        ("GET", "/api/health"),
    ],
)
def test_request_id_is_echoed(client: FlaskClient, method: str, path: str) -> None:
    response = client.open(path, method=method, headers={"X-Request-ID": "trace-42.a:b_c"})
    assert response.headers["X-Request-ID"] == "trace-42.a:b_c"


def test_request_id_is_generated_when_absent(client: FlaskClient) -> None:
    first = client.get("/api/configs").headers.get("X-Request-ID")
    second = client.get("/api/configs").headers.get("X-Request-ID")
    assert first and second
    assert first != second


@pytest.mark.parametrize("given", ["has spaces", "x" * 500, "tab\tid", "<script>", ""])
def test_unsafe_request_id_is_replaced(client: FlaskClient, given: str) -> None:
    response = client.get("/api/configs", headers={"X-Request-ID": given})
    echoed = response.headers.get("X-Request-ID")
    assert echoed and echoed != given
    assert echoed.replace("-", "").isalnum()


# --- concurrency on the embedded SQLite database ----------------------------------------


def test_simultaneous_creates_on_sqlite_give_one_201(app: Flask, client: FlaskClient) -> None:
    names = spellings(MAC, 8, seed=1)

    def creator(name: str) -> t.Callable[[FlaskClient], t.Any]:
        return lambda c: c.post("/api/configs", json={"mac_address": name, "content": {}})

    statuses = sorted(response.status_code for response in race(app, [creator(n) for n in names]))
    assert statuses == [201] + [409] * 7
    assert config_count(client) == 1


def test_concurrent_updates_on_sqlite_get_consecutive_versions(
    app: Flask, client: FlaskClient
) -> None:
    url = f"/api/configs/{create(client, content={'n': 0})['id']}"

    def updater(worker: int) -> t.Callable[[FlaskClient], t.Any]:
        def run(c: FlaskClient) -> list[tuple[int, int | None]]:
            results = []
            for step in range(4):
                response = c.put(url, json={"content": {"worker": worker, "step": step}})
                results.append((response.status_code, response.get_json().get("version")))
            return results

        return run

    outcomes = [pair for batch in race(app, [updater(w) for w in range(6)]) for pair in batch]
    assert {status for status, _ in outcomes} == {200}
    assert sorted(version for _, version in outcomes) == list(range(2, 26))
    assert client.get(url).get_json()["version"] == 25
