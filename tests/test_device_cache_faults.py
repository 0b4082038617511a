"""Device fetches from memory under faults (PostgreSQL): a worker that cannot know it is
current stops serving memory by itself; while the database is out of its reach, memory
answers, marked."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from conftest import RecordingPublisher
from conftest import wait_until
from credentials_support import create_device
from credentials_support import fetch
from flask import Flask
from net_faults import TcpProxy
from net_faults import port_of
from net_faults import through
from prometheus_client import CollectorRegistry
from sqlalchemy import create_engine
from sqlalchemy import text
from test_device_cache import fetched_from

from iotsupport import create_app
from iotsupport.device_cache import STALE_HEADER
from iotsupport.extensions import state
from iotsupport.settings import Settings

MAC = "aa:bb:cc:00:11:33"
LEASE = 1.5


def started(settings: Settings) -> Flask:
    app = create_app(settings, publisher=RecordingPublisher(), registry=CollectorRegistry())
    cache = state(app).devices.cache
    cache.start()
    assert wait_until(lambda: cache.state == "memory", 10), "the listener never loaded"
    return app


def stopped(app: Flask) -> None:
    state(app).devices.cache.stop()
    state(app).database.dispose()


@pytest.fixture
def proxy(pg_settings: Settings) -> Iterator[TcpProxy]:
    tcp = TcpProxy(port_of(pg_settings.database_url))
    yield tcp
    tcp.close()


@pytest.mark.postgres
def test_a_partitioned_listener_stops_serving_memory_before_a_change_is_answered(
    pg_settings: Settings, proxy: TcpProxy
) -> None:
    """The listener's connection goes silent (nothing is closed, so the worker notices
    nothing and PostgreSQL still counts the connection). The other worker's change must
    not be answered while this one could still serve the old config from memory."""
    lease = {"device_cache_settle_timeout_seconds": LEASE}
    reader = started(
        pg_settings.model_copy(
            update={**lease, "database_listen_url": through(pg_settings.database_url, proxy)}
        )
    )
    writer = started(pg_settings.model_copy(update=lease))
    try:
        writing, reading = writer.test_client(), reader.test_client()
        config_id = create_device(writing, MAC, {"v": 1})
        assert wait_until(lambda: fetch(reading, MAC).get_json() == {"v": 1}, 5)
        proxy.freeze()
        for version in (2, 3):
            began = time.monotonic()
            answer = writing.put(f"/api/configs/{config_id}", json={"content": {"v": version}})
            assert answer.status_code == 200
            # Answered at once: the reader's worker, silent, is no longer trusted.
            assert fetch(reading, MAC).get_json() == {"v": version}
            assert time.monotonic() - began < LEASE + 3
        assert state(reader).devices.cache.state == "database"
        assert fetched_from(reading)["database"] >= 2
    finally:
        proxy.restore()
        stopped(reader)
        stopped(writer)


@pytest.mark.postgres
def test_the_settle_waits_out_a_lease_that_was_not_acknowledged(
    pg_settings: Settings,
) -> None:
    """A worker killed (kill -9, a cut listener) leaves its lease: a change waits until
    that lease has run out, and no longer."""
    app = started(pg_settings.model_copy(update={"device_cache_settle_timeout_seconds": 3.0}))
    engine = create_engine(pg_settings.database_url)
    try:
        client = app.test_client()
        config_id = create_device(client, MAC, {"v": 1})
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO device_cache_workers (name, lease_until) "
                    "VALUES ('gone/1/x', now() + interval '1.2 seconds')"
                )
            )
        began = time.monotonic()
        assert (
            client.put(f"/api/configs/{config_id}", json={"content": {"v": 2}}).status_code == 200
        )
        waited = time.monotonic() - began
        assert 0.9 < waited < 2.9
        began = time.monotonic()
        assert (
            client.put(f"/api/configs/{config_id}", json={"content": {"v": 3}}).status_code == 200
        )
        assert time.monotonic() - began < 0.9  # the lease has run out: nobody to wait for
    finally:
        engine.dispose()
        stopped(app)


@pytest.mark.postgres
def test_while_the_database_is_away_fetches_are_answered_from_memory_marked(
    pg_settings: Settings, proxy: TcpProxy
) -> None:
    url = through(pg_settings.database_url, proxy)
    writer = started(pg_settings)
    app = started(
        pg_settings.model_copy(update={"database_url": url, "db_connect_timeout_seconds": 1})
    )
    try:
        writing, client = writer.test_client(), app.test_client()
        config_id = create_device(writing, MAC, {"v": 1})
        assert wait_until(lambda: fetch(client, MAC).get_json() == {"v": 1}, 5)
        assert STALE_HEADER not in fetch(client, MAC).headers
        proxy.cut()
        cache = state(app).devices.cache
        assert wait_until(lambda: cache.state == "stale", 10)
        for _ in range(3):
            answer = fetch(client, MAC)
            assert answer.status_code == 200 and answer.get_json() == {"v": 1}
            assert answer.headers[STALE_HEADER] == "stale"
        assert fetch(client, "aa:bb:cc:00:11:34").status_code in (401, 404)
        assert fetched_from(client)["stale"] >= 3
        # Writes still refuse at once.
        began = time.monotonic()
        refused = client.put(f"/api/configs/{config_id}", json={"content": {"v": 2}})
        assert refused.status_code == 503 and refused.get_json()["code"] == "database_unavailable"
        assert time.monotonic() - began < 5
        health = client.get("/api/health")
        assert health.status_code == 503, health.get_data(as_text=True)
        assert health.get_json()["device_cache"] == "stale"
        proxy.restore()
        assert wait_until(lambda: cache.state == "memory", 15)
        writing.put(f"/api/configs/{config_id}", json={"content": {"v": 3}})
        answer = fetch(client, MAC)
        assert answer.get_json() == {"v": 3} and STALE_HEADER not in answer.headers
    finally:
        proxy.restore()
        stopped(app)
        stopped(writer)
