"""Upload staging: what a process killed in the middle of an upload left is cleaned at
the next start, never left to pile up in the temp folder."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from conftest import answers
from conftest import console_script
from conftest import free_port
from conftest import run_script
from conftest import script_environment
from conftest import wait_until

from iotsupport import staging

BOUNDARY = "staging-boundary"


@contextmanager
def server(folder: Path, temp: Path) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """`iotsupport serve` in its own process group, with TMPDIR=temp."""
    port = free_port()
    env = script_environment(PORT=str(port), WORKERS="1", THREADS="2", TMPDIR=str(temp))
    with (folder / "serve.log").open("ab") as log:
        process = subprocess.Popen(
            [console_script(), "serve"],
            cwd=folder,
            env=env,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    try:
        live = f"http://127.0.0.1:{port}/api/health/live"
        assert wait_until(lambda: answers(live), 30), (folder / "serve.log").read_text()
        yield port, process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(30)


def staged_files(temp: Path) -> list[Path]:
    """Files under the temp folder that are not the server's bookkeeping (metrics
    samples, the owner files of live processes)."""
    return [
        path
        for path in temp.rglob("*")
        if path.is_file()
        and path.name != staging.OWNER_FILE
        and not any(part.startswith("iotsupport-metrics-") for part in path.parts)
    ]


def test_a_release_upload_killed_midway_is_cleaned_at_restart(tmp_path: Path) -> None:
    temp = tmp_path / "tmp"
    temp.mkdir()
    assert run_script(tmp_path, "upgrade-db").returncode == 0
    with server(tmp_path, temp) as (port, process):
        model = {"code": "lamp", "name": "Lamp", "schema": {"type": "object"}}
        created = httpx.post(f"http://127.0.0.1:{port}/api/models", json=model, timeout=30)
        assert created.status_code == 201, created.text
        head = (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; '
            'filename="firmware.bin"\r\nContent-Type: application/octet-stream\r\n\r\n'
        ).encode()
        total = 8 * 1024 * 1024
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        sock.sendall(
            f"POST /api/models/lamp/releases HTTP/1.1\r\nHost: x\r\nContent-Length: {total}\r\n"
            f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n\r\n".encode()
            + head
            + b"\xe9" * (2 * 1024 * 1024)
        )

        def staged_midway() -> bool:
            return any(path.stat().st_size > 0 for path in staged_files(temp))

        assert wait_until(staged_midway, 30), "the upload was never staged"
        os.killpg(process.pid, signal.SIGKILL)  # the supervisor and its worker
        process.wait(30)
        sock.close()
    left = staged_files(temp)
    assert left, "a killed upload leaves its staging file (else this test tests nothing)"
    assert all(path.is_relative_to(temp / f"iotsupport-staging-{os.geteuid()}") for path in left), (
        left
    )

    with server(tmp_path, temp):
        assert staged_files(temp) == []


def test_a_staging_folder_others_can_write_to_is_refused(tmp_path: Path) -> None:
    area = tmp_path / "open"
    area.mkdir(mode=0o777)
    area.chmod(0o777)
    result = run_script(tmp_path, "upgrade-db", STAGING_DIR=str(area))
    assert result.returncode != 0
    assert "STAGING_DIR" in result.stderr and "no one else can write" in result.stderr


def test_a_live_process_folder_is_kept_and_a_dead_ones_removed(tmp_path: Path) -> None:
    area = tmp_path / "area"
    mine = staging.own_folder(area)
    (mine / "upload.part").write_bytes(b"x")
    # Another (dead) process's folder: an owner file that nobody holds locked.
    dead = area / "999999-deadbeef"
    dead.mkdir()
    (dead / staging.OWNER_FILE).touch()
    (dead / "upload.part").write_bytes(b"y" * 100)
    assert staging.sweep(area) == 1
    assert not dead.exists()
    assert (mine / "upload.part").exists()
    # A child process sees this process's folder as alive (the lock is held).
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            f"from pathlib import Path; from iotsupport import staging; "
            f"print(staging.sweep(Path({str(area)!r})))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.strip() == "0"
    assert (mine / "upload.part").exists()
    os.close(staging._claimed.pop(area)[2])  # noqa: SLF001 - this test's own area
