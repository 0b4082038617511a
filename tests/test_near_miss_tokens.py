"""A token one character off is refused like any wrong token: on every device route, as
Bearer and as Basic, with the same answer and after the same work."""

from __future__ import annotations

import hmac
import typing as t
from pathlib import Path

import pytest
from conftest import DeviceAppFactory
from credentials_support import basic
from credentials_support import bearer
from flask import Flask
from flask.testing import FlaskClient
from rollout_support import Fleet
from sqlalchemy import event
from werkzeug.test import TestResponse

from iotsupport.credentials.tokens import new_token
from iotsupport.extensions import state

REFUSAL = {
    "error": "device authentication failed: send this device's token",
    "code": "device_unauthorized",
    "details": {},
}
CHALLENGES = [
    'Basic realm="iotsupport devices", charset="UTF-8"',
    'Bearer realm="iotsupport devices"',
]
ASSET = "firmware.bin"


def near_misses(token: str) -> dict[str, str]:
    """Spellings of `token` one step from it. (Without the `iotd_` prefix it is not a
    device token at all, but another credential: left alone as DEVICE_AUTH says.)"""
    random_part = token[5:]
    letter = max(i for i, c in enumerate(token) if c.isalpha())
    return {
        "one character short": token[:-1],
        "one character extra": token + "A",
        "first random character left out": token[:5] + token[6:],
        "last character changed": token[:-1] + ("A" if token[-1] != "A" else "B"),
        "one letter's case changed": token[:letter]
        + token[letter].swapcase()
        + token[letter + 1 :],
        "case changed": token[:5] + random_part.swapcase(),
        "prefix in capitals": token[:5].upper() + random_part,
        "all in capitals": token.upper(),
        "a space inside": token[:20] + " " + token[20:],
    }


Route = t.Callable[[FlaskClient, dict[str, str]], TestResponse]


def routes(fleet: Fleet) -> dict[str, Route]:
    mac = fleet.devices[0].mac
    return {
        "config fetch": lambda client, headers: client.get(
            f"/api/configs/{mac}.json", headers=headers
        ),
        "asset download": lambda client, headers: client.get(
            f"/api/assets/{ASSET}", headers=headers
        ),
        "release download": lambda client, headers: client.get(
            "/api/models/thermo/releases/2.0.0/image", headers=headers
        ),
        "self-rotation": lambda client, headers: client.post(
            "/api/device/credential", headers=headers
        ),
    }


class Work:
    """The statements and the constant-time comparisons a request makes."""

    def __init__(self, app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
        self.statements: list[str] = []
        self.compared = 0
        event.listen(state(app).database.engine, "before_cursor_execute", self._statement)
        real = hmac.compare_digest

        def counting(a: t.Any, b: t.Any) -> bool:
            self.compared += 1
            return real(a, b)

        monkeypatch.setattr(hmac, "compare_digest", counting)

    def of(
        self, route: Route, client: FlaskClient, headers: dict[str, str]
    ) -> tuple[TestResponse, tuple[t.Any, ...]]:
        self.statements.clear()
        self.compared = 0
        response = route(client, headers)
        return response, (tuple(self.statements), self.compared)

    def _statement(self, _c: t.Any, _cur: t.Any, sql: str, *_: t.Any) -> None:
        self.statements.append(sql)


def refused_alike(response: TestResponse) -> None:
    assert response.status_code == 401, response.get_data(as_text=True)
    assert response.get_json() == REFUSAL
    assert response.headers.getlist("WWW-Authenticate") == CHALLENGES
    assert response.headers.get("Retry-After") is None


@pytest.mark.parametrize("mode", ["optional", "required"])
def test_near_miss_tokens_are_refused_alike_everywhere(
    device_app: DeviceAppFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    (tmp_path / ASSET).write_bytes(b"\xe9" + bytes(100))
    app = device_app(device_auth=mode, assets_dir=tmp_path, device_auth_max_failures=100_000)
    fleet = Fleet(app, 1)
    device = fleet.devices[0]
    client = app.test_client()
    work = Work(app, monkeypatch)
    schemes: dict[str, t.Callable[[str], dict[str, str]]] = {
        "Bearer": bearer,
        "Basic": lambda token: basic(device.mac, token),
        "Basic, MAC in capitals": lambda token: basic(device.mac.upper(), token),
    }
    for route_name, route in routes(fleet).items():
        with route(client, bearer(device.token)) as served:
            assert served.status_code == 200, route_name
        for scheme, header in schemes.items():
            # What a token that shares nothing with the device's costs and answers.
            stranger, expected = work.of(route, client, header(new_token()))
            refused_alike(stranger)
            for miss, token in near_misses(device.token).items():
                where = (route_name, scheme, miss)
                response, spent = work.of(route, client, header(token))
                refused_alike(response)
                assert response.data == stranger.data, where
                assert spent == expected, where  # same statements, same comparisons
    # The device's own token still works: nothing above locked it out.
    assert routes(fleet)["config fetch"](client, bearer(device.token)).status_code == 200
