"""Memory of one bulk-change preview: many configs, a large patch (issue 20 item 7).

Runs the app in this process on a throwaway SQLite database, makes CONFIGS configs,
then previews one merge patch of PATCH_BYTES over all of them, and prints the peak
of Python allocations during the preview (tracemalloc) and the process's peak RSS.

    .venv/bin/python bench/bulk_preview_memory.py [--configs 180] [--patch-bytes 1000000]

To compare with the code before a change, run it with that tree's src first on the path:
    PYTHONPATH=/path/to/old/src .venv/bin/python bench/bulk_preview_memory.py
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
import tracemalloc
from pathlib import Path

from prometheus_client import CollectorRegistry
from sqlalchemy import create_engine

import iotsupport
from iotsupport import create_app
from iotsupport import migrate
from iotsupport.settings import Settings


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--configs", type=int, default=180)
    parser.add_argument("--patch-bytes", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'bench.db'}"
        settings = Settings(_env_file=None, database_url=url, mqtt_url=None)
        engine = create_engine(url)
        migrate.upgrade(engine)
        engine.dispose()
        app = create_app(settings, registry=CollectorRegistry())
        client = app.test_client()
        for index in range(args.configs):
            mac = ":".join(f"{(index >> shift) & 0xFF:02x}" for shift in (40, 32, 24, 16, 8, 0))
            body = {"mac_address": mac, "content": {"deviceName": f"d{index}", "n": index}}
            assert client.post("/api/configs", json=body).status_code == 201
        patch = {"blob": "x" * (args.patch_bytes - 20)}
        body = {"select": {"ids": list(range(1, args.configs + 1))}, "patch": patch}
        tracemalloc.start()
        started = time.monotonic()
        response = client.post("/api/configs/bulk", json=body)
        data = response.get_data()
        seconds = time.monotonic() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"code: {Path(iotsupport.__file__).parent}")
        print(
            f"{args.configs} configs, patch {args.patch_bytes} bytes: status "
            f"{response.status_code}, answer {len(data) / 1e6:.1f} MB, {seconds:.1f} s, "
            f"peak Python allocations {peak / 1e6:.0f} MB, peak RSS {rss:.0f} MB"
        )
        app.extensions["iotsupport"].database.dispose()


if __name__ == "__main__":
    main()
