"""A model schema that refers to a URL is refused, and the URL is never fetched.

Issue 20 item 8: with the network stubbed to fail, a loader that downloads remote
`$ref`s went unnoticed (the failure was swallowed and the schema refused anyway). Here
a real local HTTP server serves a valid schema at the URL: a loader that fetched it
would accept the model, and the server counts every request it gets.
"""

from __future__ import annotations

import json
import threading
import typing as t
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer

import pytest
from conftest import assert_error
from flask.testing import FlaskClient
from test_device_models import SCHEMA
from test_device_models import create_model

VALID = json.dumps({"type": "object", "properties": {"deviceName": {"type": "string"}}}).encode()


class SchemaServer:
    def __init__(self) -> None:
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server name
                server.requests.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "application/schema+json")
                self.send_header("Content-Length", str(len(VALID)))
                self.end_headers()
                self.wfile.write(VALID)

            def log_message(self, *_: t.Any) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.http.server_address[1]}"


@pytest.fixture
def schema_server() -> Iterator[SchemaServer]:
    server = SchemaServer()
    thread = threading.Thread(target=server.http.serve_forever, daemon=True)
    thread.start()
    yield server
    server.http.shutdown()
    server.http.server_close()


def spellings(base: str) -> list[dict[str, t.Any]]:
    url = f"{base}/schema.json"
    return [
        {"$ref": url},
        {"$ref": url + "#"},
        {"properties": {"a": {"$ref": url}}},
        {"$defs": {"x": {"$ref": url}}, "allOf": [{"$ref": "#/$defs/x"}]},
        {"$id": f"{base}/root.json", "properties": {"a": {"$ref": "schema.json"}}},
        {"$dynamicRef": url},
        {"$schema": "https://json-schema.org/draft/2019-09/schema", "$recursiveRef": url},
        {"$schema": "http://json-schema.org/draft-07/schema#", "items": {"$ref": url}},
        {
            "$schema": "http://json-schema.org/draft-07/schema#",
            "dependencies": {"a": {"$ref": url}},
        },
    ]


def test_the_server_serves_a_valid_schema(schema_server: SchemaServer) -> None:
    """The control: what the URL answers would make a schema that is accepted."""
    from urllib.request import urlopen

    with urlopen(f"{schema_server.base}/schema.json", timeout=5) as answer:  # noqa: S310
        assert json.loads(answer.read()) == json.loads(VALID)
    assert schema_server.requests == ["/schema.json"]


@pytest.mark.parametrize("index", range(len(spellings("http://x"))))
def test_a_remote_ref_is_refused_and_never_fetched(
    client: FlaskClient, schema_server: SchemaServer, index: int
) -> None:
    schema = spellings(schema_server.base)[index]
    body = {"code": "m", "name": "M", "schema": schema}
    refusal = assert_error(client.post("/api/models", json=body), 400, "invalid_schema")
    assert "never fetched" in json.dumps(refusal)
    # An existing model's schema changed to it: the same.
    create_model(client, "lamp", SCHEMA)
    update = {"name": "Lamp", "schema": schema}
    assert_error(client.put("/api/models/lamp", json=update), 400, "invalid_schema")
    assert client.get("/api/models/lamp").get_json()["schema"] == SCHEMA
    assert schema_server.requests == []
