"""Benchmark a staged rollout to a simulated fleet: time from start to every device updated.

Fills a PostgreSQL database with `--devices` devices (configs of about 1 KB, each with a
token) in one model, starts `iotsupport serve` as production runs it (defaults for the
check-in flush and the rollout tick) publishing to a throwaway Mosquitto (or
`--mqtt-url`), uploads a real ESP32-S3 image of about 1.5 MB as release 2.0.0, and runs
`iotsupport simulate` in its own process on the same machine: every device fetches its
config, holds its desired topic, then the simulator starts the rollout (`--stages`) and
the devices follow it (download, SHA-256 check, report). Prints the simulator's summary,
the time from the rollout's start to its end, each server process's memory (sampled
every 0.5 s throughout, and its peak) and the CPU time of server and simulator.

    .venv/bin/python bench/rollout.py [--devices 1000] [--stages 1,10%,100%]

`--evaluation-sizes 1000,10000` measures instead, in this process (no server), what one
rollout costs the database side at those fleet sizes: starting it, one evaluation (what
a worker does every ROLLOUT_TICK_SECONDS), and GET /api/rollouts/{id} with every device.
"""

from __future__ import annotations

import argparse
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bulk import call
from bulk import put_in_model
from bulk import start_mosquitto
from images import cpu_seconds
from prometheus_client import CollectorRegistry
from releases import upload_release
from run import TOKENS
from run import Server
from run import bench_arguments
from run import recreate_database
from run import serve_options

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))  # the image builder of the tests
from esp_images import AppInfo  # noqa: E402
from esp_images import build_image  # noqa: E402

from iotsupport import create_app  # noqa: E402
from iotsupport.extensions import state  # noqa: E402
from iotsupport.settings import Settings  # noqa: E402

IMAGE_CODE_BYTES = 1_440_000  # with the other segments: a 1.5 MB image
FINISHED = re.compile(r"rollout \d+: (\w+) after ([\d.]+) s")


class MemorySampler:
    """The resident memory of the server's processes, every `interval` seconds."""

    def __init__(self, server: Server, interval: float = 0.5) -> None:
        self.server = server
        self.interval = interval
        self.highest: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            for pid in [self.server.process.pid, *self.server.worker_pids()]:
                try:
                    status = Path(f"/proc/{pid}/status").read_text()
                except OSError:
                    continue
                found = re.search(r"VmRSS:\s+(\d+)", status)
                if found:
                    megabytes = int(found.group(1)) / 1024
                    self.highest[pid] = max(self.highest.get(pid, 0.0), megabytes)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def measure_evaluations(args: argparse.Namespace, sizes: list[int]) -> None:
    """Start a rollout over `size` devices and time the service's work, per size."""
    print(f"{'devices':>8} {'start ms':>9} {'evaluate ms':>12} {'GET ms':>7} {'GET KB':>7}")
    image = build_image("esp32s3", app=AppInfo(version="2.0.0"))
    for size in sizes:
        url = recreate_database(args.admin_url, args.database, size)
        settings = Settings(_env_file=None, database_url=url, mqtt_url=None)
        app = create_app(settings, registry=CollectorRegistry())
        client = app.test_client()
        client.post("/api/models", json={"code": "bench", "name": "Bench", "schema": {}})
        put_in_model(url, "bench")
        boundary = "----bench"
        body = (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="f"\r\n\r\n'
            ).encode()
            + image
            + f"\r\n--{boundary}--\r\n".encode()
        )
        posted = client.post(
            "/api/models/bench/releases",
            data=body,
            content_type=f"multipart/form-data; boundary={boundary}",
        )
        assert posted.status_code == 201, posted.get_json()
        started = time.perf_counter()
        answer = client.post(
            "/api/models/bench/rollouts", json={"version": "2.0.0", "stages": [1, "10%", "100%"]}
        )
        start_ms = 1000 * (time.perf_counter() - started)
        assert answer.status_code == 201
        rounds = []
        for _ in range(5):
            started = time.perf_counter()
            assert state(app).rollouts.evaluate_all() == 1
            rounds.append(1000 * (time.perf_counter() - started))
        started = time.perf_counter()
        view = client.get("/api/rollouts/1")
        get_ms = 1000 * (time.perf_counter() - started)
        print(
            f"{size:>8} {start_ms:>9.0f} {statistics.median(rounds):>12.0f} {get_ms:>7.0f} "
            f"{len(view.data) / 1024:>7.0f}"
        )
        state(app).database.dispose()


def main() -> None:
    parser = bench_arguments(__doc__, "iotsupport_bench_rollout", 3297)
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--stages", default="1,10%,100%")
    parser.add_argument("--fail-rate", default="0")
    parser.add_argument("--mqtt-url", help="use this broker instead of a throwaway mosquitto")
    parser.add_argument("--mqtt-connections", type=int, default=1)
    parser.add_argument("--http-connections", type=int, default=100)
    parser.add_argument("--evaluation-sizes", help="e.g. 1000,10000: time the evaluation only")
    args = parser.parse_args()
    if args.evaluation_sizes:
        measure_evaluations(args, [int(size) for size in args.evaluation_sizes.split(",")])
        return

    results = HERE / "results"
    results.mkdir(exist_ok=True)
    log = results / "rollout-server.log"
    log.write_text("")
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        broker = None
        mqtt_url = args.mqtt_url
        if mqtt_url is None:
            broker, broker_port = start_mosquitto(folder)
            mqtt_url = f"mqtt://127.0.0.1:{broker_port}"
        url = recreate_database(args.admin_url, args.database, args.devices)
        devices = folder / "devices.txt"
        devices.write_text("".join(f"{mac} {token}\n" for mac, token in TOKENS.items()))
        server = Server(url, args.port, serve_options(args), log, mqtt_url=mqtt_url)
        sampler = MemorySampler(server)
        try:
            status, answer, _ = call(
                args.port, "POST", "/api/models", {"code": "bench", "name": "Bench", "schema": {}}
            )
            assert status == 201, answer
            put_in_model(url, "bench")
            image = build_image(
                "esp32s3", app=AppInfo(version="2.0.0"), code_bytes=IMAGE_CODE_BYTES
            )
            upload_release(f"http://127.0.0.1:{args.port}", "bench", image)
            pids = [server.process.pid, *server.worker_pids()]
            server_cpu = cpu_seconds(pids)
            options = " ".join(serve_options(args)) or "(default workers and threads)"
            print(
                f"{args.devices} devices, release of {len(image):,} bytes, stages {args.stages}; "
                f"server {options}; simulator: one process, {args.mqtt_connections} MQTT "
                f"connection(s), {args.http_connections} HTTP connections"
            )
            command = [
                str(Path(sys.executable).with_name("iotsupport")),
                "simulate",
                "--server",
                f"http://127.0.0.1:{args.port}",
                "--devices-file",
                str(devices),
                "--devices",
                str(args.devices),
                "--model",
                "bench",
                "--mqtt-url",
                mqtt_url,
                "--mqtt-connections",
                str(args.mqtt_connections),
                "--poll-seconds",
                "600",
                "--rollout",
                "2.0.0",
                "--stages",
                args.stages,
                "--fail-rate",
                args.fail_rate,
            ]
            started = time.monotonic()
            simulation = subprocess.run(
                command,
                capture_output=True,
                text=True,
                check=False,
                env={"PATH": str(Path(sys.executable).parent), "DATABASE_URL": url},
            )
            wall = time.monotonic() - started
            print(simulation.stdout, end="")
            if simulation.returncode != 0:
                print(simulation.stderr, file=sys.stderr)
                raise SystemExit("the simulation failed")
            used = resource.getrusage(resource.RUSAGE_CHILDREN)
            server_cpu = cpu_seconds(pids) - server_cpu
            finished = FINISHED.search(simulation.stdout)
            if finished:
                print(
                    f"rollout {finished.group(1)} {float(finished.group(2)):.1f} s after its start"
                )
            print(f"simulator: {wall:.1f} s in all, CPU {used.ru_utime + used.ru_stime:.1f} s")
            print(f"server CPU during the simulation: {server_cpu:.1f} s (all processes)")
        finally:
            sampler.stop()
            peaks = server.memory_mb("VmHWM")
            server.stop()
            if broker is not None:
                broker.terminate()
                broker.wait(10)
        for pid, peak in peaks.items():
            role = "main" if pid == server.process.pid else "worker"
            print(
                f"{role} {pid}: RSS sampled max {sampler.highest.get(pid, 0):.0f} MB, "
                f"peak (VmHWM) {peak:.0f} MB"
            )


if __name__ == "__main__":
    main()
