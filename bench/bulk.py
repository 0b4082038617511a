"""Benchmark a bulk change of many configs: preview and apply, with history and MQTT on.

Fills a PostgreSQL database with `--configs` configs of about 1 KB (bench/run.py's
sample) in one device model whose schema covers them, starts `iotsupport serve`
publishing to a throwaway Mosquitto (or `--mqtt-url`), and times, over HTTP:
the preview (`dry_run`) of a merge patch over the whole model, its apply with the
preview's ETags, and its undo. A subscriber counts the MQTT messages (one per
changed config). Prints each worker's peak memory.

    .venv/bin/python bench/bulk.py [--configs 1000] [--rounds 3]

The device endpoint against the code before device models: bench/run.py --baseline REV.
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
import typing as t
import urllib.request
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from run import Server
from run import bench_arguments
from run import recreate_database
from run import serve_options
from sqlalchemy import create_engine
from sqlalchemy import text

HERE = Path(__file__).resolve().parent
SCHEMA = {
    "type": "object",
    "required": ["deviceName", "wifi", "display"],
    "properties": {
        "deviceName": {"type": "string", "minLength": 1, "maxLength": 64},
        "deviceEntityId": {"type": "string", "pattern": "^[a-z_]+\\.[a-z0-9_]+$"},
        "enableOTA": {"type": "boolean"},
        "mqttBaseTopic": {"type": "string"},
        "mqttBroker": {"type": "string", "format": "ipv4"},
        "wifi": {
            "type": "object",
            "required": ["ssid"],
            "properties": {"ssid": {"type": "string"}, "powerSave": {"type": "boolean"}},
        },
        "display": {
            "type": "object",
            "properties": {
                "width": {"type": "integer", "minimum": 1},
                "height": {"type": "integer", "minimum": 1},
                "rotation": {"enum": [0, 1, 2, 3]},
                "brightness": {"type": "integer", "minimum": 0, "maximum": 100},
            },
        },
        "sensors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["type"],
                "properties": {"intervalSeconds": {"type": "integer", "minimum": 1}},
            },
        },
        "pages": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
    },
}


def call(port: int, method: str, path: str, body: t.Any = None) -> tuple[int, t.Any, float]:
    """One JSON request; (status, answer, seconds)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=data,
        method=method,
        headers={"Content-Type": "application/json"},
    )
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            payload = response.read()
            status = response.status
    except urllib.error.HTTPError as exc:
        payload = exc.read()
        status = exc.code
    return status, json.loads(payload or b"null"), time.perf_counter() - start


class Counter:
    """Counts the config notifications that reach a subscriber."""

    def __init__(self, host: str, port: int) -> None:
        self.count = 0
        self._lock = threading.Condition()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_message = self._arrived
        self.client.on_subscribe = lambda *args: self._subscribed.set()
        self.client.connect(host, port)
        self.client.subscribe("iotsupport/updates/configs", qos=1)
        self.client.loop_start()
        if not self._subscribed.wait(5):
            raise SystemExit("the MQTT subscription was not acknowledged")

    def _arrived(self, *_args: object) -> None:
        with self._lock:
            self.count += 1
            self._lock.notify_all()

    def wait_for(self, count: int, seconds: float) -> int:
        deadline = time.monotonic() + seconds
        with self._lock:
            while self.count < count and time.monotonic() < deadline:
                self._lock.wait(deadline - time.monotonic())
            return self.count

    def reset(self) -> None:
        with self._lock:
            self.count = 0

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def start_mosquitto(folder: Path) -> tuple[subprocess.Popen[bytes], int]:
    """A throwaway broker on a free port, so nothing else on a shared broker is counted."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = folder / "mosquitto.conf"
    config.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    process = subprocess.Popen(
        ["mosquitto", "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process, port
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise SystemExit("mosquitto did not start")


def put_in_model(url: str, model_code: str) -> None:
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(
            text(
                "UPDATE device_configs SET schema_valid = true, model_id = "
                "(SELECT id FROM device_models WHERE code = :code)"
            ),
            {"code": model_code},
        )
    engine.dispose()


def main() -> None:
    parser = bench_arguments(__doc__, "iotsupport_bench_bulk", 3298)
    parser.add_argument("--configs", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3, help="preview/apply/undo rounds")
    parser.add_argument("--mqtt-url", help="use this broker instead of a throwaway mosquitto")
    args = parser.parse_args()

    results = HERE / "results"
    results.mkdir(exist_ok=True)
    log = results / "bulk-server.log"
    log.write_text("")
    with tempfile.TemporaryDirectory() as folder:
        broker = None
        if args.mqtt_url:
            mqtt_url = args.mqtt_url
        else:
            if shutil.which("mosquitto") is None:
                raise SystemExit("mosquitto is missing (apt-get install mosquitto) or --mqtt-url")
            broker, broker_port = start_mosquitto(Path(folder))
            mqtt_url = f"mqtt://127.0.0.1:{broker_port}"
        host_port = mqtt_url.split("://", 1)[1]
        host, _, port = host_port.partition(":")
        url = recreate_database(args.admin_url, args.database, args.configs)
        counter = Counter(host, int(port or 1883))
        server = Server(url, args.port, serve_options(args), log, mqtt_url=mqtt_url)
        try:
            model = {"code": "bench", "name": "Bench sensor", "schema": SCHEMA}
            status, answer, _ = call(args.port, "POST", "/api/models", model)
            assert status == 201, answer
            put_in_model(url, "bench")
            options = " ".join(serve_options(args)) or "(default workers and threads)"
            print(f"{args.configs} configs of ~1 KB, one model; server {options}; history, MQTT on")
            select = {"model": "bench"}
            timings: dict[str, list[float]] = {"preview": [], "apply": [], "undo": []}
            for round_ in range(args.rounds):
                patch = {"mqttBroker": f"10.0.{round_}.5", "display": {"brightness": 40 + round_}}
                body = {"select": select, "patch": patch, "dry_run": True}
                status, preview, seconds = call(args.port, "POST", "/api/configs/bulk", body)
                assert status == 200 and preview["changed"] == args.configs, preview
                timings["preview"].append(seconds)
                expect = {str(change["id"]): change["etag"] for change in preview["changes"]}
                counter.reset()
                body = {"select": select, "patch": patch, "dry_run": False, "expect": expect}
                status, applied, seconds = call(args.port, "POST", "/api/configs/bulk", body)
                assert status == 201 and len(applied["changed"]) == args.configs, applied
                timings["apply"].append(seconds)
                received = counter.wait_for(args.configs, 30)
                print(f"round {round_ + 1}: MQTT messages received after apply: {received}")
                counter.reset()
                status, undone, seconds = call(
                    args.port, "POST", f"/api/change-sets/{applied['change_set']}/undo", {}
                )
                assert status == 200 and len(undone["undone"]) == args.configs, undone
                timings["undo"].append(seconds)
                counter.wait_for(args.configs, 30)
            for name, values in timings.items():
                print(
                    f"{name:<8} median {statistics.median(values):6.2f} s  "
                    f"(min {min(values):.2f}, max {max(values):.2f}, {len(values)} runs)"
                )
            server.print_memory("VmHWM", "peak RSS (VmHWM)")
        finally:
            server.stop()
            counter.close()
            if broker is not None:
                broker.terminate()
                broker.wait(10)


if __name__ == "__main__":
    main()
