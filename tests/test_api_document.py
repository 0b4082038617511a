"""The API document says the rules the server enforces (issue 20 item 7).

A request that the document's schemas allow should be one the server accepts: each body
below is refused by the server, and must be refused by the document too (checked with
a real JSON Schema validator over /api/openapi.json). And a bulk apply that selects
nothing makes no change set.
"""

from __future__ import annotations

import typing as t

import pytest
from conftest import assert_error
from conftest import random_mac
from flask.testing import FlaskClient
from jsonschema import Draft202012Validator
from test_device_models import SCHEMA
from test_device_models import create_config
from test_device_models import create_model


def request_validator(client: FlaskClient, path: str, method: str) -> Draft202012Validator:
    document = client.get("/api/openapi.json").get_json()
    body = document["paths"][path][method]["requestBody"]["content"]["application/json"]
    root = {"components": document["components"], **body["schema"]}
    return Draft202012Validator(root)


BULK = "/api/configs/bulk"
MODELS = "/api/models"
ROLLOUTS = "/api/models/{code}/rollouts"
PROVISIONING = "/api/configs/{config_id}/provisioning"

REFUSED: list[tuple[str, str, dict[str, t.Any]]] = [
    (BULK, "post", {"select": {"model": "m"}, "patch": "not json"}),
    (BULK, "post", {"select": {"model": "m"}, "patch": "[1, 2]"}),
    (BULK, "post", {"select": {}, "patch": {}}),
    (BULK, "post", {"select": {"model": None}, "patch": {}}),
    (BULK, "post", {"select": {"ids": None}, "patch": {}}),
    (BULK, "post", {"select": {"model": "m", "ids": [1]}, "patch": {}}),
    (BULK, "post", {"select": {"ids": []}, "patch": {}}),
    ("/api/configs", "post", {"mac_address": "aa:bb:cc:dd:ee:ff", "content": "nope"}),
    (MODELS, "post", {"code": "m", "name": "M", "schema": "{}", "template": "1"}),
    (ROLLOUTS, "post", {"version": "1", "stages": [0, "100%"]}),
    (ROLLOUTS, "post", {"version": "1", "stages": ["0%", "100%"]}),
    (ROLLOUTS, "post", {"version": "1", "stages": ["150%"]}),
    (ROLLOUTS, "post", {"version": "1", "stages": [-3, "100%"]}),
    (PROVISIONING, "post", {"format": "nvs", "partition_size": 4096 * 6 + 1}),
]


@pytest.mark.parametrize(("path", "method", "body"), REFUSED, ids=lambda v: str(v)[:60])
def test_what_the_server_refuses_the_document_refuses(
    client: FlaskClient, path: str, method: str, body: dict[str, t.Any]
) -> None:
    create_model(client, "m", SCHEMA)
    config = create_config(client, random_mac(), {"deviceName": "A"}, "m")
    url = path.format(code="m", config_id=config["id"])
    assert 400 <= client.open(url, method=method.upper(), json=body).status_code < 500
    validator = request_validator(client, path, method)
    assert not validator.is_valid(body), f"the document allows {body}"


ACCEPTED: list[tuple[str, str, dict[str, t.Any]]] = [
    (BULK, "post", {"select": {"model": "m"}, "patch": ' {"a": 1} '}),
    (BULK, "post", {"select": {"ids": [1]}, "patch": {"a": 1}}),
    (ROLLOUTS, "post", {"version": "1", "stages": [1, "0.5%", "10%", "100%"]}),
    (PROVISIONING, "post", {"format": "nvs", "partition_size": 4096 * 6}),
]


@pytest.mark.parametrize(("path", "method", "body"), ACCEPTED, ids=lambda v: str(v)[:60])
def test_what_the_server_accepts_the_document_allows(
    client: FlaskClient, path: str, method: str, body: dict[str, t.Any]
) -> None:
    validator = request_validator(client, path, method)
    assert validator.is_valid(body), list(validator.iter_errors(body))


def test_the_nvs_bundle_is_documented_as_octet_stream(client: FlaskClient) -> None:
    document = client.get("/api/openapi.json").get_json()
    answer = document["paths"][PROVISIONING]["post"]["responses"]["200"]["content"]
    assert set(answer) == {"application/json", "application/octet-stream"}
    config = create_config(client, random_mac(), {})
    url = PROVISIONING.format(config_id=config["id"])
    response = client.post(url, json={"format": "nvs"})
    assert response.status_code == 200
    assert response.mimetype in answer


def test_a_bulk_apply_that_selects_nothing_makes_no_change_set(client: FlaskClient) -> None:
    create_model(client, "empty", SCHEMA)
    select = {"model": "empty"}
    preview = client.post(BULK, json={"select": select, "patch": {"a": 1}})
    assert preview.get_json()["count"] == 0
    body = {"select": select, "patch": {"a": 1}, "dry_run": False, "expect": {}}
    refusal = assert_error(client.post(BULK, json=body), 400, "nothing_selected")
    assert "no change set" in refusal["error"]
    assert client.get("/api/change-sets/1").status_code == 404
    # An empty list of ids is refused at once.
    body = {"select": {"ids": []}, "patch": {"a": 1}, "dry_run": False, "expect": {}}
    assert_error(client.post(BULK, json=body), 400)
    assert client.get("/api/change-sets/1").status_code == 404
