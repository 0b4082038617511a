"""Benchmark the device endpoint and the admin reads as production runs them.

Starts `iotsupport serve` (Granian) on 127.0.0.1 against PostgreSQL with 200 and
with 10,000 configs of about 1 KB, each device with a credential whose token it
sends (`Authorization: Bearer`), drives it with wrk (one connection per wrk
thread, so each connection's responses are counted), and prints requests/s,
p50/p99 latency, whether every connection was served, the statements each
request sends to PostgreSQL, each worker's peak memory, and how many configs the
device scenarios left in_sync (device check-ins are recorded as in production).

    make bench                   # or: .venv/bin/python bench/run.py --help

Needs wrk (`apt-get install wrk`) and a PostgreSQL superuser URL.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import typing as t
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from baseline import source_of
from sqlalchemy import Engine
from sqlalchemy import create_engine
from sqlalchemy import insert
from sqlalchemy import make_url
from sqlalchemy import select
from sqlalchemy import text
from sqlalchemy.orm import Session

from iotsupport import migrate
from iotsupport.configs.checkins import count_by_sync_state
from iotsupport.configs.content import content_etag
from iotsupport.configs.content import derive_fields
from iotsupport.configs.content import parse_json_object
from iotsupport.configs.tables import DeviceConfig
from iotsupport.credentials.tables import DeviceCredential
from iotsupport.credentials.tokens import new_token
from iotsupport.credentials.tokens import token_hash
from iotsupport.db.base import utcnow

HERE = Path(__file__).resolve().parent
LUA = HERE / "wrk_paths.lua"
PG_LOG = Path("/var/log/postgresql")
# psycopg prepares repeated queries, which PostgreSQL logs as "execute <name>:".
STATEMENT = re.compile(r"LOG:  (statement|execute [^:]*):")


@dataclass(frozen=True)
class Figures:
    name: str
    connections: int
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    served: str
    errors: int
    megabytes_per_second: float = 0.0  # response bytes, headers included (10**6 bytes)
    busy: int = 0  # of the errors: 503 answers (the image proxy's conversion limit)


def sample_content(index: int) -> str:
    """A realistic config of about 1 KB."""
    document = {
        "deviceName": f"Sensor {index:05d}",
        "deviceEntityId": f"sensor.bench_{index:05d}",
        "enableOTA": index % 3 != 0,
        "mqttBaseTopic": f"home/bench/{index:05d}",
        "wifi": {"ssid": "homelab-iot", "powerSave": True, "hostname": f"esp32-{index:05d}"},
        "display": {"width": 320, "height": 240, "rotation": index % 4, "brightness": 70},
        "sensors": [
            {"type": "sht40", "address": "0x44", "intervalSeconds": 30},
            {"type": "bh1750", "address": "0x23", "intervalSeconds": 60},
        ],
        "pages": ["clock", "weather", "calendar", "energy", "cameras"],
        "notes": "x" * 420,
    }
    return json.dumps(document, indent=2)


def mac_of(index: int) -> str:
    return "02:00:" + ":".join(f"{(index >> shift) & 0xFF:02x}" for shift in (24, 16, 8, 0))


def recreate_database(admin_url: str, name: str, count: int) -> str:
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    engine = create_engine(url)
    fill(engine, count)
    engine.dispose()
    return url


def fill(engine: Engine, count: int) -> None:
    """Migrate an empty database and add `count` configs, each device with a token (kept
    in TOKENS for the devices of the benchmark)."""
    migrate.upgrade(engine)
    now = utcnow()
    rows = []
    for index in range(count):
        content = sample_content(index)
        derived = derive_fields(parse_json_object(content))
        rows.append(
            {
                "mac_address": mac_of(index),
                "content": content,
                "device_name": derived.device_name,
                "device_entity_id": derived.device_entity_id,
                "enable_ota": derived.enable_ota,
                "version": 1,
                "etag": content_etag(1, content),
                "created_at": now,
                "updated_at": now,
            }
        )
    with engine.begin() as connection:
        if rows:  # an empty list would insert one row of defaults
            connection.execute(insert(DeviceConfig), rows)
        ids = connection.execute(select(DeviceConfig.id, DeviceConfig.mac_address)).all()
        tokens = {mac: new_token() for _, mac in ids}
        if ids:
            connection.execute(
                insert(DeviceCredential),
                [
                    {
                        "config_id": config_id,
                        "token_hash": token_hash(tokens[mac]),
                        "issued_at": now,
                        "issued_by": "bench",
                    }
                    for config_id, mac in ids
                ],
            )
        connection.execute(text("ANALYZE device_configs"))
        connection.execute(text("ANALYZE device_credentials"))
    TOKENS.clear()
    TOKENS.update(tokens)


# Each device's token, by MAC: what the devices of the last database made send.
TOKENS: dict[str, str] = {}


def write_path_files(url: str, folder: Path) -> PathFiles:
    engine = create_engine(url)
    with engine.connect() as connection:
        rows = connection.execute(
            select(DeviceConfig.id, DeviceConfig.mac_address, DeviceConfig.etag)
        ).all()
    engine.dispose()
    device = folder / "device_paths.txt"
    anonymous = folder / "device_paths_without_token.txt"
    by_id = folder / "id_paths.txt"
    listing = folder / "list_paths.txt"
    device.write_text(
        "".join(
            f'/api/configs/{row.mac_address}.json "{row.etag}" {TOKENS[row.mac_address]}\n'
            for row in rows
        )
    )
    anonymous.write_text(
        "".join(f'/api/configs/{row.mac_address}.json "{row.etag}"\n' for row in rows)
    )
    by_id.write_text("".join(f"/api/configs/{row.id} -\n" for row in rows))
    listing.write_text("/api/configs -\n")
    return PathFiles(device, anonymous, by_id, listing)


@dataclass(frozen=True)
class PathFiles:
    device: Path  # "<path> <etag> <token>": each device sends its own token
    device_without_token: Path  # "<path> <etag>": for code from before device credentials
    by_id: Path
    listing: Path


def answers(url: str, seconds: float) -> bool:
    """Poll `url` until it answers or `seconds` have passed."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return True
        except OSError:
            time.sleep(0.1)
    return False


def serve_options(args: argparse.Namespace) -> list[str]:
    """`iotsupport serve` options for the --workers/--threads given on the command line."""
    return [
        f"--{name}={value}"
        for name in ("workers", "threads")
        if (value := getattr(args, name)) is not None
    ]


def child_pids(parent: int) -> list[int]:
    """The processes whose parent is `parent` (a server's workers)."""
    pids = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(
                line.split(":", 1) for line in status.read_text().splitlines() if ":" in line
            )
        except OSError:
            continue
        if fields.get("PPid", "").strip() == str(parent):
            pids.append(int(status.parent.name))
    return pids


class Server:
    """`iotsupport serve` in a child process, with its log in a file."""

    def __init__(
        self,
        url: str,
        port: int,
        options: list[str],
        log: Path,
        *,
        source: Path | None = None,
        env: dict[str, str] | None = None,
        mqtt_url: str | None = None,
        command: list[str] | None = None,
    ) -> None:
        """`source`: serve that checkout's code (bench/baseline.py) instead of this one;
        `mqtt_url`: publish change notifications there (off by default);
        `command`: run this instead of `iotsupport serve --port PORT OPTIONS`."""
        self.port = port
        self.log = log
        if command is None:
            command = [str(Path(sys.executable).with_name("iotsupport")), "serve"]
            command += ["--port", str(port), *options]
        env = {**os.environ, "DATABASE_URL": url, "LOG_LEVEL": "INFO", **(env or {})}
        env.pop("MQTT_URL", None)
        if mqtt_url is not None:
            env["MQTT_URL"] = mqtt_url
        if source is not None:
            # Ahead of the editable install's path entry, so the checkout's package wins.
            env["PYTHONPATH"] = str(source / "src")
        self.process = subprocess.Popen(
            command,
            env=env,
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        if not answers(f"http://127.0.0.1:{port}/api/health", seconds=20):
            self.stop()
            raise SystemExit(f"server did not come up; see {log}")
        self.wait_for_device_cache()

    def wait_for_device_cache(self, seconds: float = 30.0) -> None:
        """Until health says twenty times in a row that fetches read memory (each answer
        comes from some worker); code without the cache does not say it at all."""
        deadline = time.monotonic() + seconds
        in_a_row = 0
        while in_a_row < 20 and time.monotonic() < deadline:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/api/health") as answer:
                where = json.load(answer).get("device_cache")
            if where is None:
                return
            in_a_row = in_a_row + 1 if where == "memory" else 0
            time.sleep(0.05 if where == "memory" else 0.2)

    def worker_pids(self) -> list[int]:
        return child_pids(self.process.pid)

    def memory_mb(self, field: str) -> dict[int, float]:
        """VmHWM (the peak so far) or VmRSS (now) of the supervisor and each worker."""
        found = {}
        for pid in [self.process.pid, *self.worker_pids()]:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith(f"{field}:"):
                    found[pid] = int(line.split()[1]) / 1024
        return found

    def print_memory(self, field: str, label: str) -> None:
        print(
            f"{label} MB: "
            + ", ".join(
                f"{'main' if pid == self.process.pid else 'worker'} {pid}: {mb:.0f}"
                for pid, mb in self.memory_mb(field).items()
            )
        )

    def stop(self) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)


def run_wrk(
    name: str,
    port: int,
    paths: Path,
    connections: int,
    seconds: int,
    expected: int,
    conditional: bool = False,
) -> Figures:
    command = [
        "wrk",
        "-t",
        str(connections),
        "-c",
        str(connections),
        "-d",
        f"{seconds}s",
        "--timeout",
        "5s",
        "-s",
        str(LUA),
        f"http://127.0.0.1:{port}",
        "--",
        str(paths),
        str(expected),
    ] + (["conditional"] if conditional else [])
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    line = next(line for line in output.splitlines() if line.startswith("RESULT "))
    result: dict[str, t.Any] = json.loads(line.removeprefix("RESULT "))
    return Figures(
        name=name,
        connections=connections,
        requests_per_second=result["requests"] / (result["duration_us"] / 1e6),
        p50_ms=result["p50_us"] / 1000,
        p99_ms=result["p99_us"] / 1000,
        served=(
            f"{result['served_connections']}/{result['connections']} "
            f"(min {result['min_per_connection']}, max {result['max_per_connection']})"
        ),
        errors=result["unexpected_status"] + result["socket_errors"],
        megabytes_per_second=result["bytes"] / result["duration_us"],
        busy=result.get("busy", 0),
    )


def statements_per_request(
    port: int, admin_url: str, database: str, paths: dict[str, tuple[str, dict[str, str]]]
) -> dict[str, float]:
    """Count what PostgreSQL logs for a batch of each request (log_statement=all)."""
    logs = sorted(PG_LOG.glob("postgresql-*-main.log")) if PG_LOG.exists() else []
    if not logs:
        return {}
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    counts = {}
    batch = 50
    for label, (path, headers) in paths.items():
        offset = logs[-1].stat().st_size
        for _ in range(batch):
            request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers)
            try:
                urllib.request.urlopen(request, timeout=5).read()
            except urllib.error.HTTPError as exc:
                if exc.code != 304:
                    raise
        time.sleep(0.5)
        with logs[-1].open("rb") as handle:
            handle.seek(offset)
            new = handle.read().decode(errors="replace")
        hits = [
            line
            for line in new.splitlines()
            if f"@{database} LOG:  " in line and STATEMENT.search(line)
        ]
        counts[label] = len(hits) / batch
    admin.dispose()
    return counts


def print_checkins(url: str) -> None:
    """Shows that the device scenarios were recorded as check-ins (in the background)."""
    engine = create_engine(url)
    with Session(engine) as session:
        counts = count_by_sync_state(session)
    engine.dispose()
    print(
        "configs by sync_state after the run: " + ", ".join(f"{k} {v}" for k, v in counts.items())
    )


def print_table(rows: list[Figures]) -> None:
    print(
        f"{'scenario':<44} {'conn':>4} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'errors':>6} {'503':>6}  connections served"
    )
    for row in rows:
        print(
            f"{row.name:<44} {row.connections:>4} {row.requests_per_second:>8.0f} "
            f"{row.p50_ms:>7.2f} {row.p99_ms:>7.2f} {row.errors:>6} {row.busy:>6}  {row.served}"
        )


def device_scenarios(
    args: argparse.Namespace, device: Path, connection_counts: list[int]
) -> list[Figures]:
    """The device endpoint, full fetches then 304s, at each connection count."""
    run_wrk("warm-up", args.port, device, 8, 2, 200)
    rows = [
        run_wrk("device GET /api/configs/{mac}.json", args.port, device, n, args.seconds, 200)
        for n in connection_counts
    ]
    # (With a token from device_paths.txt; without one for a --baseline before credentials.)
    rows += [
        run_wrk(
            "device, If-None-Match hit (304)",
            args.port,
            device,
            n,
            args.seconds,
            304,
            conditional=True,
        )
        for n in connection_counts
    ]
    return rows


def print_ratios(before: list[Figures], after: list[Figures]) -> None:
    """This checkout's throughput as a share of the baseline's, scenario by scenario."""
    for old, new in zip(before, after, strict=False):
        share = new.requests_per_second / old.requests_per_second if old.requests_per_second else 0
        print(
            f"{new.name:<44} {new.connections:>4}  {old.requests_per_second:>7.0f} -> "
            f"{new.requests_per_second:>7.0f} req/s ({share:.0%} of the baseline)"
        )


def add_database_options(parser: argparse.ArgumentParser, database: str) -> None:
    """--admin-url (a PostgreSQL superuser) and --database (recreated by each run)."""
    parser.add_argument(
        "--admin-url",
        default=os.environ.get(
            "BENCH_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
        ),
    )
    parser.add_argument("--database", default=database)


def bench_arguments(description: str | None, database: str, port: int) -> argparse.ArgumentParser:
    """The options every benchmark here shares: database, server processes, port."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_database_options(parser, database)
    parser.add_argument("--workers", type=int, help="default: the server's (WORKERS)")
    parser.add_argument("--threads", type=int, help="default: the server's (THREADS)")
    parser.add_argument("--port", type=int, default=port)
    return parser


def main() -> None:
    parser = bench_arguments(__doc__, "iotsupport_bench", 3299)
    parser.add_argument("--sizes", default="200,10000")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", default="32,200")
    parser.add_argument(
        "--baseline",
        metavar="REV",
        help="also run the device scenarios against this commit's code, same data, same run",
    )
    parser.add_argument(
        "--baseline-without-tokens",
        action="store_true",
        help="the baseline predates device credentials (e.g. eb4b8d1): its devices send none",
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: apt-get install wrk")

    results = HERE / "results"
    results.mkdir(exist_ok=True)
    log = results / "server.log"
    log.write_text("")
    connection_counts = [int(value) for value in args.connections.split(",")]
    options = serve_options(args)
    print(
        f"server: iotsupport serve {' '.join(options) or '(default workers and threads)'}; "
        f"wrk {args.seconds}s per scenario, one connection per wrk thread"
    )
    for size in [int(value) for value in args.sizes.split(",")]:
        print(f"\n== {size} configs (~{len(sample_content(0))} bytes each) ==")
        url = recreate_database(args.admin_url, args.database, size)
        with tempfile.TemporaryDirectory() as folder:
            files = write_path_files(url, Path(folder))
            device, by_id, listing = files.device, files.by_id, files.listing
            first_device, first_etag, first_token = device.read_text().splitlines()[0].split()
            authorized = {"Authorization": f"Bearer {first_token}"}
            admin = create_engine(args.admin_url, isolation_level="AUTOCOMMIT")
            with admin.connect() as connection:
                connection.execute(
                    text(f"ALTER DATABASE \"{args.database}\" SET log_statement = 'all'")
                )
            server = Server(url, args.port, options, log)
            per_request = statements_per_request(
                args.port,
                args.admin_url,
                args.database,
                {
                    "device 200": (first_device, authorized),
                    "device 304": (first_device, {"If-None-Match": first_etag, **authorized}),
                    "list": ("/api/configs", {}),
                    "by id": ("/api/configs/1", {}),
                },
            )
            server.stop()
            with admin.connect() as connection:
                connection.execute(text(f'ALTER DATABASE "{args.database}" RESET log_statement'))
            admin.dispose()
            if per_request:
                print(
                    "statements sent to PostgreSQL per request: "
                    + ", ".join(f"{label} {count:g}" for label, count in per_request.items())
                )

            if args.baseline:
                print(f"-- baseline {args.baseline} (the code before the change), same data --")
                before = Server(url, args.port, options, log, source=source_of(args.baseline))
                try:
                    # Code from before credentials had no tokens: its devices send none.
                    baseline_paths = (
                        files.device_without_token if args.baseline_without_tokens else device
                    )
                    baseline_rows = device_scenarios(args, baseline_paths, connection_counts)
                finally:
                    before.stop()
                print_table(baseline_rows)
                print("-- this checkout --")
            server = Server(url, args.port, options, log)
            try:
                rows = device_scenarios(args, device, connection_counts)
                server.print_memory("VmHWM", "peak RSS after the device scenarios")
                rows.append(
                    run_wrk("GET /api/configs/{id}", args.port, by_id, 32, args.seconds, 200)
                )
                rows.append(
                    run_wrk(
                        "GET /api/configs (whole list)", args.port, listing, 1, args.seconds, 200
                    )
                )
                rows.append(
                    run_wrk(
                        "GET /api/configs (whole list)", args.port, listing, 4, args.seconds, 200
                    )
                )
                print_table(rows)
                if args.baseline:
                    print_ratios(baseline_rows, rows)
                print_checkins(url)
                server.print_memory("VmHWM", "peak RSS after the admin reads too")
            finally:
                server.stop()


if __name__ == "__main__":
    main()
