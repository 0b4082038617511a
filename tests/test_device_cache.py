"""Device fetches from memory: every committed change is served at once, on SQLite by
the change journal, on PostgreSQL by LISTEN/NOTIFY, and a lost feed falls back to the
database until the worker has caught up."""

from __future__ import annotations

import typing as t
from collections.abc import Iterator

import pytest
from conftest import RecordingPublisher
from conftest import cut_cache_listeners
from conftest import make_settings
from conftest import wait_until
from credentials_support import bearer
from credentials_support import create_device
from credentials_support import fetch
from credentials_support import issue
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine
from sqlalchemy import text

from iotsupport import create_app
from iotsupport.device_cache import postgres
from iotsupport.extensions import state

MAC = "aa:bb:cc:00:11:22"


def fetched_from(client: FlaskClient) -> dict[str, float]:
    body = client.get("/metrics").get_data(as_text=True)
    return {
        sample.labels["source"]: sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
        if sample.name == "iotsupport_device_fetches_total"
    }


def write_outside_the_api(url: str, mac: str, content: str) -> None:
    """What a script or a second replica's commit does: only the database knows."""
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(
            text(
                "UPDATE device_configs SET content = :content, "
                "etag = 'outside' || (version + 1), version = version + 1 "
                "WHERE mac_address = :mac"
            ),
            {"content": content, "mac": mac},
        )
    engine.dispose()


# --- SQLite: the journal -----------------------------------------------------------


def test_fetches_read_memory_and_see_each_api_change_at_once(client: FlaskClient) -> None:
    config_id = create_device(client, MAC, {"v": 1})
    assert fetch(client, MAC).get_json() == {"v": 1}
    assert client.put(f"/api/configs/{config_id}", json={"content": {"v": 2}}).status_code == 200
    assert fetch(client, MAC).get_json() == {"v": 2}
    assert client.post(f"/api/configs/{config_id}/rollback", json={"version": 1}).status_code == 200
    assert fetch(client, MAC).get_json() == {"v": 1}
    assert client.delete(f"/api/configs/{config_id}").status_code == 204
    assert fetch(client, MAC).status_code == 401  # unknown MAC: the one refusal
    sources = fetched_from(client)
    assert sources.get("memory") == 4 and sources.get("database", 0) == 0
    assert client.get("/api/health").get_json()["device_cache"] == "memory"


def test_a_write_outside_the_api_is_served_at_the_next_fetch(
    client: FlaskClient, database_url: str
) -> None:
    create_device(client, MAC, {"v": 1})
    first = fetch(client, MAC)
    write_outside_the_api(database_url, MAC, '{"v": "outside"}')
    second = fetch(client, MAC, {"If-None-Match": first.headers["ETag"]})
    assert second.status_code == 200
    assert second.get_data(as_text=True) == '{"v": "outside"}'
    assert second.headers["ETag"] == '"outside2"'


def test_revoking_a_token_refuses_it_at_the_next_fetch(client: FlaskClient) -> None:
    config_id = create_device(client, MAC)
    token = issue(client, config_id)
    assert fetch(client, MAC, bearer(token)).status_code == 200
    assert fetch(client, MAC).status_code == 401  # it has a credential: the token is needed
    assert client.delete(f"/api/configs/{config_id}/credential").status_code == 204
    assert fetch(client, MAC, bearer(token)).status_code == 401
    assert fetch(client, MAC).status_code == 200  # optional: served by MAC alone again
    renewed = issue(client, config_id)
    assert fetch(client, MAC, bearer(renewed)).status_code == 200


def test_a_worker_behind_a_pruned_journal_reloads_everything(
    client: FlaskClient, database_url: str
) -> None:
    create_device(client, MAC, {"v": 1})
    assert fetch(client, MAC).get_json() == {"v": 1}
    write_outside_the_api(database_url, MAC, '{"v": 2}')
    write_outside_the_api(database_url, MAC, '{"v": 3}')
    engine = create_engine(database_url)
    with engine.begin() as connection:  # as the trigger does beyond 10,000 changes
        newest = connection.execute(text("SELECT max(seq) FROM device_changes")).scalar_one()
        connection.execute(text("DELETE FROM device_changes WHERE seq < :s"), {"s": newest})
    engine.dispose()
    assert fetch(client, MAC).get_json() == {"v": 3}
    body = client.get("/metrics").get_data(as_text=True)
    assert 'iotsupport_device_cache_reloads_total{kind="full"} 2.0' in body


def test_every_thousandth_change_prunes_the_journal(client: FlaskClient, database_url: str) -> None:
    engine = create_engine(database_url)
    with engine.begin() as connection:
        connection.execute(
            text("INSERT INTO device_changes (seq, mac_address) VALUES (20999, 'x')")
        )
        connection.execute(text("INSERT INTO device_changes (mac_address) VALUES ('y')"))
        left = connection.execute(text("SELECT min(seq), count(*) FROM device_changes")).one()
    engine.dispose()
    assert tuple(left) == (20999, 2)  # rows up to 21000 - 10,000 went; the newest stay


def test_an_app_not_started_reads_the_database(database_url: str) -> None:
    app = create_app(make_settings(database_url), registry=CollectorRegistry())
    client = app.test_client()
    create_device(client, MAC, {"v": 1})
    assert fetch(client, MAC).get_json() == {"v": 1}
    assert fetched_from(client) == {"memory": 0.0, "database": 1.0, "stale": 0.0}
    assert client.get("/api/health").get_json()["device_cache"] == "database"
    state(app).database.dispose()


# --- PostgreSQL: LISTEN/NOTIFY ----------------------------------------------------------


@pytest.fixture
def pg_cached_app(pg_settings: t.Any) -> Iterator[Flask]:
    app = create_app(pg_settings, publisher=RecordingPublisher(), registry=CollectorRegistry())
    cache = state(app).devices.cache
    cache.start()
    assert wait_until(lambda: cache.state == "memory", 10), "the listener never loaded"
    yield app
    cache.stop()
    state(app).database.dispose()


@pytest.mark.postgres
def test_postgres_commits_are_applied_before_the_request_answers(
    pg_cached_app: Flask, pg_settings: t.Any
) -> None:
    client = pg_cached_app.test_client()
    config_id = create_device(client, MAC, {"v": 1})
    # The create's announcement waited for every listener: memory has it already.
    assert fetch(client, MAC).get_json() == {"v": 1}
    for version in range(2, 12):
        client.put(f"/api/configs/{config_id}", json={"content": {"v": version}})
        assert fetch(client, MAC).get_json() == {"v": version}
    token = issue(client, config_id)
    assert fetch(client, MAC, bearer(token)).status_code == 200
    assert client.delete(f"/api/configs/{config_id}/credential").status_code == 204
    assert fetch(client, MAC, bearer(token)).status_code == 401
    sources = fetched_from(client)
    assert sources["memory"] >= 13 and sources["database"] == 0
    write_outside_the_api(pg_settings.database_url, MAC, '{"v": "outside"}')
    assert wait_until(lambda: fetch(client, MAC).get_json() == {"v": "outside"}, 5)


@pytest.mark.postgres
def test_postgres_a_cut_listener_reads_the_database_then_catches_up(
    pg_cached_app: Flask, pg_settings: t.Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Away for 2 s before reconnecting, long enough to look at the worker meanwhile.
    monkeypatch.setattr(postgres, "_RETRY_SECONDS", (2.0,))
    client = pg_cached_app.test_client()
    create_device(client, MAC, {"v": 1})
    cache = state(pg_cached_app).devices.cache
    assert cut_cache_listeners(pg_settings.database_url) == 1
    assert wait_until(lambda: cache.state == "database", 5)
    # Changed while nobody listens: the fetch reads the database, so it is never stale.
    write_outside_the_api(pg_settings.database_url, MAC, '{"v": "while away"}')
    assert fetch(client, MAC).get_json() == {"v": "while away"}
    assert fetched_from(client)["database"] >= 1
    health = client.get("/api/health").get_json()
    assert health["status"] == "healthy" and health["device_cache"] == "database"
    body = client.get("/metrics").get_data(as_text=True)
    assert "iotsupport_device_cache_current 0.0" in body
    # The listener reconnects, LISTENs, reloads everything, and memory serves again.
    assert wait_until(lambda: cache.state == "memory", 10)
    assert fetch(client, MAC).get_json() == {"v": "while away"}
    write_outside_the_api(pg_settings.database_url, MAC, '{"v": "after"}')
    assert wait_until(lambda: fetch(client, MAC).get_json() == {"v": "after"}, 5)
    assert "iotsupport_device_cache_current 1.0" in client.get("/metrics").get_data(as_text=True)
