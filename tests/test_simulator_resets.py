"""The fleet simulator under connection resets: its devices retry as firmware does, and
the run goes on (a reset used to end `iotsupport simulate`, stopping every device)."""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from pathlib import Path

import httpx
from esp_images import AppInfo
from esp_images import build_image
from flask import Flask
from release_support import create_model
from release_support import post_release
from ui_support import Serve

from iotsupport.extensions import state
from iotsupport.simulator.device import RETRIED
from iotsupport.simulator.fleet import ADMIN_RETRIED
from iotsupport.simulator.fleet import FleetOptions
from iotsupport.simulator.fleet import simulate
from iotsupport.simulator.provision import provision
from iotsupport.simulator.provision import write_devices

DEVICES = 5


def reset(sock: socket.socket) -> None:
    """Close with a TCP reset (RST), as a crashed peer or a middlebox does."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


class ResettingProxy:
    """A tiny TCP server in front of `upstream`: while `resetting`, it resets every
    connection it accepts; else it forwards. `reset_all` resets the open ones too."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.resetting = threading.Event()
        self.resets = 0
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def reset_all(self) -> None:
        with self._lock:
            open_now, self._open = self._open, []
        for sock in open_now:
            reset(sock)
            self.resets += 1

    def close(self) -> None:
        self._server.close()
        self.reset_all()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            if self.resetting.is_set():
                reset(client)
                self.resets += 1
                continue
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            with self._lock:
                self._open += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def test_devices_retry_through_resets_and_all_update(
    app: Flask, serve: Serve, tmp_path: Path
) -> None:
    client = app.test_client()
    create_model(client, "sim")
    image = build_image("esp32c3", app=AppInfo(version="2.0.0"), code_bytes=20_000)
    assert post_release(client, "sim", image).status_code == 201
    direct = serve(app)

    async def devices() -> None:
        async with httpx.AsyncClient(base_url=direct) as admin:
            write_devices(tmp_path / "devices.txt", await provision(admin, "sim", DEVICES, "02:61"))

    asyncio.run(devices())
    proxy = ResettingProxy(int(direct.rsplit(":", 1)[1]))
    proxy.resetting.set()  # at first, every connection is reset

    def faults() -> None:
        # The devices start against a server that resets them ...
        threading.Event().wait(1.0)
        proxy.resetting.clear()
        # ... then, once the rollout runs, every open connection (the simulator's own
        # rollout checks included) is reset, and new ones for a second.
        for _ in range(200):
            if client.get("/api/models/sim/rollouts").get_json().get("rollouts"):
                break
            threading.Event().wait(0.05)
        proxy.resetting.set()
        proxy.reset_all()
        threading.Event().wait(1.0)
        proxy.resetting.clear()

    injector = threading.Thread(target=faults)
    injector.start()
    options = FleetOptions(
        server=f"http://127.0.0.1:{proxy.port}",
        devices=DEVICES,
        model="sim",
        devices_file=tmp_path / "devices.txt",
        poll_seconds=0.3,
        reboot_seconds=0.05,
        rollout_version="2.0.0",
        rollout_stages=["100%"],
        until_version="2.0.0",
        duration=60,  # a bound: every device runs it long before
    )
    reports = state(app).reports
    reports.start()  # device reports reach the rollout, as in a worker
    try:
        report = simulate(options)
    finally:
        injector.join(30)
        proxy.close()
        reports.stop()
    summary = "\n".join(report.lines())
    assert proxy.resets >= DEVICES, summary
    assert report.stats.events[RETRIED] > 0, summary
    assert report.stats.events[ADMIN_RETRIED] > 0, summary  # the run went on
    assert report.running == {"2.0.0": DEVICES}, summary
    assert report.elapsed < 50, summary
    assert "requests retried after a failure" in summary
