"""Following a log under `iotsupport serve`: a long poll waits on the event loop of the
ASGI front, so many followers hold none of the worker's threads."""

from __future__ import annotations

import json
import threading
import time
import typing as t
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import random_mac
from conftest import run_script
from conftest import serving

FOLLOWERS = 12  # many more than THREADS


def call(
    port: int, method: str, path: str, body: bytes = b"", timeout: float = 60
) -> tuple[int, t.Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=body or None, method=method
    )
    request.add_header(
        "Content-Type", "application/json" if body.startswith(b"{") else "text/plain"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def test_followers_wait_on_the_loop_and_answer_when_lines_arrive(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    folder: Path = tmp_path_factory.mktemp("follow")
    assert run_script(folder, "upgrade-db").returncode == 0
    with serving(folder, WORKERS="1", THREADS="2", CHECKIN_FLUSH_SECONDS="0.5") as (port, _):
        mac, quiet = random_mac(), random_mac()
        ids = []
        for each in (mac, quiet):
            body = json.dumps({"mac_address": each, "content": {"n": 1}}).encode()
            status, created = call(port, "POST", "/api/configs", body)
            assert status == 201
            ids.append(created["id"])
        latest = call(port, "GET", f"/api/configs/{ids[0]}/logs")[1]["latest"]
        answered: dict[int, float] = {}
        lock = threading.Lock()

        def follow(index: int) -> t.Any:
            config_id = ids[1] if index == 0 else ids[0]
            path = f"/api/configs/{config_id}/logs?after={latest}&wait=12"
            status, page = call(port, "GET", path)
            assert status == 200
            with lock:
                answered[index] = time.monotonic()
            return page

        with ThreadPoolExecutor(FOLLOWERS) as pool:
            futures = [pool.submit(follow, index) for index in range(FOLLOWERS)]
            time.sleep(2.0)  # every follower is waiting now
            assert answered == {}
            started = time.monotonic()
            status, page = call(port, "GET", "/api/configs", timeout=10)
            assert status == 200 and time.monotonic() - started < 5  # threads are free
            sent = time.monotonic()
            status, accepted = call(
                port, "POST", f"/api/device/logs?mac={mac}", b"E (77) wifi: gone\n"
            )
            assert status == 202 and accepted["accepted"] == 1
            pages = [future.result(timeout=60) for future in futures]
        for index, page in enumerate(pages):
            if index == 0:  # the other device's follower waited its 12 s out
                assert page["lines"] == [] and answered[0] - sent > 5
            else:
                assert [line["message"] for line in page["lines"]] == ["gone"]
                assert answered[index] - sent < 8
