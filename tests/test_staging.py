"""Upload staging: what a process killed in the middle of an upload left is cleaned at
the next start, never left to pile up in the temp folder."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
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


def test_an_upload_killed_midway_leaves_nothing_and_a_killed_stager_is_swept(
    tmp_path: Path,
) -> None:
    """A body still arriving is held by the ASGI front in a file without a name, so a
    kill -9 then leaves nothing; a process killed while it staged a complete upload
    leaves its staging folder, which the next start removes."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    assert run_script(tmp_path, "upgrade-db").returncode == 0
    with server(tmp_path, temp) as (port, process):
        model = {"code": "lamp", "name": "Lamp", "schema": {"type": "object"}}
        created = httpx.post(
            f"http://127.0.0.1:{port}/api/models",
            json=model,
            headers={"Host": "localhost"},
            timeout=30,
        )
        assert created.status_code == 201, created.text
        head = (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; '
            'filename="firmware.bin"\r\nContent-Type: application/octet-stream\r\n\r\n'
        ).encode()
        total = 8 * 1024 * 1024
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        sock.sendall(
            f"POST /api/models/lamp/releases HTTP/1.1\r\nHost: localhost\r\n"
            f"Content-Length: {total}\r\n"
            f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n\r\n".encode()
            + head
            + b"\xe9" * (2 * 1024 * 1024)
        )
        time.sleep(1)  # the front has taken the 2 MiB in
        os.killpg(process.pid, signal.SIGKILL)  # the supervisor and its worker
        process.wait(30)
        sock.close()
    assert staged_files(temp) == []
    # A process killed while staging: a real one, holding its folder as a worker does.
    area = temp / f"iotsupport-staging-{os.geteuid()}"
    stager = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from iotsupport import staging; "
            "folder = staging.own_folder(Path(sys.argv[1])); "
            "(folder / 'upload.part').write_bytes(b'x' * 4096); print('staged', flush=True); "
            "time.sleep(60)",
            str(area),
        ],
        stdout=subprocess.PIPE,
    )
    assert stager.stdout is not None and stager.stdout.readline() == b"staged\n"
    stager.kill()
    stager.wait(30)
    stager.stdout.close()
    assert staged_files(temp), "the killed stager left its file (else this tests nothing)"
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
