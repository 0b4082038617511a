"""For operators: health, metrics, the OpenAPI document and docs page, and the logs."""

from __future__ import annotations

import logging
import re
import shutil
import socket
import time
import typing as t
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import RecordingPublisher
from conftest import assert_error
from conftest import free_port
from conftest import make_settings
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from iotsupport import create_app
from iotsupport.assets.names import FILENAME_PATTERN
from iotsupport.configs.content import MAC_PATTERN
from iotsupport.extensions import state
from iotsupport.settings import Settings

MAC = "aa:bb:cc:dd:ee:ff"


def build(database_url: str, publisher: RecordingPublisher | None = None) -> Flask:
    return create_app(
        make_settings(database_url), publisher=publisher, registry=CollectorRegistry()
    )


@pytest.fixture
def make_app() -> Iterator[t.Callable[..., Flask]]:
    apps: list[Flask] = []

    def factory(database_url: str, publisher: RecordingPublisher | None = None) -> Flask:
        app = build(database_url, publisher)
        apps.append(app)
        return app

    yield factory
    for app in apps:
        state(app).database.dispose()


# --- health ----------------------------------------------------------------------


def test_health_when_all_is_well(client: FlaskClient) -> None:
    response = client.get("/api/health")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.get_json() == {
        "status": "healthy",
        "database": "ok",
        "mqtt": "connected",
        "assets": "disabled",
        "device_cache": "memory",  # the test app's cache is started, as wsgi.py does
    }


def test_health_reports_mqtt_disabled_without_mqtt_url(
    database_url: str, make_app: t.Callable[..., Flask]
) -> None:
    response = make_app(database_url).test_client().get("/api/health")
    assert response.status_code == 200
    assert response.get_json() == {
        "status": "healthy",
        "database": "ok",
        "mqtt": "disabled",
        "assets": "disabled",
        "device_cache": "database",  # not started: create_app alone reads the database
    }


def closed_postgres_url() -> str:
    return f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/iotsupport"


@pytest.fixture
def silent_postgres() -> Iterator[str]:
    """A server that accepts TCP connections and then never says a word (a hung database)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    yield f"postgresql+psycopg://postgres@127.0.0.1:{listener.getsockname()[1]}/iotsupport"
    listener.close()


def assert_unhealthy_quickly(client: FlaskClient) -> None:
    started = time.monotonic()
    response = client.get("/api/health")
    elapsed = time.monotonic() - started
    assert response.status_code == 503
    body = response.get_json()
    assert body["status"] == "unhealthy"
    assert body["database"] == "unreachable"
    assert isinstance(body["reason"], str) and body["reason"]
    assert body["mqtt"] in {"connected", "disconnected", "disabled"}
    assert "Traceback" not in response.get_data(as_text=True)
    assert elapsed < 2.0, f"health took {elapsed:.2f} s"


def test_health_is_503_quickly_when_postgresql_refuses(make_app: t.Callable[..., Flask]) -> None:
    client = make_app(closed_postgres_url()).test_client()
    assert_unhealthy_quickly(client)
    assert_unhealthy_quickly(client)


def test_health_is_503_quickly_when_sqlite_cannot_open(
    tmp_path: Path, make_app: t.Callable[..., Flask]
) -> None:
    client = make_app(f"sqlite:///{tmp_path / 'missing' / 'dir' / 'x.db'}").test_client()
    assert_unhealthy_quickly(client)


def test_health_is_503_within_2_s_when_the_database_hangs(
    silent_postgres: str, make_app: t.Callable[..., Flask]
) -> None:
    # SPEC: "Database down: /api/health answers 503 within 2 seconds" - a Kubernetes
    # probe with a 2 s timeout must get an answer, not a timeout, from a hung database.
    assert_unhealthy_quickly(make_app(silent_postgres).test_client())


def test_api_answers_503_json_when_the_database_is_down(make_app: t.Callable[..., Flask]) -> None:
    client = make_app(closed_postgres_url()).test_client()
    assert_error(client.get("/api/configs"), 503)
    assert_error(client.get(f"/api/configs/{MAC}.json"), 503)
    assert_error(client.post("/api/configs", json={"mac_address": MAC, "content": {}}), 503)
    assert client.get("/api/health/live").status_code == 200


@pytest.mark.postgres
def test_more_requests_than_pooled_connections_get_503_not_500(
    pg_settings: Settings, publisher: RecordingPublisher
) -> None:
    settings = make_settings(
        pg_settings.database_url, db_pool_size=1, db_connect_timeout_seconds=0.2
    )
    app = create_app(settings, publisher=publisher, registry=CollectorRegistry())
    database = state(app).database
    held = [database.engine.connect() for _ in range(5)]  # the pool and its 4 of overflow
    try:
        body = assert_error(app.test_client().get("/api/configs"), 503, "database_busy")
        assert "QueuePool" not in str(body)
    finally:
        for connection in held:
            connection.close()
        database.dispose()


def test_server_recovers_when_the_sqlite_database_appears(
    tmp_path: Path, sqlite_template: Path, make_app: t.Callable[..., Flask]
) -> None:
    path = tmp_path / "later" / "iotsupport.db"
    client = make_app(f"sqlite:///{path}").test_client()
    assert client.get("/api/health").status_code == 503
    path.parent.mkdir()
    shutil.copyfile(sqlite_template, path)
    assert client.get("/api/health").status_code == 200
    assert client.post("/api/configs", json={"mac_address": MAC, "content": {}}).status_code == 201


# --- metrics --------------------------------------------------------------------------


def scrape(client: FlaskClient) -> list[Sample]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    families = text_string_to_metric_families(response.get_data(as_text=True))
    return [sample for family in families for sample in family.samples]


def samples(scraped: list[Sample], name: str, **labels: str) -> list[Sample]:
    return [
        sample
        for sample in scraped
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    ]


def rule_of(app: Flask, path: str, method: str = "GET") -> str:
    rule, _ = app.url_map.bind("localhost").match(path, method=method, return_rule=True)
    return str(rule.rule)


def test_request_metrics_use_route_templates(app: Flask, client: FlaskClient) -> None:
    config_id = client.post("/api/configs", json={"mac_address": MAC, "content": {}}).get_json()[
        "id"
    ]
    for _ in range(3):
        assert client.get(f"/api/configs/{MAC}.json").status_code == 200
    client.get("/api/configs/aa:bb:cc:dd:ee:00.json")
    client.get(f"/api/configs/{config_id}")
    client.get("/nope-1234567")
    scraped = scrape(client)
    requests = samples(scraped, "iotsupport_http_requests_total")
    routes = {sample.labels["route"] for sample in requests}
    assert all(MAC not in route and "nope-1234567" not in route for route in routes)
    assert f"/api/configs/{config_id}" not in routes

    device_rule = rule_of(app, f"/api/configs/{MAC}.json")
    by_status = {
        sample.labels["status"]: sample.value
        for sample in samples(
            scraped, "iotsupport_http_requests_total", method="GET", route=device_rule
        )
    }
    assert by_status == {"200": 3.0, "401": 1.0}  # an unknown MAC: the same 401 as a bad token
    created = samples(
        scraped,
        "iotsupport_http_requests_total",
        method="POST",
        route=rule_of(app, "/api/configs", "POST"),
        status="201",
    )
    assert [sample.value for sample in created] == [1.0]
    durations = samples(
        scraped, "iotsupport_http_request_duration_seconds_count", method="GET", route=device_rule
    )
    assert [sample.value for sample in durations] == [4.0]


def test_config_gauge_counts_the_configs(client: FlaskClient) -> None:
    assert [s.value for s in samples(scrape(client), "iotsupport_configs")] == [0.0]
    ids = [
        client.post(
            "/api/configs", json={"mac_address": f"aa:bb:cc:dd:ee:0{n}", "content": {}}
        ).get_json()["id"]
        for n in range(3)
    ]
    client.delete(f"/api/configs/{ids[0]}")
    assert [s.value for s in samples(scrape(client), "iotsupport_configs")] == [2.0]


def test_mqtt_publish_outcomes_are_counted(
    database_url: str, make_app: t.Callable[..., Flask]
) -> None:
    client = make_app(database_url).test_client()  # no MQTT_URL: publishing is disabled
    config_id = client.post("/api/configs", json={"mac_address": MAC, "content": {}}).get_json()[
        "id"
    ]
    client.delete(f"/api/configs/{config_id}")
    # Without MQTT_URL a change announces nothing (nothing waits in the outbox either).
    assert samples(scrape(client), "iotsupport_mqtt_publish_total") == []
    publisher = state(client.application).publisher
    for mac in (MAC, "aa:bb:cc:dd:ee:02"):
        publisher.publish(f"iotsupport/devices/{mac}/desired", {}, retain=True)
    publisher.publish("iotsupport/updates/configs", {"filename": f"{MAC}.json"})
    published = samples(scrape(client), "iotsupport_mqtt_publish_total")
    by_topic = {sample.labels["topic"]: sample.value for sample in published}
    # Per-device topics share one label, so the series do not grow with the fleet.
    assert by_topic == {"iotsupport/updates/configs": 1.0, "iotsupport/devices/+/desired": 2.0}


def test_metrics_answer_while_the_database_is_down(make_app: t.Callable[..., Flask]) -> None:
    client = make_app(closed_postgres_url()).test_client()
    client.get("/api/configs")
    scraped = scrape(client)
    assert samples(scraped, "iotsupport_http_requests_total", status="503")


# --- OpenAPI and the docs page ---------------------------------------------------------


def openapi(client: FlaskClient) -> dict[str, t.Any]:
    response = client.get("/api/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    document: dict[str, t.Any] = response.get_json()
    return document


def resolve(document: dict[str, t.Any], node: dict[str, t.Any]) -> dict[str, t.Any]:
    while "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith("#/"), ref
        target: t.Any = document
        for part in ref[2:].split("/"):
            target = target[part]
        node = target
    return node


def all_refs(node: t.Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from all_refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from all_refs(item)


def test_openapi_is_version_3_and_every_ref_resolves(client: FlaskClient) -> None:
    document = openapi(client)
    assert str(document["openapi"]).startswith("3.")
    assert document["info"]["title"]
    assert document["info"]["version"]
    refs = list(all_refs(document))
    assert refs
    for ref in refs:
        resolve(document, {"$ref": ref})


EXPECTED_OPERATIONS = {
    ("/api/configs", "get"): {"200"},
    ("/api/configs", "post"): {"201", "400", "409"},
    ("/api/configs/{config_id}", "get"): {"200", "404"},
    ("/api/configs/{config_id}", "put"): {"200", "400", "404", "412"},
    ("/api/configs/{config_id}", "delete"): {"204", "404"},
    ("/api/configs/{mac}.json", "get"): {"200", "304", "400", "404"},
    ("/api/health", "get"): {"200", "503"},
}


@pytest.mark.parametrize(("path", "method"), list(EXPECTED_OPERATIONS))
def test_openapi_documents_each_operation(client: FlaskClient, path: str, method: str) -> None:
    document = openapi(client)
    operation = document["paths"][path][method]
    assert EXPECTED_OPERATIONS[(path, method)] <= set(operation["responses"])
    assert operation.get("summary")
    for status, answer in operation["responses"].items():
        assert answer.get("description"), status
        if int(status) >= 400:
            schema = resolve(document, answer["content"]["application/json"]["schema"])
            if (path, status) == ("/api/health", "503"):  # the health body, with a reason
                assert {"status", "database", "mqtt", "reason"} <= set(schema["properties"])
            else:
                assert {"error", "code", "details"} <= set(schema["properties"])


def test_every_config_route_is_documented(app: Flask, client: FlaskClient) -> None:
    document = openapi(client)
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/configs"):
            continue
        path = re.sub(r"<(?:[^:<>]+:)?(\w+)>", r"{\1}", rule.rule)
        assert path in document["paths"], path
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}:
            assert method.lower() in document["paths"][path], (path, method)


def test_openapi_request_schemas_match_what_is_validated(client: FlaskClient) -> None:
    document = openapi(client)
    create_body = document["paths"]["/api/configs"]["post"]["requestBody"]
    create_schema = resolve(document, create_body["content"]["application/json"]["schema"])
    assert {"mac_address", "content"} <= set(create_schema["properties"])
    assert set(create_schema["required"]) == {"mac_address", "content"}
    update_body = document["paths"]["/api/configs/{config_id}"]["put"]["requestBody"]
    update_schema = resolve(document, update_body["content"]["application/json"]["schema"])
    assert "content" in update_schema["properties"]
    assert update_schema["required"] == ["content"]
    # What the document calls required is what the server refuses to go without.
    for field in create_schema["required"]:
        body = {"mac_address": MAC, "content": {}}
        del body[field]
        assert_error(client.post("/api/configs", json=body), 400)
    assert_error(client.put("/api/configs/1", json={"mac_address": MAC}), 400)

    get_schema = resolve(
        document,
        document["paths"]["/api/configs/{config_id}"]["get"]["responses"]["200"]["content"][
            "application/json"
        ]["schema"],
    )
    created = client.post("/api/configs", json={"mac_address": MAC, "content": {}}).get_json()
    assert set(get_schema["properties"]) == set(created)
    parameters = document["paths"]["/api/configs/{config_id}"]["get"]["parameters"]
    assert parameters[0]["name"] == "config_id"
    assert parameters[0]["in"] == "path"
    assert parameters[0]["schema"]["type"] == "integer"


def test_docs_page_and_its_assets_load(client: FlaskClient) -> None:
    page = client.get("/api/docs")
    assert page.status_code == 200
    assert page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert "<script>" not in html, "no inline script: the CSP forbids it"
    policy = page.headers["Content-Security-Policy"]
    assert "script-src 'self';" in policy and "unsafe-inline" not in policy
    assert "frame-ancestors 'none'" in policy
    assert page.headers["X-Frame-Options"] == "DENY"
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert any(asset.endswith(".js") for asset in assets)
    assert any(asset.endswith(".css") for asset in assets)
    # The bar back to the app links its pages; the favicon is the app's own.
    assert {"/", "/api/openapi.json"} <= set(assets)
    assert any(re.fullmatch(r"/ui/static/\w+/favicon\.svg", asset) for asset in assets)
    for asset in assets:
        assert not asset.startswith(("http://", "https://", "//")), "served locally, no CDN"
        response = client.get(asset)
        status, data, mimetype = response.status_code, response.data, response.mimetype
        response.close()
        assert status == 200, asset
        if asset == "/api/docs/init.js":
            assert b'url: "/api/openapi.json"' in data
            assert mimetype == "text/javascript"
        elif asset.endswith((".js", ".css")):
            assert len(data) > 1000, asset


# --- errors never leak internals -----------------------------------------------------


def test_an_unexpected_error_is_a_plain_500(app: Flask, caplog: pytest.LogCaptureFixture) -> None:
    def explode() -> str:
        raise RuntimeError("internal detail 7f3a: password=hunter2")

    app.add_url_rule("/api/test-explode", view_func=explode)
    response = app.test_client().get("/api/test-explode")
    body = assert_error(response, 500)
    assert "7f3a" not in response.get_data(as_text=True)
    assert "hunter2" not in response.get_data(as_text=True)
    assert body["details"] == {}


# --- logs ----------------------------------------------------------------------------


def access_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "iotsupport.access"]


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("GET", "/api/configs", None, 200),
        ("POST", "/api/configs", {"mac_address": "aa:bb:cc:dd:ee:01", "content": {}}, 201),
        ("POST", "/api/configs", {"mac_address": "bad", "content": {}}, 400),
        ("GET", "/api/configs/1", None, 200),
        ("PUT", "/api/configs/1", {"content": {"v": 2}}, 200),
        ("GET", f"/api/configs/{MAC}.json", None, 200),
        ("GET", "/api/configs/aa:bb:cc:dd:ee:00.json", None, 401),
        ("DELETE", "/api/configs/1", None, 204),
        ("DELETE", "/api/configs", None, 405),
        ("GET", "/api/health", None, 200),
    ],
)
def test_one_access_log_line_per_request(
    app: Flask,
    client: FlaskClient,
    caplog: pytest.LogCaptureFixture,
    method: str,
    path: str,
    body: object,
    status: int,
) -> None:
    client.post("/api/configs", json={"mac_address": MAC, "content": {}})
    caplog.set_level(logging.INFO, logger="iotsupport.access")
    caplog.clear()
    request_id = f"req-{uuid.uuid4().hex[:8]}"
    response = client.open(path, method=method, json=body, headers={"X-Request-ID": request_id})
    assert response.status_code == status
    (line,) = access_lines(caplog)
    assert method in line.split()
    assert re.search(rf"\b{status}\b", line), line
    assert request_id in line
    assert re.search(r"duration\w*[=:]\s*\d", line), line
    try:
        rule = rule_of(app, path, method)
    except Exception:  # noqa: BLE001 - unrouted requests have no template
        return
    assert rule in line


def test_generated_request_id_is_logged(
    client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="iotsupport.access")
    response = client.get("/api/configs")
    (line,) = access_lines(caplog)
    assert response.headers["X-Request-ID"] in line


def test_request_count_matches_log_lines(
    client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="iotsupport.access")
    caplog.clear()
    for index in range(7):
        client.get(f"/api/configs/{index + 1}")
    client.post("/api/configs", data=b"x" * (2 * 1024 * 1024), content_type="application/json")
    assert len(access_lines(caplog)) == 8


def test_no_log_line_carries_config_content(
    database_url: str,
    tmp_path: Path,
    make_app: t.Callable[..., Flask],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="iotsupport")
    marker = f"SECRET-{uuid.uuid4().hex}"
    client = make_app(database_url, RecordingPublisher()).test_client()
    content = {"deviceName": marker, "wifiPassword": marker}
    created = client.post("/api/configs", json={"mac_address": MAC, "content": content})
    assert created.status_code == 201
    url = f"/api/configs/{created.get_json()['id']}"
    client.get(url)
    client.get(f"/api/configs/{MAC}.json")
    client.get("/api/configs")
    client.put(url, json={"content": {"token": marker}})
    client.put(url, json={"content": {"token": marker}}, headers={"If-Match": '"stale"'})
    client.post("/api/configs", json={"mac_address": MAC, "content": {"dup": marker}})
    client.post("/api/configs", json={"mac_address": MAC, "content": f'{{"broken": "{marker}"'})
    client.post("/api/configs", json={"mac_address": marker, "content": {"x": marker}})
    client.post("/api/configs", data=f'{{"content": "{marker}", ', content_type="application/json")
    client.put(url, json={"content": [marker]})

    # A write that the database refuses: the failure is logged, the content is not.
    read_only = make_app(
        f"sqlite:///file:{database_url.removeprefix('sqlite:///')}?mode=ro&uri=true"
    ).test_client()
    refused = read_only.post(
        "/api/configs", json={"mac_address": "aa:bb:cc:dd:ee:01", "content": {"k": marker}}
    )
    assert refused.status_code >= 500
    assert marker not in refused.get_data(as_text=True)

    assert caplog.records, "nothing was logged at all"
    for record in caplog.records:
        text = record.getMessage() + (record.exc_text or "")
        if record.exc_info:
            text += logging.Formatter().formatException(record.exc_info)
        assert marker not in text, f"{record.name}: {text[:300]}"


def test_openapi_states_the_mac_and_filename_rules_as_patterns(client: FlaskClient) -> None:
    document = openapi(client)
    paths = document["paths"]

    def parameter(path: str, method: str, name: str) -> dict[str, t.Any]:
        found: dict[str, t.Any] = next(
            p for p in paths[path][method]["parameters"] if p["name"] == name
        )
        return found

    for path, method in (
        ("/api/configs/{mac}.json", "get"),
        ("/api/configs/deleted/{mac}/restore", "post"),
    ):
        schema = parameter(path, method, "mac")["schema"]
        assert schema["pattern"] == MAC_PATTERN
    create = resolve(
        document,
        paths["/api/configs"]["post"]["requestBody"]["content"]["application/json"]["schema"],
    )
    assert create["properties"]["mac_address"]["pattern"] == MAC_PATTERN
    for method in ("get", "delete"):
        schema = parameter("/api/assets/{filename}", method, "filename")["schema"]
        assert schema["pattern"] == FILENAME_PATTERN
    mac = re.compile(MAC_PATTERN)
    for good in ("aa:bb:cc:dd:ee:ff", "AA-BB-CC-DD-EE-FF", "aA:bB-cC:dD-eE:fF"):
        assert mac.fullmatch(good)
    for bad in ("aa:bb:cc:dd:ee", "aa:bb:cc:dd:ee:fg", "aabbccddeeff", "aa:bb:cc:dd:ee:ff\n"):
        assert not mac.fullmatch(bad)
    for bad in ("aa:bb:cc:dd:ee", "aa:bb:cc:dd:ee:fg", "aabbccddeeff", "aa:bb:cc:dd:ee:ff%0A"):
        assert_error(client.get(f"/api/configs/{bad}.json"), 400)
