"""The fleet simulator's parts: its HTTP client, devices from files, the failing share, and
`iotsupport simulate` against a served app (the rollout itself: test_rollout_fleet.py)."""

from __future__ import annotations

import asyncio
import re
import typing as t
from pathlib import Path

import pytest
from flask import Flask
from flask import Response
from flask.testing import FlaskCliRunner
from release_support import create_model
from ui_support import Serve

from iotsupport.auth.access import public
from iotsupport.simulator.command import parse_stages
from iotsupport.simulator.device import Identity
from iotsupport.simulator.fleet import failing
from iotsupport.simulator.http import HttpError
from iotsupport.simulator.http import HttpPool
from iotsupport.simulator.provision import ProvisioningFailed
from iotsupport.simulator.provision import mac_for
from iotsupport.simulator.provision import read_devices
from iotsupport.simulator.provision import write_devices


def test_macs_devices_files_and_the_failing_share(tmp_path: Path) -> None:
    assert mac_for("02:51", 258) == "02:51:00:00:01:02"
    assert mac_for("02:AB:cd:ef:01", 7) == "02:ab:cd:ef:01:07"
    with pytest.raises(ValueError):
        mac_for("02:ab:cd:ef:01", 256)
    devices = [Identity(mac_for("02:51", n), f"iotd_{n}") for n in range(100)]
    path = tmp_path / "devices.txt"
    write_devices(path, devices)
    assert path.stat().st_mode & 0o777 == 0o600  # tokens inside
    assert read_devices(path) == devices
    path.write_text("02:51:00:00:00:01 a b\n")
    with pytest.raises(ProvisioningFailed):
        read_devices(path)
    chosen = failing(devices, 0.3, seed=1)
    assert len(chosen) == 30 and chosen == failing(devices, 0.3, seed=1)
    assert chosen != failing(devices, 0.3, seed=2)
    assert failing(devices, 0.0, seed=1) == set()
    assert parse_stages("1, 10%,100%") == [1, "10%", "100%"]


def http_app() -> Flask:
    app = Flask(__name__)

    @app.get("/fixed")
    @public
    def fixed() -> Response:
        return Response(b"x" * 100_000)

    @app.get("/chunked")
    @public
    def chunked() -> Response:
        return Response(b"y" * 1000 for _ in range(70))  # no length: chunked

    @app.get("/closing")
    @public
    def closing() -> Response:
        return Response(b"bye", headers={"Connection": "close"})

    @app.get("/empty")
    @public
    def empty() -> Response:
        return Response(status=304, headers={"ETag": '"e"'})

    return app


def test_the_http_client_reads_every_kind_of_body(serve: Serve) -> None:
    base = serve(http_app())

    async def run() -> list[t.Any]:
        pool = HttpPool(base, size=2)
        try:
            answers: list[t.Any] = [
                await pool.request("GET", path, {"X-Firmware-Version": "1"})
                for path in ("/fixed", "/chunked", "/closing", f"{base}/empty", "/fixed")
            ]
            pieces: list[bytes] = []
            status, _ = await pool.stream("GET", "/chunked", {}, pieces.append)
            answers.append((status, sum(map(len, pieces))))
            return answers
        finally:
            await pool.close()

    fixed, chunked, closing, empty, again, streamed = asyncio.run(run())
    assert (fixed.status, len(fixed.body)) == (200, 100_000)
    assert (chunked.status, chunked.body) == (200, b"y" * 70_000)
    assert closing.body == b"bye"
    assert (empty.status, empty.body, empty.headers["etag"]) == (304, b"", '"e"')
    assert len(again.body) == 100_000
    assert streamed == (200, 70_000)


def test_the_http_client_says_when_nobody_answers() -> None:
    async def run() -> None:
        pool = HttpPool("http://127.0.0.1:9", size=1, timeout=2)
        await pool.request("GET", "/", {})

    with pytest.raises(HttpError):
        asyncio.run(run())


def test_simulate_provisions_devices_and_prints_a_summary(
    app: Flask, runner: FlaskCliRunner, serve: Serve, tmp_path: Path
) -> None:
    create_model(app.test_client(), "sim")
    saved = tmp_path / "devices.txt"
    base = serve(app)
    args = ["simulate", "--server", base, "--devices", "3", "--model", "sim", "--duration", "0.5"]
    result = runner.invoke(args=[*args, "--poll-seconds", "0.2", "--save-devices", str(saved)])
    assert result.exit_code == 0, result.output
    assert "devices: 3" in result.output
    assert "config    3 x 200" in result.output and "x 304" in result.output
    assert "running: 1.0.0 on 3" in result.output
    assert len(read_devices(saved)) == 3
    reused = ["simulate", "--server", base, "--devices-file", str(saved), "--duration", "0.3"]
    again = runner.invoke(args=reused)
    assert again.exit_code == 0, again.output
    assert "devices: 3" in again.output and "config    3 x 200" in again.output


def test_simulate_says_what_is_missing(runner: FlaskCliRunner) -> None:
    result = runner.invoke(args=["simulate", "--devices", "2"])
    assert result.exit_code == 2 and "--model" in result.output
    result = runner.invoke(args=["simulate", "--model", "x", "--stages", "1,many"])
    assert result.exit_code == 2 and "--stages" in result.output
    result = runner.invoke(args=["simulate", "--model", "x", "--server", "http://127.0.0.1:9"])
    assert result.exit_code == 1 and "Error" in result.output


def test_simulated_devices_log_as_esp_idf_does_over_http(
    app: Flask, runner: FlaskCliRunner, serve: Serve
) -> None:
    from iotsupport.extensions import state

    create_model(app.test_client(), "simlog")
    base = serve(app)
    args = ["simulate", "--server", base, "--devices", "2", "--model", "simlog"]
    result = runner.invoke(args=[*args, "--duration", "6", "--log-rate", "120"])
    assert result.exit_code == 0, result.output
    assert "log lines sent" in result.output
    state(app).reports.flush()
    lines = app.test_client().get("/api/logs?limit=1000").get_json()["lines"]
    assert len({line["device"]["id"] for line in lines}) == 2
    boot = [line for line in lines if line["tag"] == "cpu_start"]
    assert len(boot) == 4 and all(line["uptime_ms"] is not None for line in boot)
    assert all("\x1b" not in line["message"] for line in lines)  # colour codes were sent
    # Boot lines (9 each) and about 2 a second each for 6 s, sent in 5 s batches.
    assert 2 * 9 + 2 * 5 <= len(lines) <= 2 * 9 + 2 * 15
    assert all(line["verified"] for line in lines)


def test_esp_idf_lines_of_the_simulator_carry_colour_codes() -> None:
    from iotsupport.simulator.logs import LogScript

    script = LogScript("02:51:00:00:00:01")
    boot = script.boot()
    assert boot[0].startswith("\x1b[0;32mI (5) cpu_start: ") and boot[0].endswith("\x1b[0m")
    levels = {re.sub(r"\x1b\[[0-9;]*m", "", script.next())[0] for _ in range(2000)}
    assert {"E", "W", "I", "D"} <= levels
