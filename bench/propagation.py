"""How long a committed change takes to reach every worker of every replica, under load.

Two `iotsupport serve` replicas (two workers each) on one PostgreSQL database, both
under wrk load on the device endpoint. Changes are made through the API of one replica,
alternately; a subscriber of the devices' retained MQTT topics fetches from the OTHER
replica the moment each announcement arrives. The announcement goes out only once every
listening worker has applied the commit (device_cache/postgres.py), so the time from
the request to the announcement bounds the propagation; the fetch shows it held.

    .venv/bin/python bench/propagation.py --changes 2000

Needs wrk, PostgreSQL and an MQTT broker (MQTT_URL, default mqtt://127.0.0.1:1883).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from prometheus_client.parser import text_string_to_metric_families
from run import LUA
from run import TOKENS
from run import Server
from run import bench_arguments
from run import recreate_database
from run import write_path_files
from sqlalchemy import create_engine
from sqlalchemy import select

from iotsupport.configs.tables import DeviceConfig

HERE = Path(__file__).resolve().parent
CHANGED_DEVICES = 50


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


class Announcements:
    def __init__(self, mqtt_url: str, macs: list[str]) -> None:
        self.arrived: dict[tuple[str, int], float] = {}
        self.fetch_from: dict[str, tuple[str, str]] = {}  # mac -> (server, token)
        self.stale = 0
        self.checked = 0
        self.http = httpx.Client(timeout=10)
        self.condition = threading.Condition()
        parts = urlsplit(mqtt_url)
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.client.connect(parts.hostname or "127.0.0.1", parts.port or 1883)
        self.client.subscribe([(f"iotsupport/devices/{mac}/desired", 1) for mac in macs])
        self.client.loop_start()
        time.sleep(1)  # the subscription, and the retained messages it brings

    def _on_message(self, _c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        arrived = time.perf_counter()
        if not message.payload:
            return
        mac = message.topic.split("/")[2]
        payload = json.loads(message.payload)
        if mac in self.fetch_from:
            server, token = self.fetch_from[mac]
            response = self.http.get(
                f"{server}/api/configs/{mac}.json", headers={"Authorization": f"Bearer {token}"}
            )
            served = response.headers.get("ETag", "").strip('"')
            with self.condition:
                self.checked += 1
                self.stale += served != payload["config_etag"]
        with self.condition:
            self.arrived[(mac, payload["config_version"])] = arrived
            self.condition.notify_all()

    def wait_for(self, mac: str, version: int) -> float | None:
        with self.condition:
            self.condition.wait_for(lambda: (mac, version) in self.arrived, timeout=10)
            return self.arrived.get((mac, version))


def settle_buckets(bases: list[str]) -> dict[float, float]:
    """The settle histograms of both replicas (all workers), added up: bound -> count."""
    buckets: dict[float, float] = {}
    for base in bases:
        text = httpx.get(f"{base}/metrics", timeout=10).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "iotsupport_device_cache_settle_seconds_bucket":
                    bound = float(sample.labels["le"])
                    buckets[bound] = buckets.get(bound, 0.0) + sample.value
    return buckets


def main() -> None:
    parser = bench_arguments(__doc__, "iotsupport_bench", 3299)
    parser.add_argument("--changes", type=int, default=2000)
    parser.add_argument("--configs", type=int, default=1000)
    parser.add_argument("--mqtt-url", default="mqtt://127.0.0.1:1883")
    parser.add_argument("--connections", type=int, default=32, help="wrk, per replica")
    args = parser.parse_args()

    url = recreate_database(args.admin_url, args.database, args.configs)
    engine = create_engine(url)
    with engine.connect() as connection:
        rows = connection.execute(
            select(DeviceConfig.id, DeviceConfig.mac_address, DeviceConfig.version).limit(
                CHANGED_DEVICES
            )
        ).all()
    engine.dispose()
    log = HERE / "results" / "propagation.log"
    log.parent.mkdir(exist_ok=True)
    log.write_text("")
    ports = [args.port, args.port + 1]
    servers = [Server(url, port, [], log, mqtt_url=args.mqtt_url) for port in ports]
    bases = [f"http://127.0.0.1:{port}" for port in ports]
    announcements = Announcements(args.mqtt_url, [row.mac_address for row in rows])
    loads: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as folder:
        paths = write_path_files(url, Path(folder)).device
        for port in ports:  # until the changes are done (killed below)
            loads.append(
                subprocess.Popen(
                    ["wrk", "-t", str(args.connections), "-c", str(args.connections)]
                    + ["-d", "3600s", "-s", str(LUA), f"http://127.0.0.1:{port}"]
                    + ["--", str(paths), "200"],
                    stdout=subprocess.DEVNULL,
                )
            )
        time.sleep(2)
        bounds: list[float] = []
        answers: list[float] = []
        versions = {row.mac_address: row.version for row in rows}
        try:
            with httpx.Client(timeout=10) as http:
                for change in range(args.changes):
                    row = rows[change % len(rows)]
                    writer, reader = bases[change % 2], bases[1 - change % 2]
                    announcements.fetch_from[row.mac_address] = (
                        reader,
                        TOKENS[row.mac_address],
                    )
                    with announcements.condition:  # a retained one of an earlier run
                        announcements.arrived.pop(
                            (row.mac_address, versions[row.mac_address] + 1), None
                        )
                    started = time.perf_counter()
                    response = http.put(
                        f"{writer}/api/configs/{row.id}",
                        json={"content": {"change": change, "pad": "x" * 900}},
                    )
                    answered = time.perf_counter()
                    response.raise_for_status()
                    versions[row.mac_address] += 1
                    arrived = announcements.wait_for(row.mac_address, versions[row.mac_address])
                    if arrived is None:
                        raise SystemExit(f"no announcement for change {change}")
                    bounds.append(arrived - started)
                    answers.append(answered - started)
            settles = settle_buckets(bases)
        finally:
            for load in loads:
                load.kill()
                load.wait()
            for server in servers:
                server.stop()
    print(
        f"{args.changes} changes through the API of two replicas (2 workers each) under wrk "
        f"load ({args.connections} connections each); {args.configs} configs"
    )
    print("from the request to the MQTT announcement (every worker has applied it by then):")
    for name, values in (("announcement", bounds), ("API answer", answers)):
        print(
            f"  {name:<13} p50 {percentile(values, 0.5) * 1000:6.1f} ms  "
            f"p99 {percentile(values, 0.99) * 1000:6.1f} ms  "
            f"p99.9 {percentile(values, 0.999) * 1000:6.1f} ms  "
            f"max {max(values) * 1000:6.1f} ms  mean {statistics.fmean(values) * 1000:5.1f} ms"
        )
    total = max(settles.values(), default=0)
    if total:
        within = next(bound for bound, count in sorted(settles.items()) if count >= 0.999 * total)
        median = next(bound for bound, count in sorted(settles.items()) if count >= 0.5 * total)
        print(
            f"server side, from commit to every worker applied (settle, {total:g} commits): "
            f"p50 <= {median * 1000:g} ms, p99.9 <= {within * 1000:g} ms (histogram buckets)"
        )
    print(
        f"fetched from the other replica the moment each arrived: {announcements.checked}, "
        f"stale {announcements.stale}"
    )


if __name__ == "__main__":
    main()
