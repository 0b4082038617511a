"""Assets through a real HTTP server: streamed uploads, broken connections, the CLI, MQTT."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import typing as t
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from assets_support import build_assets_app
from assets_support import multipart
from assets_support import rsa_key
from assets_support import signed
from assets_support import temp_files
from assets_support import unique_name
from assets_support import upload
from assets_support import write_private_key
from click.testing import Result
from conftest import RecordingPublisher
from conftest import Subscriber
from conftest import free_port
from conftest import run_script
from conftest import wait_until
from flask import Flask
from werkzeug.serving import BaseWSGIServer
from werkzeug.serving import make_server

from iotsupport.extensions import state
from iotsupport.notifications import MqttPublisher

TOPIC = "iotsupport/updates/assets"


@dataclass
class Server:
    app: Flask
    assets_dir: Path
    key_path: Path
    publisher: RecordingPublisher
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(self, path: str) -> tuple[int, bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[Server]:
    """The app on werkzeug's threaded HTTP server, on a free port."""
    assets_dir = tmp_path / "assets"
    assets_dir.mkdir()
    key_path = write_private_key(tmp_path / "signing.pem", rsa_key())
    publisher = RecordingPublisher()
    app = build_assets_app(database_url, assets_dir, key_path, publisher)
    http_server: BaseWSGIServer = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=http_server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Server(app, assets_dir, key_path, publisher, http_server.server_port)
    finally:
        http_server.shutdown()
        thread.join(10)
        http_server.server_close()
        state(app).database.dispose()


def send_head(port: int, body_length: int, content_type: str) -> socket.socket:
    """Open a connection and send an upload's request line and headers only."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(
        (
            "POST /api/assets HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {body_length}\r\n"
            "Connection: close\r\n\r\n"
        ).encode()
    )
    return sock


def read_response(sock: socket.socket) -> tuple[int, dict[str, t.Any]]:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body)


def staged_size(folder: Path) -> int:
    return sum((folder / name).stat().st_size for name in temp_files(folder))


def test_a_reader_never_sees_a_partial_upload(server: Server) -> None:
    old = b"\x01" * (2 * 1024 * 1024)
    new = b"\x02" * (6 * 1024 * 1024)
    upload(server.app.test_client(), "fw.bin", old)
    body, content_type = multipart(signed(), "fw.bin", new)
    sock = send_head(server.port, len(body), content_type)
    try:
        half = len(body) // 2
        sock.sendall(body[:half])
        # The upload is streaming into a temp file in the assets folder...
        assert wait_until(lambda: staged_size(server.assets_dir) >= 2 * 1024 * 1024, 20)
        # ...and meanwhile a device reading the file gets the whole old version.
        for _ in range(3):
            assert server.get("/api/assets/fw.bin") == (200, old)
        assert (server.assets_dir / "fw.bin").read_bytes() == old
        sock.sendall(body[half:])
        status, answer = read_response(sock)
    finally:
        sock.close()
    assert status == 200, answer
    assert answer["size"] == len(new)
    assert server.get("/api/assets/fw.bin") == (200, new)
    assert temp_files(server.assets_dir) == []


def test_an_interrupted_upload_leaves_no_temp_file_and_the_old_version(server: Server) -> None:
    upload(server.app.test_client(), "fw.bin", b"version 1")
    body, content_type = multipart(signed(), "fw.bin", b"\x03" * (1024 * 1024))
    sock = send_head(server.port, len(body), content_type)
    sock.sendall(body[: len(body) // 2])
    assert wait_until(lambda: staged_size(server.assets_dir) > 0, 20)
    sock.close()  # the CI job dies mid-upload
    assert wait_until(lambda: temp_files(server.assets_dir) == [], 20), "temp file left behind"
    assert server.get("/api/assets/fw.bin") == (200, b"version 1")
    assert server.publisher.messages == [(TOPIC, {"filename": "fw.bin"})]  # only version 1


def run_upload_asset(app: Flask, *args: str) -> Result:
    result: Result = app.test_cli_runner().invoke(args=["upload-asset", *args])
    return result


def test_upload_asset_command_against_a_running_server(server: Server, tmp_path: Path) -> None:
    firmware = tmp_path / "build" / "sensor-1.4.2.bin"
    firmware.parent.mkdir()
    firmware.write_bytes(b"\xe9" + bytes(range(256)) * 100)
    result = run_upload_asset(
        server.app, str(firmware), "--url", server.url, "--key", str(server.key_path)
    )
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert answer["filename"] == "sensor-1.4.2.bin"
    assert answer["size"] == firmware.stat().st_size
    assert (server.assets_dir / "sensor-1.4.2.bin").read_bytes() == firmware.read_bytes()
    renamed = run_upload_asset(
        server.app,
        str(firmware),
        "--url",
        f"{server.url}/api/assets",
        "--key",
        str(server.key_path),
        "--name",
        "sensor.bin",
    )
    assert renamed.exit_code == 0, renamed.output
    assert server.get("/api/assets/sensor.bin") == (200, firmware.read_bytes())


def test_upload_asset_command_exits_non_zero_on_refusal(server: Server, tmp_path: Path) -> None:
    firmware = tmp_path / "fw.bin"
    firmware.write_bytes(b"firmware")
    wrong_key = write_private_key(tmp_path / "other.pem", rsa_key("other"))
    result = run_upload_asset(
        server.app, str(firmware), "--url", server.url, "--key", str(wrong_key)
    )
    assert result.exit_code != 0
    answer, _, message = result.stderr.partition("\n")
    assert json.loads(answer)["code"] == "signature_mismatch"
    assert "HTTP 400" in message
    assert not (server.assets_dir / "fw.bin").exists()


def test_upload_asset_command_when_the_server_is_away(server: Server, tmp_path: Path) -> None:
    firmware = tmp_path / "fw.bin"
    firmware.write_bytes(b"firmware")
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    result = run_upload_asset(
        server.app,
        str(firmware),
        "--url",
        f"http://127.0.0.1:{closed}",
        "--key",
        str(server.key_path),
    )
    assert result.exit_code != 0
    assert "could not upload" in result.output


@pytest.mark.mqtt
def test_a_subscriber_hears_of_an_upload(
    database_url: str, mqtt_url: str, subscriber: Subscriber, tmp_path: Path
) -> None:
    assets_dir = tmp_path / "assets"
    assets_dir.mkdir()
    key_path = write_private_key(tmp_path / "signing.pem", rsa_key())
    app = build_assets_app(database_url, assets_dir, key_path, mqtt_url=mqtt_url)
    publisher = state(app).publisher
    assert isinstance(publisher, MqttPublisher)
    publisher.start()
    try:
        assert wait_until(lambda: publisher.state == "connected", 10), "never connected"
        name = unique_name()
        client = app.test_client()
        assert upload(client, name, b"firmware").status_code == 200
        assert subscriber.wait_for_filename(name), "no MQTT message for the upload"
        ours = [message for message in subscriber.messages if message[1].get("filename") == name]
        assert ours == [(TOPIC, {"filename": name}, 1, False)]
        assert (assets_dir / name).read_bytes() == b"firmware"
        refused = unique_name()
        assert upload(client, refused, b"x", signed(key=rsa_key("other"))).status_code == 400
        assert client.delete(f"/api/assets/{name}").status_code == 204
        assert not subscriber.wait_for_filename(refused, timeout=0.5)
        assert len([m for m in subscriber.messages if m[1].get("filename") == name]) == 1
    finally:
        publisher.stop(flush_seconds=1.0)
        state(app).database.dispose()


def test_the_server_refuses_to_start_with_an_unusable_signing_key(tmp_path: Path) -> None:
    bad_key = tmp_path / "key.pem"
    bad_key.write_text("-----BEGIN PRIVATE KEY-----\nnot really\n-----END PRIVATE KEY-----\n")
    result = run_script(
        tmp_path, "serve", "--port", str(free_port()), SIGNING_KEY_PATH=str(bad_key)
    )
    assert result.returncode != 0
    assert "cannot start" in result.stderr
    assert f"SIGNING_KEY_PATH ({bad_key}) is not a PEM RSA private or public key" in result.stderr
    assert "Traceback" not in result.stderr
