"""Slow clients against the production server (`iotsupport serve`): a body that trickles
in holds no thread, so device fetches and admin work go on; a body slower than
REQUEST_BODY_TIMEOUT_SECONDS is refused with 408; a body over the route's limit is
refused with 413 whatever the route; a 64 MiB upload still works, spooled to disk."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import urllib.request
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
from conftest import wait_until

SLOW_CLIENTS = 40
IDLE_CLIENTS = 40
BODY_TIMEOUT = 20.0  # room for a slow CI machine; the probes take about 5 s
MAC = "02:5c:00:00:00:01"


@dataclass
class Server:
    port: int
    folder: Path

    def request(
        self, method: str, path: str, body: bytes = b"", timeout: float = 10.0
    ) -> tuple[int, bytes]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}",
            data=body or None,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def worker_peak_rss(self) -> int:
        """The worker process's peak resident memory (VmHWM), in bytes."""
        (pid,) = worker_pids(self.port)
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmHWM")


def worker_pids(port: int) -> list[int]:
    """Granian's worker processes for `port`: the served processes whose parent is too."""
    served: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().split(b"\0")
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if b"granian" in b" ".join(command) and f"--port={port}".encode() in command:
            served[int(entry.name)] = parent
    return [pid for pid, parent in served.items() if parent in served]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("slow")
    assert run_script(folder, "upgrade-db").returncode == 0
    (folder / "assets").mkdir()
    env = {
        "WORKERS": "1",
        "THREADS": "2",
        "REQUEST_BODY_TIMEOUT_SECONDS": str(BODY_TIMEOUT),
        "ASSETS_DIR": str(folder / "assets"),
        "SIGNING_KEY_PATH": str(write_private_key(folder / "ci.pem", rsa_key())),
    }
    with serving(folder, **env) as (port, _log):
        served = Server(port, folder)
        body = json.dumps({"mac_address": MAC, "content": {"n": 1}}).encode()
        assert served.request("POST", "/api/configs", body)[0] == 201
        yield served


def slow_put(port: int, config_id: int) -> socket.socket:
    """A PUT whose head and first 5 bytes of body are sent; the rest is owed."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(
        f"PUT /api/configs/{config_id} HTTP/1.1\r\nHost: localhost\r\n"
        "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n".encode()
        + b'{"con'
    )
    return sock


def idle_keep_alive(port: int) -> socket.socket:
    """A keep-alive connection that made one request and now says nothing."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(b"GET /api/health/live HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert sock.recv(65536).startswith(b"HTTP/1.1 200")
    return sock


def read_answer(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_slow_bodies_hold_no_thread_and_too_slow_ones_get_408(server: Server) -> None:
    slow = [slow_put(server.port, 1) for _ in range(SLOW_CLIENTS)]
    idle = [idle_keep_alive(server.port) for _ in range(IDLE_CLIENTS)]
    stop = threading.Event()

    def trickle() -> None:  # a byte a second on each slow connection
        while not stop.wait(1.0):
            for sock in slow:
                try:
                    sock.sendall(b"x")
                except OSError:
                    pass

    trickler = threading.Thread(target=trickle, daemon=True)
    trickler.start()
    started = time.monotonic()
    try:
        time.sleep(1.5)  # every slow body has begun and trickles
        for _ in range(8):  # device fetches and admin work still answer promptly
            begun = time.monotonic()
            status, _ = server.request("GET", f"/api/configs/{MAC}.json", timeout=2)
            assert status == 200
            assert time.monotonic() - begun < 2
            assert server.request("GET", "/api/configs", timeout=2)[0] == 200
            time.sleep(0.2)
        # All of it before the deadline (else the slow bodies were already refused).
        assert time.monotonic() - started < BODY_TIMEOUT - 1
        stop.set()
        # Past the deadline, each slow body is refused in the JSON envelope.
        for sock in slow:
            answer = read_answer(sock)
            head, _, body = answer.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 408"), answer[:200]
            envelope = json.loads(body)
            assert envelope["code"] == "request_timeout"
            assert envelope["details"] == {"timeout_seconds": BODY_TIMEOUT}
        assert time.monotonic() - started >= BODY_TIMEOUT - 0.5
    finally:
        stop.set()
        for sock in slow + idle:
            sock.close()
    # Nothing stays held: admin writes go through.
    body = json.dumps({"content": {"n": 2}}).encode()
    assert server.request("PUT", "/api/configs/1", body)[0] == 200


def test_a_chunked_body_over_the_limit_is_413_whatever_the_route(server: Server) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(
            b"POST /api/health/live HTTP/1.1\r\nHost: localhost\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        piece = b"x" * 65536
        try:
            for _ in range(40):  # 2.5 MB, over MAX_REQUEST_BYTES (1 MiB)
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
            sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # refused before the end of the body: the server may close
        answer = read_answer(sock)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), answer[:200]
    envelope = json.loads(body)
    assert envelope["code"] == "payload_too_large"
    assert envelope["details"] == {"max_bytes": 1024 * 1024}


def test_a_64_mib_upload_is_spooled_not_held_in_memory(server: Server) -> None:
    content = os.urandom(1024) * (64 * 1024)  # ASSET_MAX_BYTES
    fields = signed_fields("big.bin", content)
    body, content_type = multipart(fields, "big.bin", content)
    before = server.worker_peak_rss()
    request = urllib.request.Request(
        f"http://127.0.0.1:{server.port}/api/assets",
        data=body,
        method="POST",
        headers={"Content-Type": content_type},
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        assert response.status == 200
    assert (server.folder / "assets" / "big.bin").stat().st_size == len(content)
    grown = server.worker_peak_rss() - before
    assert grown < 24 * 1024 * 1024, f"the worker's peak memory grew by {grown} bytes"
    assert wait_until(lambda: server.request("GET", f"/api/configs/{MAC}.json")[0] == 200)
