"""Benchmark firmware downloads against nginx serving the same file from disk.

Builds a real ESP32 app image of about 1.5 MB (tests/esp_images.py), then, in one run:
nginx (/usr/sbin/nginx, a child process with its config in a temp folder) serves it
from disk; the server, under Granian with the workers and threads of `iotsupport
serve`, serves it as an asset (GET /api/assets/<file>, from the assets folder) and
from the database (releases.storage, through bench/release_app.py's bench-only route),
without and with the replica's cache, and as a release (uploaded through the API, then
GET /api/models/{code}/releases/{version}/image: the route devices use, with its
release lookup); wrk downloads it over 32 connections (one per wrk thread). Prints MB/s,
requests/s, p50/p99 and each row's share of nginx, and the server's peak memory per worker.

    .venv/bin/python bench/releases.py --help

Needs wrk, nginx and a PostgreSQL superuser URL (release files live in the database).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import typing as t
import urllib.request
from pathlib import Path

from images import cpu_seconds
from run import Figures
from run import Server
from run import add_database_options
from run import answers
from run import child_pids
from run import recreate_database
from run import run_wrk
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from iotsupport.releases.storage import store_file
from iotsupport.settings import Settings

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))  # the image builder of the tests
from esp_images import build_image  # noqa: E402
from release_app import STORED_FILE_PATH  # noqa: E402

NGINX = "/usr/sbin/nginx"
DEFAULT_CACHE_BYTES = Settings.model_fields["release_cache_max_bytes"].default
IMAGE_NAME = "firmware.bin"
IMAGE_CODE_BYTES = 1_440_000  # with the other segments: a 1.5 MB image


def upload_release(server_url: str, model: str, image: bytes) -> dict[str, t.Any]:
    """POST `image` as a release of `model` (as an admin: login is off here); its answer."""
    boundary = "----bench-release"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="fw.bin"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + image
        + f"\r\n--{boundary}--\r\n".encode()
    )
    request = urllib.request.Request(
        f"{server_url}/api/models/{model}/releases",
        data=body,
        method="POST",
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        answer: dict[str, t.Any] = json.loads(response.read())
    return answer


def create_model(server_url: str, code: str) -> None:
    request = urllib.request.Request(
        f"{server_url}/api/models",
        data=json.dumps({"code": code, "name": code.title(), "schema": {}}).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 201


def release_download_path(server_url: str, image: Path) -> str:
    """`/api/models/{code}/releases/{version}/image` of `image`, uploaded as a release."""
    create_model(server_url, "bench")
    release = upload_release(server_url, "bench", image.read_bytes())
    url: str = release["image_url"]
    return url


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class Nginx:
    """nginx in the foreground, serving `folder` on a free port, with a config of its own."""

    def __init__(self, folder: Path, workers: int, scratch: Path) -> None:
        self.port = free_port()
        config = scratch / "nginx.conf"
        config.write_text(
            f"""
worker_processes {workers};
daemon off;
pid {scratch}/nginx.pid;
error_log {scratch}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    client_body_temp_path {scratch}/body;
    proxy_temp_path {scratch}/proxy;
    fastcgi_temp_path {scratch}/fastcgi;
    uwsgi_temp_path {scratch}/uwsgi;
    scgi_temp_path {scratch}/scgi;
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{self.port};
        root {folder};
    }}
}}
"""
        )
        self.process = subprocess.Popen(
            [NGINX, "-p", str(scratch), "-c", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=(scratch / "nginx-stderr.log").open("ab"),
        )
        if not answers(f"http://127.0.0.1:{self.port}/{IMAGE_NAME}", seconds=10):
            self.stop()
            raise SystemExit(f"nginx did not come up; see {scratch}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def bench_server(
    args: argparse.Namespace, url: str, assets: Path, log: Path, cache_bytes: int
) -> Server:
    """Granian with the settings `iotsupport serve` uses, on the bench app (all routes)."""
    threads = args.threads or int(os.environ.get("THREADS", "4"))
    workers = args.workers or int(os.environ.get("WORKERS", "2"))
    command = [str(Path(sys.executable).with_name("granian")), "--interface", "wsgi"]
    command += ["--factory", "--working-dir", str(HERE), "--no-access-log"]
    command += ["--port", str(args.port), "--workers", str(workers)]
    command += ["--blocking-threads", str(threads), "release_app:create_bench_app"]
    metrics = tempfile.mkdtemp(prefix="iotsupport-bench-metrics-")
    env = {"ASSETS_DIR": str(assets), "THREADS": str(threads), "PROMETHEUS_MULTIPROC_DIR": metrics}
    env["RELEASE_CACHE_DIR"] = str(assets.parent / "release-cache")
    env["RELEASE_CACHE_MAX_BYTES"] = str(cache_bytes)
    return Server(url, args.port, [], log, env=env, command=command)


def download(name: str, port: int, path: str, folder: Path, args: argparse.Namespace) -> Figures:
    paths = folder / f"{name.replace(' ', '_').replace('/', '_')}.txt"
    paths.write_text(f"{path} -\n")
    run_wrk("warm-up", port, paths, 4, 1, 200)
    return run_wrk(name, port, paths, args.connections, args.seconds, 200)


def print_rows(rows: list[Figures], size: int) -> None:
    nginx = rows[0].megabytes_per_second
    print(
        f"{'scenario':<44} {'conn':>4} {'MB/s':>7} {'x nginx':>7} {'req/s':>6} "
        f"{'p50 ms':>7} {'p99 ms':>7} {'errors':>6}  connections served"
    )
    for row in rows:
        share = row.megabytes_per_second / nginx if nginx else 0
        print(
            f"{row.name:<44} {row.connections:>4} {row.megabytes_per_second:>7.0f} "
            f"{share:>7.2f} {row.requests_per_second:>6.0f} {row.p50_ms:>7.1f} "
            f"{row.p99_ms:>7.1f} {row.errors:>6}  {row.served}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_database_options(parser, "iotsupport_bench_releases")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int, help="default: WORKERS or 2")
    parser.add_argument("--threads", type=int, help="default: THREADS or 4")
    parser.add_argument("--port", type=int, default=3296)
    args = parser.parse_args()
    for tool in ("wrk", NGINX):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is missing (apt-get install wrk nginx)")

    results = HERE / "results"
    results.mkdir(exist_ok=True)
    log = results / "server-releases.log"
    log.write_text("")
    url = recreate_database(args.admin_url, args.database, 0)
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        folder.chmod(0o755)  # nginx workers may run as another user
        assets = folder / "assets"
        assets.mkdir(mode=0o755)
        image = assets / IMAGE_NAME
        image.write_bytes(build_image("esp32s3", code_bytes=IMAGE_CODE_BYTES))
        image.chmod(0o644)
        size = image.stat().st_size
        engine = create_engine(url)
        with Session(engine) as session, image.open("rb") as source:
            stored = store_file(session, source)
            session.commit()
        engine.dispose()
        assert stored.sha256 == hashlib.sha256(image.read_bytes()).hexdigest()
        print(
            f"ESP32-S3 app image of {size:,} bytes ({stored.chunk_count} chunks in the "
            f"database); wrk {args.seconds}s, {args.connections} connections, one per thread"
        )
        print(f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
        rows: list[Figures] = []

        cpu_per_download: list[str] = []

        def measure(name: str, port: int, path: str, pids: list[int]) -> None:
            used = cpu_seconds(pids)
            row = download(name, port, path, folder, args)
            used = cpu_seconds(pids) - used
            downloads = row.requests_per_second * args.seconds + 4  # and the warm-up's
            cpu_per_download.append(f"{1000 * used / downloads:.1f}")
            rows.append(row)

        scratch = folder / "nginx"
        scratch.mkdir()
        nginx = Nginx(assets, args.workers or int(os.environ.get("WORKERS", "2")), scratch)
        try:
            nginx_pids = [nginx.process.pid, *child_pids(nginx.process.pid)]
            measure("nginx, from disk (sendfile)", nginx.port, f"/{IMAGE_NAME}", nginx_pids)
        finally:
            nginx.stop()
        stored_path = STORED_FILE_PATH.format(sha256=stored.sha256)
        peaks: dict[int, float] = {}
        for cache_bytes in (0, DEFAULT_CACHE_BYTES):
            server = bench_server(args, url, assets, log, cache_bytes)
            try:
                pids = [server.process.pid, *server.worker_pids()]
                if not cache_bytes:
                    asset_path = f"/api/assets/{IMAGE_NAME}"
                    measure("GET /api/assets/<file>, from disk", args.port, asset_path, pids)
                    measure("database, each chunk from PostgreSQL", args.port, stored_path, pids)
                    continue
                measure("database, via the replica's cache", args.port, stored_path, pids)
                release_path = release_download_path(f"http://127.0.0.1:{args.port}", image)
                measure("GET /api/models/{code}/releases/{v}/image", args.port, release_path, pids)
            finally:
                peaks.update(server.memory_mb("VmHWM"))
                server.stop()
        print_rows(rows, size)
        # Independent of how busy the machine is (PostgreSQL's own share is not counted).
        print("server CPU ms per download (same order): " + ", ".join(cpu_per_download))
        memory = ", ".join(f"{mb:.0f}" for mb in peaks.values())
        print(f"peak RSS (VmHWM) MB per server process: {memory}")
        print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
