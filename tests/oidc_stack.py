"""A real OpenID provider (npm oidc-provider) and our app beside it, both on 127.0.0.1.

Used by the login flow tests (an httpx client plays the browser) and by the web
UI tests (Chromium logs in). Skips with the reason when Node or the package is
missing (`make test` runs `npm ci` in tests/oidc); CI requires it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import RecordingPublisher
from conftest import free_port
from conftest import make_settings
from conftest import unavailable
from conftest import wait_until
from local_issuer import ThreadedServer
from prometheus_client import CollectorRegistry

from iotsupport import create_app

OIDC_DIR = Path(__file__).parent / "oidc"
CLIENT_ID = "iotsupport-web"
CLIENT_SECRET = "a-test-client-secret"
AUDIENCE = "iotsupport-api"
ACCESS_TOKEN_TTL = 3


@dataclass(frozen=True)
class Stack:
    app_url: str
    provider_url: str


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
    except OSError:
        return False
    return True


@contextmanager
def running_stack(workdir: Path, sqlite_template: Path) -> Iterator[Stack]:
    """The provider and our app (OIDC on, served over HTTP on a thread) until the block ends."""
    node = shutil.which("node")
    if node is None:
        unavailable("node is not installed; the OpenID provider tests need Node.js 20+")
    if not (OIDC_DIR / "node_modules" / "oidc-provider").is_dir():
        unavailable("oidc-provider is not installed: run `npm ci` in tests/oidc (make test does)")
    provider_port, app_port = free_port(), free_port()
    provider_url = f"http://127.0.0.1:{provider_port}"
    app_url = f"http://127.0.0.1:{app_port}"
    env = {
        **os.environ,
        "PORT": str(provider_port),
        "CLIENT_ID": CLIENT_ID,
        "CLIENT_SECRET": CLIENT_SECRET,
        "REDIRECT_URI": app_url + "/api/auth/callback",
        "POST_LOGOUT_REDIRECT_URI": app_url + "/",
        "AUDIENCE": AUDIENCE,
        "ACCESS_TOKEN_TTL": str(ACCESS_TOKEN_TTL),
    }
    log_path = workdir / "provider.log"
    with log_path.open("w") as log:
        provider = subprocess.Popen(
            [node, "provider.mjs"], cwd=OIDC_DIR, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        if not wait_until(lambda: _listening(provider_port), timeout=15):
            pytest.fail(f"the OpenID provider did not start:\n{log_path.read_text()}")
        database = workdir / "iotsupport.db"
        shutil.copyfile(sqlite_template, database)
        settings = make_settings(
            f"sqlite:///{database}",
            oidc_enabled=True,
            baseurl=app_url,
            oidc_issuer_url=provider_url,
            oidc_client_id=CLIENT_ID,
            oidc_client_secret=CLIENT_SECRET,
            oidc_audience=AUDIENCE,
            oidc_clock_skew_seconds=0,
            oidc_scopes="openid profile email offline_access api",
        )
        app = create_app(settings, publisher=RecordingPublisher(), registry=CollectorRegistry())
        server = ThreadedServer(app, app_port)
        try:
            yield Stack(app_url, provider_url)
        finally:
            server.close()
            app.extensions["iotsupport"].database.dispose()
    finally:
        provider.terminate()
        provider.wait(10)
