"""Device health: what 1,000 devices that report health every minute cost the server.

Serves this tree with PostgreSQL (a database of --devices configs, each with a token)
and Mosquitto, and measures the CPU time of the server's processes (supervisor and
workers, from /proc) over --seconds in each of these, side by side:

- idle: no device sends anything (the background threads alone);
- mqtt: each device publishes a health JSON on iotsupport/devices/<mac>/health once a
  --interval (one paho client sends for all of them);
- http: each device fetches its config once a --interval with the health headers;
- http-plain: the same fetches without them (what the health headers add is the
  difference).

Every device fetches once before (its first check-in is written on the request path).

Run by hand, e.g.:
    .venv/bin/python bench/health.py --devices 1000 --seconds 120
The claim: health every minute from 1,000 devices costs the server < 5 % of one core.
"""

from __future__ import annotations

import json
import os
import threading
import time
import typing as t
import uuid
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from run import TOKENS
from run import Server
from run import bench_arguments
from run import mac_of
from run import recreate_database
from run import serve_options
from sqlalchemy import create_engine
from sqlalchemy import func
from sqlalchemy import select

from iotsupport.health.tables import HealthSample

HERE = Path(__file__).resolve().parent
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(server: Server) -> float:
    total = 0
    for pid in [server.process.pid, *server.worker_pids()]:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICKS


def report(index: int) -> dict[str, t.Any]:
    return {
        "reset_reason": "POWERON",
        "uptime_s": 3600 + index,
        "free_heap": 150_000 - index,
        "min_free_heap": 90_000,
        "wifi_rssi": -60,
        "metrics": {"loop_ms": 4.5, "queue": 3},
    }


def paced(count: int, interval: float, seconds: float, send: t.Callable[[int], None]) -> int:
    """Send for each device once per `interval`, spread evenly, for `seconds`."""
    started = time.monotonic()
    sent = 0
    while (now := time.monotonic() - started) < seconds:
        due = int(now / interval * count)
        while sent < due:
            send(sent % count)
            sent += 1
        time.sleep(0.01)
    return sent


def main() -> None:
    parser = bench_arguments(__doc__, "iotsupport_bench_health", 3297)
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--interval", type=float, default=60.0)
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--mqtt-url", default="mqtt://127.0.0.1:1883")
    parser.add_argument("--modes", default="idle,mqtt,http,http-plain")
    args = parser.parse_args()

    url = recreate_database(args.admin_url, args.database, args.devices)
    macs = [mac_of(index) for index in range(args.devices)]
    log = HERE / "results" / "health.log"
    log.parent.mkdir(exist_ok=True)
    log.write_text("")
    prefix = f"bench-{uuid.uuid4().hex[:8]}"  # its own shared-subscription group
    server = Server(
        url,
        args.port,
        serve_options(args),
        log,
        mqtt_url=args.mqtt_url,
        env={"MQTT_CLIENT_ID_PREFIX": prefix},
    )
    host, port = args.mqtt_url.removeprefix("mqtt://").split(":")
    publisher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{prefix}-devices")
    publisher.connect(host, int(port))
    publisher.loop_start()
    http = httpx.Client(base_url=f"http://127.0.0.1:{args.port}", timeout=10)
    lock = threading.Lock()

    def send_mqtt(index: int) -> None:
        body = json.dumps(report(index))
        publisher.publish(f"iotsupport/devices/{macs[index]}/health", body, qos=1)

    def fetch(index: int, health: bool) -> None:
        mac = macs[index]
        headers = {"Authorization": f"Bearer {TOKENS[mac]}", "X-Firmware-Version": "1.0.0"}
        if health:
            values = report(index)
            headers |= {
                "X-Reset-Reason": values["reset_reason"],
                "X-Uptime": str(values["uptime_s"]),
                "X-Free-Heap": str(values["free_heap"]),
                "X-Min-Free-Heap": str(values["min_free_heap"]),
                "X-Wifi-Rssi": str(values["wifi_rssi"]),
                "X-Metrics": "loop_ms=4.5,queue=3",
            }
        with lock:
            answer = http.get(f"/api/configs/{mac}.json", headers=headers)
        assert answer.status_code == 200, answer.text

    senders: dict[str, t.Callable[[int], None] | None] = {
        "idle": None,
        "mqtt": send_mqtt,
        "http": lambda index: fetch(index, True),
        "http-plain": lambda index: fetch(index, False),
    }
    engine = create_engine(url)
    try:
        time.sleep(3)  # the listener subscribes
        # Each device's first fetch writes its check-in and firmware on the request path:
        # not what is measured here.
        for index in range(args.devices):
            fetch(index, False)
        print(f"{args.devices} devices, one report each per {args.interval:g} s")
        for mode in args.modes.split(","):
            send = senders[mode]
            before, wall = cpu_seconds(server), time.monotonic()
            if send is None:
                time.sleep(args.seconds)
                sent = 0
            else:
                sent = paced(args.devices, args.interval, args.seconds, send)
            time.sleep(3)  # the last batch is written
            used, took = cpu_seconds(server) - before, time.monotonic() - wall
            with engine.connect() as connection:
                stored = connection.scalar(select(func.count()).select_from(HealthSample))
            print(
                f"{mode:11s} sent {sent:6d} in {took:5.1f} s: server CPU {used:6.2f} s"
                f" = {100 * used / took:5.2f} % of one core; samples stored so far {stored}"
            )
    finally:
        publisher.disconnect()
        publisher.loop_stop()
        http.close()
        engine.dispose()
        server.stop()


if __name__ == "__main__":
    main()
