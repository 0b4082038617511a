"""SQLite (the embedded default) under concurrent writers, side by side with a baseline.

    .venv/bin/python bench/embedded_db.py [--baseline main] [--files 500] [--saves 48]

For each tree (the baseline's checkout, see baseline.py, then this one): a fresh SQLite
database, `iotsupport serve` with the defaults (WORKERS=2, THREADS=4), `--saves`
configs; then an import of `--files` configs (sent as one part per file, which the
baseline's parser also reads) while `--saves` saves start at once, and one device
fetches its config every 20 ms all along. Prints how long the import took, how many
saves were refused (and with what), and the device fetch latencies during the run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from baseline import source_of

BOUNDARY = "bench-embedded-db"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def start(folder: Path, source: Path | None) -> tuple[subprocess.Popen[bytes], str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "PORT")}
    env |= {"WORKERS": "2", "THREADS": "4", "PORT": str(port := free_port())}
    if source is not None:
        env["PYTHONPATH"] = str(source / "src")
    iotsupport = str(Path(sys.executable).parent / "iotsupport")
    subprocess.run([iotsupport, "upgrade-db"], cwd=folder, env=env, check=True, capture_output=True)
    log = (folder / "serve.log").open("wb")
    server = subprocess.Popen(
        [iotsupport, "serve"], cwd=folder, env=env, stdout=log, stderr=log, start_new_session=True
    )
    base = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(f"{base}/api/health/live", timeout=1).status_code == 200:
                return server, base
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError("the server did not start: " + (folder / "serve.log").read_text()[-2000:])


def import_body(files: int) -> bytes:
    parts = []
    for index in range(files):
        content = {
            "deviceName": f"imported {index}",
            "wifi": {"ssid": "HomeLab-IoT", "channel": index % 13 + 1},
            "sensors": [{"id": n, "interval": 30 + n} for n in range(8)],
        }
        name = f"02-11-00-00-{index // 256:02x}-{index % 256:02x}.json"
        head = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{name}"'
        parts.append(f"{head}\r\n\r\n{json.dumps(content, indent=2)}\r\n".encode())
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def run(source: Path | None, files: int, saves: int) -> dict[str, object]:
    folder = Path(tempfile.mkdtemp(prefix="bench-embedded-db-"))
    server, base = start(folder, source)
    try:
        with httpx.Client(base_url=base, timeout=60) as client:
            ids = [
                client.post(
                    "/api/configs",
                    json={"mac_address": f"02:22:00:00:00:{index:02x}", "content": "{}"},
                ).json()["id"]
                for index in range(saves)
            ]
        device = "/api/configs/02:22:00:00:00:00.json"
        fetches: list[float] = []
        stop = threading.Event()

        def fetch_all_along() -> None:
            with httpx.Client(base_url=base, timeout=30) as fetcher:
                while not stop.is_set():
                    started = time.monotonic()
                    fetcher.get(device)
                    fetches.append(time.monotonic() - started)
                    time.sleep(0.02)

        def save(config_id: int) -> int:
            body = {"content": '{"saved": true}'}
            return httpx.put(f"{base}/api/configs/{config_id}", json=body, timeout=60).status_code

        fetcher = threading.Thread(target=fetch_all_along)
        fetcher.start()
        with ThreadPoolExecutor(max_workers=saves + 1) as pool:
            started = time.monotonic()
            importing = pool.submit(
                httpx.post,
                f"{base}/api/configs/import",
                content=import_body(files),
                headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
                timeout=300,
            )
            time.sleep(0.5)
            statuses = list(pool.map(save, ids))
            imported = importing.result()
            took = time.monotonic() - started
        stop.set()
        fetcher.join()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)
        shutil.rmtree(folder, ignore_errors=True)
    fetches.sort()
    return {
        "import": f"{imported.status_code}, {took:.1f} s",
        "saves refused": f"{sum(s != 200 for s in statuses)} of {saves} "
        f"{sorted({s for s in statuses if s != 200}) or ''}",
        "fetch p50": f"{1000 * statistics.median(fetches):.0f} ms",
        "fetch p99": f"{1000 * fetches[int(0.99 * (len(fetches) - 1))]:.0f} ms",
        "fetch max": f"{1000 * fetches[-1]:.0f} ms",
        "fetches": str(len(fetches)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", default="main", help="git revision to compare with")
    parser.add_argument(
        "--baseline-src",
        type=Path,
        help="or a prepared tree (a folder with src/), e.g. main with only the import's "
        "parser fixed: main itself refuses the import (413), so its writers never contend",
    )
    parser.add_argument("--files", type=int, default=500)
    parser.add_argument("--saves", type=int, default=48)
    args = parser.parse_args()
    baseline = args.baseline_src or source_of(args.baseline)
    results = {
        str(args.baseline_src or args.baseline): run(baseline, args.files, args.saves),
        "this tree": run(None, args.files, args.saves),
    }
    names = list(results)
    print(f"{'':<15}" + "".join(f"{name[-26:]:>28}" for name in names))
    for row in results[names[0]]:
        print(f"{row:<15}" + "".join(f"{results[name][row]!s:>28}" for name in names))


if __name__ == "__main__":
    main()
