"""A PostgreSQL cluster of a test's own, to stop and restart for real (the relay that
cuts or freezes connections is conftest's TcpProxy)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from conftest import TcpProxy
from conftest import free_port
from sqlalchemy import make_url

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def _as_postgres(command: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root (CI runs as root).
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *command]
    return command


class OwnPostgres:
    """A PostgreSQL cluster in a temporary folder, on its own port, to stop and restart."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="iotsupport-pg-"))
        self.port = free_port()
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres", "postgres")
        self.data = self.folder / "data"
        subprocess.run(
            _as_postgres(
                [
                    str(PG_BIN / "initdb"),
                    "-D",
                    str(self.data),
                    "-A",
                    "trust",
                    "-U",
                    "postgres",
                    "--no-sync",
                ]
            ),
            check=True,
            capture_output=True,
        )
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._options = options

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _ctl(self, *args: str) -> None:
        subprocess.run(
            _as_postgres(
                [
                    str(PG_BIN / "pg_ctl"),
                    "-D",
                    str(self.data),
                    "-w",
                    "-t",
                    "30",
                    "-o",
                    self._options,
                    "-l",
                    str(self.folder / "log"),
                    *args,
                ]
            ),
            check=True,
            capture_output=True,
        )

    def start(self) -> None:
        self._ctl("start")

    def stop(self) -> None:
        self._ctl("stop", "-m", "fast")

    def restart(self) -> None:
        self._ctl("restart", "-m", "fast")

    def remove(self) -> None:
        try:
            self.stop()
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.folder, ignore_errors=True)


def own_postgres_available() -> bool:
    return (PG_BIN / "initdb").exists() and (
        os.geteuid() != 0 or shutil.which("runuser") is not None
    )


@contextmanager
def own_postgres() -> Iterator[OwnPostgres]:
    cluster = OwnPostgres()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.remove()


def port_of(url: str) -> int:
    return int(make_url(url).port or 5432)


def through(url: str, proxy: TcpProxy) -> str:
    return (
        make_url(url).set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    )
