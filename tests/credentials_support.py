"""Helpers for the device credential tests: devices, tokens, requests."""

from __future__ import annotations

import base64

from flask.testing import FlaskClient
from werkzeug.test import TestResponse


def create_device(client: FlaskClient, mac: str, content: object = None) -> int:
    body = {"mac_address": mac, "content": content if content is not None else {"n": mac}}
    response = client.post("/api/configs", json=body)
    assert response.status_code == 201, response.get_data(as_text=True)
    config_id: int = response.get_json()["id"]
    return config_id


def issue(client: FlaskClient, config_id: int) -> str:
    response = client.post(f"/api/configs/{config_id}/credential")
    assert response.status_code == 201, response.get_data(as_text=True)
    token: str = response.get_json()["token"]
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def basic(user: str, password: str) -> dict[str, str]:
    pair = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {pair}"}


def fetch(client: FlaskClient, mac: str, headers: dict[str, str] | None = None) -> TestResponse:
    return client.get(f"/api/configs/{mac}.json", headers=headers or {})


def rotate_own(client: FlaskClient, token: str) -> TestResponse:
    return client.post("/api/device/credential", headers=bearer(token))
