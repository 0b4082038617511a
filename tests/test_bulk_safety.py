"""Bulk change safety: skip the configs that would be invalid; the list of change sets."""

from __future__ import annotations

import io
import typing as t
import zipfile

from conftest import assert_error
from flask.testing import FlaskClient
from test_bulk_change import bulk
from test_bulk_change import device_text
from test_bulk_change import expect_of
from test_bulk_change import preview
from test_device_models import create_config
from test_device_models import create_model


def fleet(api: FlaskClient) -> tuple[dict[str, t.Any], ...]:
    """Three thermostats; then a stricter schema that `bad` already fails."""
    create_model(api, schema={"type": "object"})
    good = create_config(api, "aa:00:00:00:00:01", {"deviceName": "A", "serial": 1}, "thermostat")
    bad = create_config(api, "aa:00:00:00:00:02", {"deviceName": "B"}, "thermostat")
    also = create_config(api, "aa:00:00:00:00:03", {"deviceName": "C", "serial": 3}, "thermostat")
    strict = {"type": "object", "required": ["serial"]}
    body = {"name": "T", "schema": strict, "confirm": True}
    assert api.put("/api/models/thermostat", json=body).status_code == 200
    return good, bad, also


def test_preview_lists_the_refused_first_with_why(api: FlaskClient) -> None:
    good, bad, also = fleet(api)
    body = preview(api, {"ids": [good["id"], bad["id"], also["id"]]}, {"mode": "eco"})
    assert [row["id"] for row in body["changes"]] == [bad["id"], good["id"], also["id"]]
    assert body["changes"][0]["valid"] is False and body["changes"][0]["errors"]


def test_skip_invalid_applies_to_the_others_and_lists_the_skipped(api: FlaskClient) -> None:
    good, bad, also = fleet(api)
    select = {"ids": [good["id"], bad["id"], also["id"]]}
    patch = {"mode": "eco"}
    expect = expect_of(preview(api, select, patch))
    assert_error(bulk(api, select, patch, dry_run=False, expect=expect), 400, "schema_violation")
    response = bulk(api, select, patch, dry_run=False, expect=expect, skip_invalid=True)
    assert response.status_code == 201, response.get_data(as_text=True)
    applied = response.get_json()
    assert applied["changed"] == [good["id"], also["id"]]
    (skipped,) = applied["skipped"]
    assert (skipped["id"], skipped["mac_address"]) == (bad["id"], "aa:00:00:00:00:02")
    assert skipped["errors"][0]["keyword"] == "required"
    assert device_text(api, "aa:00:00:00:00:02") == '{"deviceName": "B"}'
    assert '"mode": "eco"' in device_text(api, "aa:00:00:00:00:01")
    change_set = api.get(f"/api/change-sets/{applied['change_set']}").get_json()
    assert [item["config_id"] for item in change_set["configs"]] == [good["id"], also["id"]]
    undone = api.post(f"/api/change-sets/{applied['change_set']}/undo", json={}).get_json()
    assert undone["undone"] == [good["id"], also["id"]]


def test_change_sets_are_listed_newest_first_with_counts(api: FlaskClient) -> None:
    assert api.get("/api/change-sets").get_json() == {"change_sets": [], "count": 0}
    a = create_config(api, "aa:00:00:00:00:01", {"n": 1})
    b = create_config(api, "aa:00:00:00:00:02", {"n": 2})
    ids = []
    for patch, picked in (({"m": 1}, [a["id"], b["id"]]), ({"k": 2}, [a["id"]])):
        select = {"ids": picked}
        expect = expect_of(preview(api, select, patch))
        ids.append(bulk(api, select, patch, dry_run=False, expect=expect).get_json()["change_set"])
    api.post(f"/api/change-sets/{ids[1]}/undo", json={})
    listed = api.get("/api/change-sets").get_json()
    assert [row["id"] for row in listed["change_sets"]] == ids[::-1]
    newest, oldest = listed["change_sets"]
    assert (newest["patch"], newest["count"], newest["undone_by"] is not None) == (
        {"k": 2},
        1,
        True,
    )
    assert (oldest["patch"], oldest["count"], oldest["undone_at"]) == ({"m": 1}, 2, None)
    assert oldest["created_by"]
    page = api.get(f"/api/change-sets?limit=1&before={ids[1]}").get_json()
    assert [row["id"] for row in page["change_sets"]] == [ids[0]]
    assert_error(api.get("/api/change-sets?limit=0"), 400)
    assert_error(api.get("/api/change-sets?limit=abc"), 400)


def test_export_of_the_configs_without_a_model(api: FlaskClient) -> None:
    create_model(api, schema={"type": "object"})
    create_config(api, "aa:00:00:00:00:01", {"n": 1})
    create_config(api, "aa:00:00:00:00:02", {"n": 2}, "thermostat")
    response = api.get("/api/configs/export?no_model=true")
    assert response.status_code == 200
    with zipfile.ZipFile(io.BytesIO(response.data)) as archive:
        assert archive.namelist() == ["aa-00-00-00-00-01.json"]
    assert_error(api.get("/api/configs/export?no_model=true&model=thermostat"), 400)
    assert_error(api.get("/api/configs/export?no_model=maybe"), 400)


def test_bulk_change_attaches_configs_to_a_model_with_its_schema_and_undoes_it(
    api: FlaskClient,
) -> None:
    create_model(api, schema={"type": "object", "required": ["deviceName"]})
    a = create_config(api, "aa:00:00:00:00:01", {"deviceName": "A"})
    b = create_config(api, "aa:00:00:00:00:02", {"deviceName": "B"})
    bad = create_config(api, "aa:00:00:00:00:03", {"n": 3})
    select = {"ids": [a["id"], b["id"], bad["id"]]}
    body = {"select": select, "model": "thermostat"}
    previewed = api.post("/api/configs/bulk", json=body).get_json()
    assert previewed["changed"] == 3 and previewed["invalid"] == 1
    first = previewed["changes"][0]
    assert (first["id"], first["valid"], first["model"], first["model_after"]) == (
        bad["id"],
        False,
        None,
        "thermostat",
    )
    expect = expect_of(previewed)
    apply = body | {"dry_run": False, "expect": expect}
    assert_error(api.post("/api/configs/bulk", json=apply), 400, "schema_violation")
    response = api.post("/api/configs/bulk", json=apply | {"skip_invalid": True})
    assert response.status_code == 201, response.get_json()
    applied = response.get_json()
    assert applied["changed"] == [a["id"], b["id"]]
    assert api.get(f"/api/configs/{a['id']}").get_json()["model"] == "thermostat"
    assert api.get(f"/api/configs/{bad['id']}").get_json()["model"] is None
    listed = api.get("/api/change-sets").get_json()["change_sets"][0]
    assert (listed["sets_model"], listed["model"], listed["count"]) == (True, "thermostat", 2)
    again = api.post("/api/configs/bulk", json=body).get_json()
    assert again["changed"] == 1  # a and b are in the model already: unchanged

    undone = api.post(f"/api/change-sets/{applied['change_set']}/undo", json={}).get_json()
    assert undone["undone"] == [a["id"], b["id"]]
    assert api.get(f"/api/configs/{a['id']}").get_json()["model"] is None
    assert_error(api.post("/api/configs/bulk", json={"select": select, "model": "nope"}), 404)


def test_bulk_change_detaches_configs_with_model_null(api: FlaskClient) -> None:
    create_model(api, schema={"type": "object"})
    a = create_config(api, "aa:00:00:00:00:01", {"deviceName": "A"}, "thermostat")
    body = {"select": {"model": "thermostat"}, "patch": {}, "model": None}
    previewed = api.post("/api/configs/bulk", json=body).get_json()
    assert previewed["changed"] == 1 and previewed["changes"][0]["model_after"] is None
    expect = expect_of(previewed)
    response = api.post("/api/configs/bulk", json=body | {"dry_run": False, "expect": expect})
    assert response.status_code == 201
    assert api.get(f"/api/configs/{a['id']}").get_json()["model"] is None
