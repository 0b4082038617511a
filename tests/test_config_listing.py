"""GET /api/configs: the content search (q) and the changes since a cursor (since), on
SQLite and PostgreSQL."""

from __future__ import annotations

import typing as t
from datetime import timedelta

import pytest
from conftest import assert_error
from flask import Flask
from flask.testing import FlaskClient

from iotsupport.configs import listing
from iotsupport.configs.listing import ConfigListing
from iotsupport.configs.listing import decode_cursor
from iotsupport.configs.listing import encode_cursor
from iotsupport.configs.listing import matching_line
from iotsupport.db.base import utcnow
from iotsupport.extensions import state

KITCHEN = '{\n  "deviceName": "Kitchen",\n  "wifi": {\n    "ssid": "HomeLab-IoT"\n  }\n}'
HALL = '{"deviceName": "Hall", "wifi": {"ssid": "guest"}, "note": "Küche nebenan"}'
ATTIC = '{"deviceName": "Attic", "mqtt": "10.0.0.5", "pattern": "100%_sure\\\\x"}'


def create(client: FlaskClient, mac: str, content: str, **extra: t.Any) -> dict[str, t.Any]:
    response = client.post("/api/configs", json={"mac_address": mac, "content": content, **extra})
    assert response.status_code == 201, response.get_data(as_text=True)
    body: dict[str, t.Any] = response.get_json()
    return body


def search(client: FlaskClient, query: str, **params: str) -> list[tuple[str, str | None]]:
    response = client.get("/api/configs", query_string={"q": query, **params})
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert body["count"] == len(body["configs"]) and body["deleted"] == []
    return [(row["mac_address"], row["match"]) for row in body["configs"]]


def test_search_finds_text_in_content_ignoring_case_with_the_line(api: FlaskClient) -> None:
    create(api, "aa:00:00:00:00:03", ATTIC)
    create(api, "aa:00:00:00:00:01", KITCHEN)
    create(api, "aa:00:00:00:00:02", HALL)
    assert search(api, "homelab-iot") == [("aa:00:00:00:00:01", '"ssid": "HomeLab-IoT"')]
    assert search(api, "SSID") == [
        ("aa:00:00:00:00:01", '"ssid": "HomeLab-IoT"'),
        ("aa:00:00:00:00:02", HALL),
    ]
    # Keys are content too; LIKE's wildcards and its escape are plain text here.
    assert [mac for mac, _ in search(api, "mqtt")] == ["aa:00:00:00:00:03"]
    assert [mac for mac, _ in search(api, "100%_sure\\")] == ["aa:00:00:00:00:03"]
    assert search(api, "%") == [("aa:00:00:00:00:03", ATTIC)]
    assert search(api, "_") == [("aa:00:00:00:00:03", ATTIC)]
    assert search(api, "nothing like this") == []
    # Beyond ASCII, on both databases.
    assert [mac for mac, _ in search(api, "KÜCHE")] == ["aa:00:00:00:00:02"]
    # Rows keep every summary field.
    row = api.get("/api/configs?q=kitchen").get_json()["configs"][0]
    assert row["device_name"] == "Kitchen" and row["version"] == 1 and "credential" in row
    # Without q, rows have no `match`.
    assert "match" not in api.get("/api/configs").get_json()["configs"][0]


def test_search_combines_with_the_model_filter(api: FlaskClient) -> None:
    schema = {"type": "object"}
    response = api.post("/api/models", json={"code": "lamp", "name": "Lamp", "schema": schema})
    assert response.status_code == 201
    create(api, "aa:00:00:00:00:01", KITCHEN, model="lamp")
    create(api, "aa:00:00:00:00:02", HALL)
    assert [mac for mac, _ in search(api, "ssid", model="lamp")] == ["aa:00:00:00:00:01"]
    assert search(api, "hall", model="lamp") == []
    assert_error(api.get("/api/configs?q=ssid&model=nope"), 404)


@pytest.mark.parametrize("query", ["", "a\nb", "\x00", "x" * 201])
def test_a_bad_search_is_refused(client: FlaskClient, query: str) -> None:
    assert_error(client.get("/api/configs", query_string={"q": query}), 400)


def test_the_match_is_the_first_matching_line_cut_around_the_text() -> None:
    assert matching_line('{\n  "a": "x",\n  "b": "findme"\n}', "FINDME") == '"b": "findme"'
    assert matching_line("{}", "zzz") is None
    long_line = '{"notes": "' + "a" * 400 + "NEEDLE" + "b" * 400 + '"}'
    match = matching_line(long_line, "needle")
    assert match is not None and "NEEDLE" in match
    assert match.startswith("…") and match.endswith("…") and len(match) == 162
    assert matching_line('{"needle": ' + "1" * 400 + "}", "needle") == (
        '{"needle": ' + "1" * 149 + "…"
    )


# --- changes since a cursor --------------------------------------------------------------


def changes(client: FlaskClient, cursor: str) -> dict[str, t.Any]:
    response = client.get("/api/configs", query_string={"since": cursor})
    assert response.status_code == 200, response.get_data(as_text=True)
    body: dict[str, t.Any] = response.get_json()
    return body


def test_changes_since_a_cursor(api: FlaskClient) -> None:
    kept = create(api, "aa:00:00:00:00:01", KITCHEN)
    edited = create(api, "aa:00:00:00:00:02", HALL)
    gone = create(api, "aa:00:00:00:00:03", ATTIC)
    first = api.get("/api/configs").get_json()
    assert first["count"] == 3 and first["deleted"] == []
    # Nothing happens for a while: a cursor taken now sees nothing before it.
    quiet = encode_cursor(utcnow() + timedelta(minutes=1))
    assert changes(api, quiet) == {"configs": [], "count": 0, "deleted": [], "cursor": ANY}

    assert api.put(f"/api/configs/{edited['id']}", json={"content": "{}"}).status_code == 200
    assert api.delete(f"/api/configs/{gone['id']}").status_code == 204
    new = create(api, "aa:00:00:00:00:04", "{}")
    later = encode_cursor(utcnow() - timedelta(minutes=1))
    body = changes(api, later)
    ids = [row["id"] for row in body["configs"]]
    # Within the overlap everything is listed again; a client applies rows by id.
    assert set(ids) >= {edited["id"], new["id"]} and gone["id"] not in ids
    assert body["deleted"] == [gone["id"]]
    assert decode_cursor(body["cursor"]) > decode_cursor(later)
    edited_row = next(row for row in body["configs"] if row["id"] == edited["id"])
    assert edited_row["version"] == 2 and "match" not in edited_row
    assert kept["id"] in ids  # created after that cursor too


def test_changes_reach_back_only_the_overlap(app: Flask, client: FlaskClient) -> None:
    """Past the overlap nothing old comes again; what changed after it does."""
    first = create(client, "aa:00:00:00:00:01", KITCHEN)
    second = create(client, "aa:00:00:00:00:02", HALL)
    session = state(app).database.session(read_only=True)
    listing = ConfigListing(session, overlap_seconds=0)
    now = utcnow()
    later = listing.read(since=encode_cursor(now))
    assert [row for rows in later.slices for row in rows] == [] and later.deleted == []
    before = listing.read(since=encode_cursor(now - timedelta(seconds=30)))
    assert [row["id"] for rows in before.slices for row in rows] == [first["id"], second["id"]]
    session.close()


def test_a_fetch_a_restore_and_a_token_count_as_changes(app: Flask, client: FlaskClient) -> None:
    config = create(client, "aa:00:00:00:00:01", KITCHEN)
    cursor = client.get("/api/configs").get_json()["cursor"]
    session = state(app).database.session(read_only=True)
    listing = ConfigListing(session, overlap_seconds=0)

    def changed() -> tuple[list[int], list[int]]:
        answer = listing.read(since=cursor)
        return [row["id"] for rows in answer.slices for row in rows], answer.deleted

    assert changed() == ([], [])
    client.get("/api/configs/aa:00:00:00:00:01.json")
    state(app).reports.flush()
    assert changed() == ([config["id"]], [])
    cursor = encode_cursor(utcnow())
    client.post(f"/api/configs/{config['id']}/credential")
    assert changed() == ([config["id"]], [])
    cursor = encode_cursor(utcnow())
    client.delete(f"/api/configs/{config['id']}")
    assert changed() == ([], [config["id"]])
    client.post("/api/configs/deleted/aa:00:00:00:00:01/restore")
    assert changed() == ([config["id"]], [])  # back: a row, no longer deleted
    session.close()


@pytest.mark.parametrize(
    "cursor", ["", "x", "2.123", "1.", "1.12a", "1." + "9" * 19, "1." + "9" * 20]
)
def test_a_bad_cursor_is_refused(client: FlaskClient, cursor: str) -> None:
    assert_error(client.get("/api/configs", query_string={"since": cursor}), 400)


def test_a_cursor_far_in_the_past_lists_everything(client: FlaskClient) -> None:
    create(client, "aa:00:00:00:00:01", KITCHEN)
    assert changes(client, "1.0")["count"] == 1


class _Any:
    def __eq__(self, other: object) -> bool:
        return True


ANY: t.Any = _Any()


def test_many_hits_are_kept_from_the_whole_list(
    api: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past MAX_LISTED_IDS hits the list is read whole and the hits kept: the same rows."""
    create(api, "aa:00:00:00:00:01", KITCHEN)
    create(api, "aa:00:00:00:00:02", HALL)
    create(api, "aa:00:00:00:00:03", ATTIC)
    by_ids = search(api, "devicename")
    monkeypatch.setattr(listing, "MAX_LISTED_IDS", 1)
    assert search(api, "devicename") == by_ids and len(by_ids) == 3
    assert search(api, "attic") == [("aa:00:00:00:00:03", ATTIC)]
