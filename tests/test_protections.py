"""What every answer carries, what no log line lets through, and our own request limits."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from conftest import RecordingPublisher
from conftest import assert_error
from conftest import make_settings
from flask import Flask
from flask.testing import FlaskClient
from joserfc.jwk import RSAKey
from local_issuer import LocalIssuer
from prometheus_client import CollectorRegistry

from iotsupport import create_app
from iotsupport.api.protections import MAX_HEADER_BYTES
from iotsupport.api.protections import MAX_URL_BYTES
from iotsupport.logs import SafeFormatter
from iotsupport.logs import configure_logging
from iotsupport.logs import escape

MAC = "aa:bb:cc:dd:ee:01"


# --- security headers and caching ---------------------------------------------------------


@pytest.fixture
def config_id(client: FlaskClient) -> int:
    created = client.post("/api/configs", json={"mac_address": MAC, "content": {"secret": 1}})
    client.put(f"/api/configs/{created.get_json()['id']}", json={"content": {"secret": 2}})
    number: int = created.get_json()["id"]
    return number


def test_every_kind_of_answer_carries_the_security_headers(
    client: FlaskClient, config_id: int
) -> None:
    answers = [
        client.get("/api/configs"),
        client.get(f"/api/configs/{MAC}.json"),
        client.get("/api/health/live"),
        client.get("/api/nope"),
        client.post("/api/configs", data=b"{", content_type="application/json"),
        client.get("/"),
        client.get("/api/docs"),
        client.get("/api/openapi.json"),
        client.get("/metrics"),
    ]
    for response in answers:
        where = response.request.path
        assert response.headers["X-Content-Type-Options"] == "nosniff", where
        assert response.headers["Referrer-Policy"] == "same-origin", where
        assert response.headers["X-Frame-Options"] == "DENY", where
        policy = response.headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in policy, where
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy, where
    api = answers[0].headers["Content-Security-Policy"]
    assert api.startswith("default-src 'none'")
    page = answers[5].headers["Content-Security-Policy"]
    assert "script-src 'self'" in page  # the UI keeps its own policy


def test_admin_answers_are_never_stored_by_a_cache(client: FlaskClient, config_id: int) -> None:
    admin = [
        client.get("/api/configs"),
        client.get(f"/api/configs/{config_id}"),
        client.put(f"/api/configs/{config_id}", json={"content": {"secret": 3}}),
        client.get(f"/api/configs/{config_id}/history"),
        client.get(f"/api/configs/{config_id}/history/1"),
        client.get(f"/api/configs/{config_id}/diff?from=1"),
        client.post(f"/api/configs/{config_id}/rollback", json={"version": 1}),
        client.post("/api/configs", json={"mac_address": "aa:bb:cc:dd:ee:02", "content": {}}),
        client.get("/api/configs/deleted"),
        client.get("/api/configs/99"),
    ]
    for response in admin:
        assert response.headers["Cache-Control"] == "no-store", response.request.path
    # Devices revalidate their config; the proxy's images are never stored either.
    assert client.get(f"/api/configs/{MAC}.json").headers["Cache-Control"] == "no-cache"


# --- our request limits -----------------------------------------------------------------


def test_a_long_url_is_414_json(client: FlaskClient) -> None:
    response = client.get("/api/health/live?q=" + "a" * MAX_URL_BYTES)
    body = assert_error(response, 414, "uri_too_long")
    assert body["details"] == {"max_bytes": MAX_URL_BYTES}
    assert client.get("/api/health/live?q=" + "a" * (MAX_URL_BYTES - 100)).status_code == 200


def test_large_headers_are_431_json(client: FlaskClient) -> None:
    big = {f"X-Part-{number}": "v" * 1000 for number in range(MAX_HEADER_BYTES // 1000 + 1)}
    response = client.post("/api/configs", json={"mac_address": MAC, "content": {}}, headers=big)
    assert_error(response, 431, "request_header_fields_too_large")
    assert client.get("/api/configs").get_json()["count"] == 0


# --- log lines ---------------------------------------------------------------------------


def test_the_formatter_escapes_every_line_breaking_character() -> None:
    formatter = SafeFormatter("%(levelname)s %(message)s")
    record = logging.LogRecord("iotsupport", logging.INFO, __file__, 1, "kid %s", None, None)
    record.args = ("a\nb\rc\x1b[31md\u2028e\u2029f\u202eg\x00h\x85i",)
    line = formatter.format(record)
    assert line == "INFO kid a\\x0ab\\x0dc\\x1b[31md\\u2028e\\u2029f\\u202eg\\x00h\\x85i"
    assert escape("plain, ünïcode and 😀") == "plain, ünïcode and 😀"


def test_a_traceback_keeps_its_lines() -> None:
    formatter = SafeFormatter("%(message)s")
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        record = logging.LogRecord(
            "iotsupport", logging.ERROR, __file__, 1, "failed\nforged", None, sys.exc_info()
        )
    text = formatter.format(record)
    assert text.startswith("failed\\x0aforged\nTraceback (most recent call last):")


@pytest.fixture
def configured_logging() -> Iterator[None]:
    """configure_logging, undone afterwards (other tests read logs through caplog)."""
    saved = {
        name: (logger.handlers[:], logger.propagate, logger.level)
        for name in ("iotsupport", "sqlalchemy.pool")
        for logger in [logging.getLogger(name)]
    }
    yield
    for name, (handlers, propagate, level) in saved.items():
        logger = logging.getLogger(name)
        logger.handlers[:] = handlers
        logger.propagate = propagate
        logger.setLevel(level)


@pytest.fixture
def oidc_app(database_url: str, issuer: LocalIssuer) -> Iterator[Flask]:
    settings = make_settings(database_url, **issuer.login_settings())
    app = create_app(settings, publisher=RecordingPublisher(), registry=CollectorRegistry())
    yield app
    app.extensions["iotsupport"].database.dispose()


FORGED = "2026-01-01 00:00:00,000 INFO iotsupport.auth pid=1 login: subject=admin"


@pytest.mark.usefixtures("configured_logging")
def test_a_kid_with_a_line_break_cannot_forge_a_log_line(
    oidc_app: Flask, issuer: LocalIssuer, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("DEBUG")  # the production handler, writing to the captured stderr
    forger = RSAKey.generate_key(2048, parameters={"kid": "k\n" + FORGED})
    client = oidc_app.test_client()
    response = client.get(
        "/api/configs", headers={"Authorization": f"Bearer {issuer.token(key=forger)}"}
    )
    assert_error(response, 401, "invalid_token")
    assert client.get("/api/nope%0A" + FORGED.replace(" ", "%20")).status_code == 404
    lines = capsys.readouterr().err.splitlines()
    assert lines, "nothing was logged"
    assert not any(line.startswith(FORGED[:23]) for line in lines), lines
    assert any("k\\x0a2026-01-01" in line for line in lines), lines
    for line in lines:
        assert line[:4].isdigit(), line  # every line is one of ours, with its time stamp
