"""A page on another origin, opened in real Chromium while login is off (`make run`),
tries to change the fleet: nothing changes. (Our own pages still can: the other UI
tests create, save, import and upload through the browser.)

The attacker's page is served by a second local HTTP server on another port: under
`localhost` it is another site, under `127.0.0.1` the same site on another port."""

from __future__ import annotations

import threading
import typing as t
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer

import pytest
from credentials_support import bearer
from credentials_support import create_device
from credentials_support import fetch
from credentials_support import issue
from flask import Flask
from flask.testing import FlaskClient
from ui_support import NewPage
from ui_support import Serve

VICTIM, NEW = "aa:bb:cc:dd:ee:02", "aa:bb:cc:dd:ee:07"

# Three requests a page may send anywhere without asking first (no CORS preflight).
ATTACK = """<!doctype html><html><body><script>
const app = "%(app)s";
async function attack() {
  const sent = [];
  const send = async (path, init) => {
    try { await fetch(app + path, { method: "POST", mode: "no-cors", ...init }); sent.push(path); }
    catch (error) { sent.push(path + ": " + error); }
  };
  await send("/api/configs", {
    headers: { "Content-Type": "text/plain" },
    body: JSON.stringify({ mac_address: "%(new)s", content: { planted: true } }),
  });
  const form = new FormData();
  form.append("file", new Blob(['{"planted": true}']), "%(victim_file)s");
  form.append("dry_run", "false");
  await send("/api/configs/import", { body: form });
  await send("/api/configs/%(config_id)s/credential", {});
  document.title = "done";
  return sent;
}
window.attack = attack();
</script></body></html>
"""


def attacker_server(host: str, page: str) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = page.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: t.Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.mark.parametrize("attacker_host", ["localhost", "127.0.0.1"])
def test_a_page_on_another_origin_changes_nothing(
    new_page: NewPage, serve: Serve, app: Flask, client: FlaskClient, attacker_host: str
) -> None:
    config_id = create_device(client, VICTIM, {"brightness": 50})
    token = issue(client, config_id)
    issued = client.get(f"/api/configs/{config_id}").get_json()["credential"]["issued_at"]
    app_url = serve(app)  # http://127.0.0.1:<port>
    page_text = ATTACK % {
        "app": app_url,
        "new": NEW,
        "victim_file": VICTIM.replace(":", "-") + ".json",
        "config_id": config_id,
    }
    for attacker_url in attacker_server(attacker_host, page_text):
        page = new_page(attacker_url)
        page.goto("/")
        sent = page.evaluate("window.attack")
        assert len(sent) == 3 and all(":" not in path for path in sent), sent
    # Nothing was created, nothing overwritten, the device's token still the one it holds.
    assert client.get("/api/configs").get_json()["count"] == 1
    assert client.get(f"/api/configs/{config_id}").get_json()["content"] == {"brightness": 50}
    assert fetch(client, VICTIM, bearer(token)).status_code == 200
    assert client.get(f"/api/configs/{config_id}").get_json()["credential"]["issued_at"] == issued
    history = client.get(f"/api/configs/{config_id}/history").get_json()["versions"]
    assert len(history) == 1
