"""Browser fixtures for the web UI tests: a real headless Chromium (Playwright) against a
served app. conftest loads this module as a plugin, so every test module can use them.

One browser per session and a new context per test. `serve` starts any app on a
werkzeug server thread and `new_page` opens a page on it, so a test needing other
settings (OIDC on, say) builds its own app: `new_page(serve(create_app(...)))`.
"""

from __future__ import annotations

import os
import threading
import typing as t
from collections.abc import Callable
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import RecordingPublisher
from conftest import apps_on
from conftest import unavailable
from flask import Flask
from flask.testing import FlaskClient
from playwright.sync_api import Browser
from playwright.sync_api import ConsoleMessage
from playwright.sync_api import Page
from playwright.sync_api import ViewportSize
from playwright.sync_api import sync_playwright
from werkzeug.serving import BaseWSGIServer
from werkzeug.serving import make_server

CHROMIUM = os.environ.get("IOTSUPPORT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
WIDE: ViewportSize = {"width": 1280, "height": 800}
PHONE: ViewportSize = {"width": 390, "height": 844}

Serve = Callable[[Flask], str]


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).is_file():
        unavailable(f"Chromium not found at {CHROMIUM} (apt-get install chromium)")
    playwright = sync_playwright().start()
    try:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    except Exception as exc:  # noqa: BLE001 - a browser that cannot start is "absent"
        playwright.stop()
        unavailable(f"Chromium at {CHROMIUM} did not start: {str(exc)[:200]}")
    yield launched
    launched.close()
    playwright.stop()


@pytest.fixture
def serve() -> Iterator[Serve]:
    """Start apps on local ports (threaded werkzeug); every one is stopped after the test."""
    servers: list[tuple[BaseWSGIServer, threading.Thread]] = []

    def start(app: Flask) -> str:
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        servers.append((server, thread))
        return f"http://127.0.0.1:{server.server_port}"

    yield start
    for server, thread in servers:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def base_url(app: Flask, serve: Serve) -> str:
    return serve(app)


ServeWith = Callable[..., tuple[Flask, str]]


@pytest.fixture
def serve_with(serve: Serve, database_url: str) -> Iterator[ServeWith]:
    """`serve_with(home_assistant_url=...)`: an app with these settings changed, served on
    this test's database: (app, base URL)."""
    with apps_on(database_url, RecordingPublisher()) as build:

        def start(**overrides: t.Any) -> tuple[Flask, str]:
            app = build(**overrides)
            return app, serve(app)

        yield start


NewPage = Callable[..., Page]


@pytest.fixture
def new_page(browser: Browser) -> Iterator[NewPage]:
    """Open a page in a fresh context on any served app; fails the test on a JavaScript error
    or on anything the Content-Security-Policy refused."""
    contexts = []
    errors: list[str] = []

    def refused(message: ConsoleMessage) -> None:
        if message.type == "error" and "Content Security Policy" in message.text:
            errors.append(message.text)

    def open_page(base_url: str, **options: t.Any) -> Page:
        options.setdefault("viewport", WIDE)
        context = browser.new_context(base_url=base_url, **options)
        context.set_default_timeout(5000)
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("console", refused)
        return page

    yield open_page
    for context in contexts:
        context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"


@pytest.fixture
def page(new_page: NewPage, base_url: str) -> Page:
    return new_page(base_url)


def screenshot(page: Page, name: str, *, full_page: bool = True) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=full_page)


def create_config(client: FlaskClient, mac: str, content: str) -> dict[str, t.Any]:
    response = client.post("/api/configs", json={"mac_address": mac, "content": content})
    assert response.status_code == 201, response.get_data(as_text=True)
    body: dict[str, t.Any] = response.get_json()
    return body


def stored_content(client: FlaskClient, mac: str) -> str | None:
    response = client.get(f"/api/configs/{mac}.json")
    return response.get_data(as_text=True) if response.status_code == 200 else None


def toast(page: Page, text: str) -> t.Any:
    return page.locator(".toast", has_text=text)
