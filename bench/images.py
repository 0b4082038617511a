"""Benchmark the LVGL image proxy as production runs it.

Serves a 1920x1080 JPEG (a camera snapshot) from a separate `python -m
http.server` process, starts `iotsupport serve` (Granian) on a SQLite
database, and drives GET /api/images/lvgl with wrk, converting the JPEG to
fit 320x240 in ARGB8888 and in RGB565. Prints conversions/s, p50/p99 and the
machine's load average before and after (the figures mean little on a busy
machine).

    .venv/bin/python bench/images.py      # --help for the knobs

Needs wrk (`apt-get install wrk`).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlencode

from PIL import Image
from PIL import ImageDraw
from PIL import ImageFilter
from run import Figures
from run import Server
from run import answers
from run import print_table
from run import run_wrk
from run import serve_options
from sqlalchemy import create_engine

from iotsupport import migrate

HERE = Path(__file__).resolve().parent


def snapshot(path: Path) -> int:
    """A 1920x1080 JPEG with the detail and size of a real camera frame."""
    size = (1920, 1080)
    noise = Image.effect_noise(size, 48).filter(ImageFilter.GaussianBlur(1))
    base = Image.merge(
        "RGB",
        (
            Image.linear_gradient("L").resize(size),
            noise,
            Image.radial_gradient("L").resize(size),
        ),
    )
    draw = ImageDraw.Draw(base)
    for step in range(40):
        x, y = (step * 173) % 1900, (step * 97) % 1060
        draw.rectangle((x, y, x + 120, y + 60), outline=(255, 255, 255), width=3)
    base.save(path, "JPEG", quality=85)
    return path.stat().st_size


def cpu_seconds(pids: list[int]) -> float:
    """User plus system CPU time the processes have used so far."""
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", default="4,16")
    parser.add_argument("--workers", type=int, help="default: the server's (WORKERS)")
    parser.add_argument("--threads", type=int, help="default: the server's (THREADS)")
    parser.add_argument("--port", type=int, default=3298)
    parser.add_argument("--upstream-port", type=int, default=3297)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: apt-get install wrk")

    results = HERE / "results"
    results.mkdir(exist_ok=True)
    log = results / "server-images.log"
    log.write_text("")
    options = serve_options(args)
    with tempfile.TemporaryDirectory() as folder_name:
        folder = Path(folder_name)
        size = snapshot(folder / "snapshot.jpg")
        database = f"sqlite:///{folder / 'bench.db'}"
        engine = create_engine(database)
        migrate.upgrade(engine)
        engine.dispose()
        upstream = subprocess.Popen(
            [sys.executable, "-m", "http.server", str(args.upstream_port)]
            + ["--bind", "127.0.0.1", "--directory", str(folder)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        image_url = f"http://127.0.0.1:{args.upstream_port}/snapshot.jpg"
        try:
            if not answers(image_url, seconds=10):
                raise SystemExit(f"{image_url} did not answer")
            paths = {}
            for color_format in ("ARGB8888", "RGB565"):
                query = urlencode(
                    {"url": image_url, "width": 320, "height": 240, "format": color_format}
                )
                paths[color_format] = folder / f"{color_format}.txt"
                paths[color_format].write_text(f"/api/images/lvgl?{query} -\n")
            print(
                f"1920x1080 JPEG of {size // 1024} KiB -> fit 320x240; server: iotsupport serve "
                f"{' '.join(options) or '(default workers and threads)'}; "
                f"wrk {args.seconds}s per scenario"
            )
            print(f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
            server = Server(database, args.port, options, log)
            try:
                run_wrk("warm-up", args.port, paths["ARGB8888"], 2, 2, 200)
                rows: list[Figures] = []
                cpu_per_conversion = []
                pids = [server.process.pid, *server.worker_pids()]
                for connections in [int(value) for value in args.connections.split(",")]:
                    for color_format, path in paths.items():
                        used = cpu_seconds(pids)
                        row = run_wrk(
                            f"LVGL {color_format} 320x180 from 1920x1080 JPEG",
                            args.port,
                            path,
                            connections,
                            args.seconds,
                            200,
                        )
                        conversions = row.requests_per_second * args.seconds
                        used = cpu_seconds(pids) - used
                        cpu_per_conversion.append(f"{1000 * used / max(conversions, 1):.1f}")
                        rows.append(row)
                print_table(rows)
                # Independent of how busy the machine is: what one conversion costs the server.
                print("server CPU ms per conversion (same order): " + ", ".join(cpu_per_conversion))
            finally:
                server.stop()
            print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
        finally:
            upstream.terminate()
            upstream.wait(timeout=10)


if __name__ == "__main__":
    main()
