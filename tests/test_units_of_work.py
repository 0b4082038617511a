"""A request commits entirely or not at all, on SQLite as on PostgreSQL.

Each change is made to fail late: the service has done its work (rows written
and flushed) when a refusal is raised. Whatever the status of that refusal, the
config, its history and the broker are as before: nothing is committed on a
4xx, and a delete cannot slip onto the read-only (autocommit) path.
"""

from __future__ import annotations

import functools
import typing as t
from collections.abc import Iterator

import pytest
from conftest import RecordingPublisher
from conftest import assert_error
from flask import Flask
from flask.testing import FlaskClient

from iotsupport.configs.service import ConfigService
from iotsupport.errors import AppError
from iotsupport.errors import Conflict
from iotsupport.errors import InvalidInput
from iotsupport.errors import NotFound
from iotsupport.errors import PreconditionFailed

MAC = "aa:bb:cc:dd:ee:01"
OTHER = "aa:bb:cc:dd:ee:02"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend_app(request: pytest.FixtureRequest) -> Iterator[Flask]:
    name = "app" if request.param == "sqlite" else "pg_app"
    yield request.getfixturevalue(name)


def fail_late(monkeypatch: pytest.MonkeyPatch, method: str, refusal: AppError) -> None:
    """Let ConfigService.`method` do all its work, then refuse."""
    real = getattr(ConfigService, method)

    @functools.wraps(real)
    def late(self: ConfigService, *args: t.Any, **kwargs: t.Any) -> t.Any:
        real(self, *args, **kwargs)
        self.session.flush()
        raise refusal

    monkeypatch.setattr(ConfigService, method, late)


def snapshot(client: FlaskClient) -> dict[str, t.Any]:
    configs = client.get("/api/configs").get_json()["configs"]
    return {
        "configs": configs,
        "full": [client.get(f"/api/configs/{c['id']}").get_json() for c in configs],
        "history": [client.get(f"/api/configs/{c['id']}/history").get_json() for c in configs],
        "deleted": client.get("/api/configs/deleted").get_json(),
        "device": client.get(f"/api/configs/{MAC}.json").get_data(),
    }


REFUSALS = [
    InvalidInput("late"),
    NotFound("late"),
    Conflict("late"),
    PreconditionFailed("late"),
]


def changes(config_id: int) -> list[tuple[str, str, str, dict[str, t.Any] | None]]:
    """(service method, HTTP method, path, body) of every change a client can make."""
    return [
        ("create", "POST", "/api/configs", {"mac_address": "aa:bb:cc:dd:ee:03", "content": {}}),
        ("update", "PUT", f"/api/configs/{config_id}", {"content": {"v": "late"}}),
        ("rollback", "POST", f"/api/configs/{config_id}/rollback", {"version": 1}),
        ("delete", "DELETE", f"/api/configs/{config_id}", None),
        ("restore", "POST", f"/api/configs/deleted/{OTHER}/restore", None),
    ]


@pytest.mark.parametrize("refusal", REFUSALS, ids=lambda exc: type(exc).__name__)
@pytest.mark.parametrize("change", ["create", "update", "rollback", "delete", "restore"])
def test_a_change_that_fails_late_leaves_everything_as_it_was(
    backend_app: Flask,
    publisher: RecordingPublisher,
    monkeypatch: pytest.MonkeyPatch,
    change: str,
    refusal: AppError,
) -> None:
    client = backend_app.test_client()
    config_id = client.post("/api/configs", json={"mac_address": MAC, "content": {"v": 1}})
    config_id = config_id.get_json()["id"]
    client.put(f"/api/configs/{config_id}", json={"content": {"v": 2}})
    other = client.post("/api/configs", json={"mac_address": OTHER, "content": {"o": 1}})
    client.delete(f"/api/configs/{other.get_json()['id']}")
    before = snapshot(client)
    publisher.messages.clear()

    fail_late(monkeypatch, change, refusal)
    _, method, path, body = next(item for item in changes(config_id) if item[0] == change)
    response = client.open(path, method=method, json=body)
    assert_error(response, refusal.status_code, refusal.code)

    monkeypatch.undo()
    assert snapshot(client) == before
    assert publisher.messages == []


def test_a_delete_that_fails_late_keeps_the_config_for_its_device(
    backend_app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The delete's statements have run when it fails: a delete outside a transaction
    (the read-only path) would have removed the row for good."""
    client = backend_app.test_client()
    created = client.post("/api/configs", json={"mac_address": MAC, "content": {"keep": 1}})
    config_id = created.get_json()["id"]
    fail_late(monkeypatch, "delete", Conflict("late"))
    assert_error(client.delete(f"/api/configs/{config_id}"), 409)
    monkeypatch.undo()
    assert client.get(f"/api/configs/{MAC}.json").get_data() == b'{"keep": 1}'
    assert client.get(f"/api/configs/{config_id}").get_json()["version"] == 1
    assert client.get("/api/configs/deleted").get_json() == {"configs": [], "count": 0}
