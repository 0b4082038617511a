"""The API against the real PostgreSQL: end to end, races, locking, and what reads send."""

from __future__ import annotations

import random
import typing as t
from collections.abc import Iterator

import psycopg
import pytest
from conftest import RecordingPublisher
from conftest import TcpProxy
from conftest import assert_error
from conftest import config_count
from conftest import make_settings
from conftest import post_raw
from conftest import race
from conftest import spellings
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry
from psycopg.pq import TransactionStatus
from sqlalchemy import event
from sqlalchemy import make_url

from iotsupport import create_app
from iotsupport.extensions import state
from iotsupport.notifications import MqttState

pytestmark = pytest.mark.postgres

MAC = "aa:bb:cc:dd:ee:ff"
TOPIC = "iotsupport/updates/configs"


def test_api_end_to_end(pg_app: Flask, publisher: RecordingPublisher) -> None:
    client = pg_app.test_client()
    raw = b'{"mac_address": "AA-BB-CC-DD-EE-FF", "content": {"deviceName": "Hall",  "n": [1,2]}}'
    created = post_raw(client, raw)
    assert created.status_code == 201
    body = created.get_json()
    assert body["mac_address"] == MAC
    assert body["version"] == 1
    assert body["device_name"] == "Hall"
    assert body["created_at"].endswith("+00:00")
    assert body["updated_at"].endswith("+00:00")
    url = f"/api/configs/{body['id']}"
    # The list formats its own timestamps: the same instant, in the same form.
    listed = client.get("/api/configs").get_json()["configs"]
    assert [summary["updated_at"] for summary in listed] == [body["updated_at"]]

    device = client.get(f"/api/configs/{MAC}.json")
    assert device.status_code == 200
    assert device.data == b'{"deviceName": "Hall",  "n": [1,2]}'
    assert device.mimetype == "application/json"
    assert device.headers["Cache-Control"] == "no-cache"
    etag = device.headers["ETag"]
    cached = client.get(f"/api/configs/{MAC}.json", headers={"If-None-Match": etag})
    assert cached.status_code == 304
    assert cached.data == b""

    assert client.get(url).get_json() == body
    assert client.get("/api/configs").get_json()["count"] == 1
    assert_error(client.post("/api/configs", json={"mac_address": MAC.upper(), "content": {}}), 409)

    id_etag = client.get(url).headers["ETag"]
    updated = client.put(
        url, json={"content": '{"deviceName":"Kitchen"}'}, headers={"If-Match": id_etag}
    )
    assert updated.status_code == 200
    assert updated.get_json()["version"] == 2
    assert updated.get_json()["device_name"] == "Kitchen"
    assert updated.get_json()["created_at"] == body["created_at"]
    assert_error(client.put(url, json={"content": {}}, headers={"If-Match": id_etag}), 412)
    assert client.get(f"/api/configs/{MAC}.json").data == b'{"deviceName":"Kitchen"}'
    stale = client.get(f"/api/configs/{MAC}.json", headers={"If-None-Match": etag})
    assert stale.status_code == 200

    assert client.delete(url).status_code == 204
    assert_error(client.get(url), 404)
    assert_error(client.get(f"/api/configs/{MAC}.json"), 401, "device_unauthorized")
    assert client.get("/api/configs").get_json()["configs"] == []
    assert publisher.messages == [(TOPIC, {"filename": f"{MAC}.json"})] * 2


def test_list_is_sorted_by_mac(pg_app: Flask) -> None:
    client = pg_app.test_client()
    macs = [f"{b:02x}:00:00:00:00:{b:02x}" for b in random.Random(7).sample(range(256), 30)]
    for mac in macs:
        assert (
            client.post("/api/configs", json={"mac_address": mac, "content": {}}).status_code == 201
        )
    body = client.get("/api/configs").get_json()
    assert body["count"] == 30
    assert [row["mac_address"] for row in body["configs"]] == sorted(macs)


def test_text_that_postgresql_cannot_store_is_refused_cleanly(pg_app: Flask) -> None:
    client = pg_app.test_client()
    # A NUL escape is valid JSON; the content keeps it, the derived text column cannot.
    raw = b'{"mac_address": "aa:bb:cc:dd:ee:ff", "content": {"deviceName": "a\\u0000b"}}'
    response = post_raw(client, raw)
    assert response.status_code == 201
    assert response.get_json()["device_name"] is None
    assert client.get(f"/api/configs/{MAC}.json").data == b'{"deviceName": "a\\u0000b"}'
    # Lone surrogates are not characters: refused, as an escape or inside a string.
    escaped = b'{"mac_address": "aa:bb:cc:dd:ee:02", "content": {"\\ud800": "\\udfff"}}'
    assert_error(post_raw(client, escaped), 400, "invalid_input")
    named = b'{"mac_address": "aa:bb:cc:dd:ee:03", "content": {"deviceName": "\\ud800"}}'
    assert_error(post_raw(client, named), 400, "invalid_input")
    surrogate = b'{"mac_address": "aa:bb:cc:dd:ee:01", "content": "{\\"a\\": \\"\\ud800\\"}"}'
    assert_error(post_raw(client, surrogate), 400)
    assert config_count(client) == 1


def test_ids_overflowing_postgres_integer_are_404(pg_app: Flask) -> None:
    client = pg_app.test_client()
    for config_id in ("2147483648", "9223372036854775808", "9" * 30):
        assert_error(client.get(f"/api/configs/{config_id}"), 404)


# --- races ---------------------------------------------------------------------------


@pytest.mark.parametrize("racers", [2, 10])
def test_simultaneous_creates_of_one_mac_give_one_201(
    pg_app: Flask, publisher: RecordingPublisher, racers: int
) -> None:
    client = pg_app.test_client()
    for round_number in range(5):
        mac = f"02:00:00:00:{racers:02x}:{round_number:02x}"
        names = spellings(mac, racers, seed=round_number)

        def creator(name: str) -> t.Callable[[FlaskClient], t.Any]:
            return lambda c: c.post(
                "/api/configs", json={"mac_address": name, "content": {"by": name}}
            )

        responses = race(pg_app, [creator(name) for name in names])
        statuses = sorted(response.status_code for response in responses)
        assert statuses == [201] + [409] * (racers - 1), [r.get_json() for r in responses]
        for response in responses:
            if response.status_code == 409:
                assert_error(response, 409, "conflict")
        (winner,) = [r for r in responses if r.status_code == 201]
        assert client.get(f"/api/configs/{mac}.json").get_json() == {
            "by": winner.get_json()["content"]["by"]
        }
    assert config_count(client) == 5
    assert len(publisher.messages) == 5


def test_concurrent_updates_get_consecutive_versions(
    pg_app: Flask, publisher: RecordingPublisher
) -> None:
    client = pg_app.test_client()
    created = client.post("/api/configs", json={"mac_address": MAC, "content": {"n": 0}})
    url = f"/api/configs/{created.get_json()['id']}"
    threads, per_thread = 8, 5

    def updater(worker: int) -> t.Callable[[FlaskClient], t.Any]:
        def run(c: FlaskClient) -> list[tuple[int, int]]:
            results = []
            for step in range(per_thread):
                response = c.put(url, json={"content": {"worker": worker, "step": step}})
                results.append((response.status_code, response.get_json().get("version")))
            return results

        return run

    outcomes = [
        item for batch in race(pg_app, [updater(w) for w in range(threads)]) for item in batch
    ]
    assert {status for status, _ in outcomes} == {200}
    versions = sorted(version for _, version in outcomes)
    total = threads * per_thread
    assert versions == list(range(2, total + 2))
    assert client.get(url).get_json()["version"] == total + 1
    assert len(publisher.messages) == total + 1


def test_concurrent_if_match_updates_let_exactly_one_win(pg_app: Flask) -> None:
    client = pg_app.test_client()
    created = client.post("/api/configs", json={"mac_address": MAC, "content": {"n": 0}})
    url = f"/api/configs/{created.get_json()['id']}"
    etag = client.get(url).headers["ETag"]

    def editor(name: str) -> t.Callable[[FlaskClient], t.Any]:
        return lambda c: c.put(url, json={"content": {"by": name}}, headers={"If-Match": etag})

    responses = race(pg_app, [editor(f"e{index}") for index in range(6)])
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [200] + [412] * 5
    assert client.get(url).get_json()["version"] == 2


# --- what a read sends to the database -------------------------------------------------


class StatementLog:
    """Every statement the app's engine sends, with the transaction state around it."""

    def __init__(self) -> None:
        self.statements: list[str] = []
        self.status_after: list[TransactionStatus] = []
        self.connections: list[psycopg.Connection[t.Any]] = []

    def before(self, _conn: t.Any, _cursor: t.Any, statement: str, *_args: t.Any) -> None:
        self.statements.append(statement)

    def after(self, conn: t.Any, _cursor: t.Any, *_args: t.Any) -> None:
        dbapi = conn.connection.dbapi_connection
        self.connections.append(dbapi)
        self.status_after.append(dbapi.info.transaction_status)


@pytest.fixture
def statements(pg_app: Flask) -> Iterator[StatementLog]:
    engine = state(pg_app).database.engine
    recorded = StatementLog()
    event.listen(engine, "before_cursor_execute", recorded.before)
    event.listen(engine, "after_cursor_execute", recorded.after)
    yield recorded
    event.remove(engine, "before_cursor_execute", recorded.before)
    event.remove(engine, "after_cursor_execute", recorded.after)


@pytest.mark.parametrize("if_none_match", [False, True])
def test_a_device_fetch_sends_one_statement_outside_any_transaction(
    pg_app: Flask, statements: StatementLog, if_none_match: bool
) -> None:
    client = pg_app.test_client()
    client.post("/api/configs", json={"mac_address": MAC, "content": {"v": 1}})
    etag = client.get(f"/api/configs/{MAC}.json").headers["ETag"]  # warms the pool up
    statements.statements.clear()
    statements.status_after.clear()
    statements.connections.clear()

    headers = {"If-None-Match": etag} if if_none_match else {}
    response = client.get(f"/api/configs/{MAC}.json", headers=headers)
    assert response.status_code == (304 if if_none_match else 200)
    assert len(statements.statements) == 1, statements.statements
    assert statements.statements[0].lstrip().upper().startswith("SELECT")
    # No BEGIN was sent: the statement ran in autocommit, and nothing is left open.
    assert statements.status_after == [TransactionStatus.IDLE]
    assert statements.connections[0].info.transaction_status == TransactionStatus.IDLE


@pytest.mark.parametrize("path", ["/api/configs", "/api/configs/1", "/api/health"])
def test_other_reads_send_one_statement_outside_any_transaction(
    pg_app: Flask, statements: StatementLog, path: str
) -> None:
    client = pg_app.test_client()
    client.post("/api/configs", json={"mac_address": MAC, "content": {"v": 1}})
    client.get(path)
    statements.statements.clear()
    statements.status_after.clear()
    assert client.get(path).status_code == 200
    assert len(statements.statements) == 1, statements.statements
    assert statements.status_after == [TransactionStatus.IDLE]


class OfflinePublisher(RecordingPublisher):
    @property
    def state(self) -> MqttState:
        return "disconnected"


@pytest.fixture
def proxied_pg_app(
    pg_settings: t.Any,
) -> Iterator[tuple[Flask, TcpProxy]]:
    real = make_url(pg_settings.database_url)
    proxy = TcpProxy(real.host or "127.0.0.1", real.port or 5432)
    proxy.start()
    url = real.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    # Not connected: announcements stay in the outbox (written in the request's one
    # transaction), and no delivery on the request's thread adds traffic to count.
    offline = OfflinePublisher()
    app = create_app(make_settings(url), publisher=offline, registry=CollectorRegistry())
    yield app, proxy
    state(app).database.dispose()
    proxy.stop()


@pytest.mark.parametrize("if_none_match", [False, True])
def test_a_device_fetch_is_one_round_trip_on_the_wire(
    proxied_pg_app: tuple[Flask, TcpProxy], if_none_match: bool
) -> None:
    app, proxy = proxied_pg_app
    client = app.test_client()
    client.post("/api/configs", json={"mac_address": MAC, "content": {"v": 1}})
    etag = client.get(f"/api/configs/{MAC}.json").headers["ETag"]
    for _ in range(3):
        proxy.reset_counts()
        headers = {"If-None-Match": etag} if if_none_match else {}
        assert client.get(f"/api/configs/{MAC}.json", headers=headers).status_code in (200, 304)
        # Every round trip ends in Sync (extended protocol) or is a simple Query:
        # no BEGIN/COMMIT/ROLLBACK, no pre-ping.
        assert proxy.count("S", "Q") == 1, proxy.messages
        assert proxy.count("Q") == 0, proxy.messages


def verbs(proxy: TcpProxy) -> list[str]:
    """The first word of each simple query: BEGIN, COMMIT, ROLLBACK, SELECT...; without
    the settle's read of the device cache leases after a commit (outside its transaction)."""
    return [
        query.split()[0].upper()
        for query in proxy.queries
        if "FROM device_cache_workers" not in query
    ]


def test_a_create_is_one_transaction(proxied_pg_app: tuple[Flask, TcpProxy]) -> None:
    app, proxy = proxied_pg_app
    client = app.test_client()
    client.get("/api/health")
    proxy.reset_counts()
    response = client.post("/api/configs", json={"mac_address": MAC, "content": {}})
    assert response.status_code == 201
    assert verbs(proxy) == ["BEGIN", "COMMIT"]


def test_an_update_is_one_transaction(proxied_pg_app: tuple[Flask, TcpProxy]) -> None:
    app, proxy = proxied_pg_app
    client = app.test_client()
    config_id = client.post("/api/configs", json={"mac_address": MAC, "content": {}}).get_json()[
        "id"
    ]
    proxy.reset_counts()
    assert client.put(f"/api/configs/{config_id}", json={"content": {"v": 2}}).status_code == 200
    assert verbs(proxy) == ["BEGIN", "COMMIT"]


def test_refused_input_never_reaches_the_database(proxied_pg_app: tuple[Flask, TcpProxy]) -> None:
    app, proxy = proxied_pg_app
    client = app.test_client()
    client.get("/api/health")
    proxy.reset_counts()
    assert (
        client.post("/api/configs", json={"mac_address": "nope", "content": {}}).status_code == 400
    )
    assert client.post("/api/configs", json={"mac_address": MAC, "content": []}).status_code == 400
    assert (
        client.post("/api/configs", data=b"{", content_type="application/json").status_code == 400
    )
    assert client.get("/api/configs/nope.json").status_code == 400
    assert proxy.messages == []


def test_a_conflict_commits_nothing(proxied_pg_app: tuple[Flask, TcpProxy]) -> None:
    app, proxy = proxied_pg_app
    client = app.test_client()
    client.post("/api/configs", json={"mac_address": MAC, "content": {}})
    proxy.reset_counts()
    response = client.post("/api/configs", json={"mac_address": MAC.upper(), "content": {}})
    assert response.status_code == 409
    assert "COMMIT" not in verbs(proxy)
    assert "BEGIN" not in verbs(proxy)[1:]


def test_the_server_recovers_when_the_database_returns(
    proxied_pg_app: tuple[Flask, TcpProxy],
) -> None:
    app, proxy = proxied_pg_app
    client = app.test_client()
    assert (
        client.post("/api/configs", json={"mac_address": MAC, "content": {"v": 1}}).status_code
        == 201
    )
    assert client.get("/api/health").status_code == 200

    proxy.stop()  # the database goes away, pooled connections die
    for _ in range(3):
        health = client.get("/api/health")
        assert health.status_code == 503
        assert health.get_json()["database"] == "unreachable"
        assert health.get_json()["reason"]
        assert_error(client.get(f"/api/configs/{MAC}.json"), 503)
        assert_error(
            client.post("/api/configs", json={"mac_address": "aa:bb:cc:dd:ee:01", "content": {}}),
            503,
        )

    proxy.start()  # and comes back on the same address
    assert client.get("/api/health").status_code == 200
    assert client.get(f"/api/configs/{MAC}.json").data == b'{"v": 1}'
    assert (
        client.post(
            "/api/configs", json={"mac_address": "aa:bb:cc:dd:ee:01", "content": {}}
        ).status_code
        == 201
    )
    assert config_count(client) == 2


def test_an_idle_worker_survives_a_database_restart(
    proxied_pg_app: tuple[Flask, TcpProxy],
) -> None:
    """Pooled connections the database closed while the worker was idle are replaced
    before use: the first requests after the restart succeed, no 503."""
    app, proxy = proxied_pg_app
    client = app.test_client()
    client.post("/api/configs", json={"mac_address": MAC, "content": {"v": 1}})
    # Several connections in the pool, as after a busy moment.
    race(app, [lambda c: c.get(f"/api/configs/{MAC}.json")] * 4)
    proxy.stop()  # the database restarts while nobody asks anything
    proxy.start()
    for _ in range(4):
        assert client.get(f"/api/configs/{MAC}.json").data == b'{"v": 1}'
    assert client.get("/api/health").status_code == 200
    created = client.post("/api/configs", json={"mac_address": "aa:bb:cc:dd:ee:01", "content": {}})
    assert created.status_code == 201, created.get_data(as_text=True)
    assert config_count(client) == 2
