"""The production server (`iotsupport serve`, Granian) as a stranger meets it.

Which refusals come from the HTTP server itself, without the JSON envelope, is
documented in README "Security"; these tests hold the server to that list. The
rest, our own limits included, answers in the envelope. The server is started
with a PROMETHEUS_MULTIPROC_DIR that does not exist yet.
"""

from __future__ import annotations

import json
import socket
import typing as t
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from assets_support import multipart
from assets_support import rsa_key
from assets_support import signed_fields
from assets_support import write_private_key
from conftest import run_script
from conftest import serving

from iotsupport.api.protections import MAX_HEADER_BYTES
from iotsupport.api.protections import MAX_URL_BYTES
from iotsupport.cli import SERVER_HEAD_BYTES


@dataclass
class Served:
    port: int
    metrics_dir: Path

    def exchange(self, raw: bytes) -> tuple[int, dict[str, str], bytes]:
        """Send `raw` as is; the status, headers and body of the answer."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as sock:
            sock.sendall(raw)
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
        return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


def get(path: str, *headers: str) -> bytes:
    extra = "".join(f"{header}\r\n" for header in headers)
    head = f"GET {path} HTTP/1.1\r\nHost: localhost\r\n{extra}Connection: close\r\n\r\n"
    return head.encode("latin-1")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("served")
    assert run_script(folder, "upgrade-db").returncode == 0
    metrics_dir = folder / "not" / "yet" / "there"
    (folder / "assets").mkdir()
    env = {
        "WORKERS": "1",
        "THREADS": "2",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "ASSETS_DIR": str(folder / "assets"),
        "SIGNING_KEY_PATH": str(write_private_key(folder / "ci.pem", rsa_key())),
    }
    with serving(folder, **env) as (port, _log):
        yield Served(port, metrics_dir)


def test_serve_makes_the_metrics_folder(served: Served) -> None:
    assert served.metrics_dir.is_dir()
    status, _, body = served.exchange(get("/metrics"))
    assert status == 200
    assert b"iotsupport_http_requests_total" in body


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GET /api/health/live HTTP/1.1\r\nHost: localhost\r\nBad Header: 1\r\n\r\n", 400),
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET /api/health/live HTTP/3.0\r\nHost: localhost\r\n\r\n", 400),
        (
            b"POST /api/configs HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1\r\n"
            b"Content-Length: 2\r\n\r\nab",
            400,
        ),
        (get("/api/health/live", "X-Big: " + "x" * SERVER_HEAD_BYTES), 431),
        (get("/api/health/live", *(f"X-H{i}: 1" for i in range(100))), 431),
        (get("/api/health/live?" + "a" * SERVER_HEAD_BYTES), 431),
    ],
    ids=[
        "bad-header",
        "not-http",
        "http-version",
        "two-lengths",
        "head-over-64k",
        "over-100-headers",
        "url-over-64k",
    ],
)
def test_the_http_servers_own_refusals_are_the_documented_ones(
    served: Served, raw: bytes, status: int
) -> None:
    answered, headers, body = served.exchange(raw)
    assert (answered, body) == (status, b"")
    assert headers.get("content-length") == "0"


@pytest.mark.parametrize(
    ("raw", "status", "code"),
    [
        (get("/api/health/live?" + "a" * MAX_URL_BYTES), 414, "uri_too_long"),
        (get("/api/health/live", "X-Big: " + "x" * MAX_HEADER_BYTES), 431, None),
    ],
)
def test_our_own_limits_answer_json(
    served: Served, raw: bytes, status: int, code: str | None
) -> None:
    answered, headers, body = served.exchange(raw)
    assert answered == status
    assert headers["content-type"] == "application/json"
    envelope = json.loads(body)
    assert set(envelope) == {"error", "code", "details"}
    assert envelope["code"] == (code or "request_header_fields_too_large")


def chunked(body: bytes) -> bytes:
    size = 64 * 1024
    parts = [body[i : i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in parts) + b"0\r\n\r\n"


def post_chunked(served: Served, body: bytes) -> tuple[int, dict[str, t.Any]]:
    head = (
        b"POST /api/configs HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    status, _, answer = served.exchange(head + chunked(body))
    return status, json.loads(answer)


@pytest.mark.parametrize("size", [1_100_000, 1_500_000, 2_000_000])
def test_a_chunked_body_over_the_limit_is_413(served: Served, size: int) -> None:
    mac = f"aa:bb:cc:dd:{size % 251:02x}:01"
    body = json.dumps({"mac_address": mac, "content": {"blob": "x" * size}}).encode()
    status, answer = post_chunked(served, body)
    assert (status, answer["code"]) == (413, "payload_too_large")
    assert mac.encode() not in served.exchange(get("/api/configs"))[2]  # nothing stored


def test_a_chunked_body_within_the_limit_is_read_whole(served: Served) -> None:
    prefix = b'{"mac_address": "aa:bb:cc:dd:ee:7f", "content": {"blob": "'
    suffix = b'"}}'
    filler = b"x" * (1024 * 1024 - len(prefix) - len(suffix))  # exactly MAX_REQUEST_BYTES
    status, answer = post_chunked(served, prefix + filler + suffix)
    assert status == 201, answer
    _, _, stored = served.exchange(get("/api/configs/aa:bb:cc:dd:ee:7f.json"))
    assert stored == b'{"blob": "' + filler + b'"}'


def test_every_answer_carries_the_security_headers(served: Served) -> None:
    for path in ("/api/health/live", "/api/configs", "/nope", "/api/docs"):
        _, headers, _ = served.exchange(get(path))
        assert headers["x-content-type-options"] == "nosniff", path
        assert headers["referrer-policy"] == "same-origin", path
        assert "frame-ancestors 'none'" in headers["content-security-policy"], path
    _, headers, _ = served.exchange(get("/api/configs"))
    assert headers["cache-control"] == "no-store"


def test_a_refused_upload_reaches_nothing(served: Served) -> None:
    """A bad signature on a 60 MiB upload: refused once the body is whole (the front reads
    every body before a thread sees it), and nothing reaches the assets folder."""
    fields = signed_fields("fw.bin", b"other bytes", key=rsa_key("other"))
    body, content_type = multipart(fields, "fw.bin", b"\0" * (60 * 1024 * 1024))
    status, _, answer = served.exchange(
        f"POST /api/assets HTTP/1.1\r\nHost: localhost\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        + body
    )
    assert status == 400, answer[:200]
    stored = (served.metrics_dir.parents[2] / "assets").iterdir()
    assert [path for path in stored if path.name != ".staging"] == []
