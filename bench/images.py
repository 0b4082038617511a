"""Benchmark the LVGL image proxy as production runs it.

Serves images from a separate `python -m http.server` process, starts
`iotsupport serve` (Granian) on a SQLite database, and drives GET
/api/images/lvgl with wrk.

- throughput: a 1920x1080 JPEG (a camera snapshot) converted to fit 320x240
  in ARGB8888 and in RGB565: conversions/s, p50/p99, server CPU per conversion.
- worst-case: eight requests at once, again and again, for the worst images a
  stranger can send, while a second wrk fetches a device config: each worker's
  peak memory (VmHWM, a fresh server per image), its memory once the load has
  stopped, and the device endpoint's p99 meanwhile (and without the load, for
  comparison). The images: a 9000x9000 PNG of about 300 KB (81 million pixels,
  refused from its header), and the largest PNG the default limit admits
  (4096x2048, with transparency); then what the decoder holds (issue 20): a
  13000x13000 progressive JPEG of one colour (4:4:4, about 1 GB of DCT
  coefficients in libjpeg, refused from its header), a 2500x2500 WebP (16 bytes
  per pixel in libwebp and Pillow, refused), a PNG with 60 MB of compressed text
  (refused), and the largest progressive JPEG (4400x4400 4:2:0) and WebP
  (2000x2000) the default limit admits.

`--baseline REV` serves that revision's code instead (bench/baseline.py), with the
same images, for a before/after comparison; there "refused" images may answer 200
(counted under errors): the memory lines are the point.

Prints the machine's load average before and after: the figures mean little on
a busy machine.

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
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlencode

from baseline import source_of
from PIL import Image
from PIL import ImageDraw
from PIL import ImageFilter
from PIL import PngImagePlugin
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


def posters(folder: Path) -> dict[str, Path]:
    """The worst images: one refused from its header, the largest one admitted."""
    huge = folder / "poster-9000.png"
    Image.new("RGB", (9000, 9000), (30, 60, 90)).save(huge, "PNG")
    largest = folder / "poster-4096x2048.png"
    image = Image.merge(
        "RGBA",
        (
            Image.linear_gradient("L").resize((4096, 2048)),
            Image.effect_noise((4096, 2048), 24),
            Image.radial_gradient("L").resize((4096, 2048)),
            Image.linear_gradient("L").rotate(90).resize((4096, 2048)),
        ),
    )
    image.save(largest, "PNG", compress_level=1)
    return {
        "9000x9000 PNG (refused)": huge,
        "4096x2048 RGBA PNG": largest,
        **decoder_posters(folder),
    }


def decoder_posters(folder: Path) -> dict[str, Path]:
    """Images whose decoder holds more than their pixels (issue 20)."""
    colour = (200, 30, 90)
    progressive = folder / "progressive-13000.jpg"
    flat = Image.new("RGB", (13000, 13000), colour)
    flat.save(progressive, "JPEG", progressive=True, subsampling=0, quality=90)
    del flat
    webp = folder / "webp-2500.webp"
    Image.new("RGB", (2500, 2500), colour).save(webp, "WEBP", lossless=True)
    text = folder / "text-60mb.png"
    info = PngImagePlugin.PngInfo()
    for number in range(60):
        info.add_text(f"note{number}", "a" * 1_000_000, zip=True)
    Image.new("RGB", (4000, 1000), colour).save(text, "PNG", pnginfo=info)
    admitted_jpeg = folder / "progressive-4400.jpg"
    Image.new("RGB", (4400, 4400), colour).save(
        admitted_jpeg, "JPEG", progressive=True, subsampling=2
    )
    admitted_webp = folder / "webp-2000.webp"
    Image.new("RGB", (2000, 2000), colour).save(admitted_webp, "WEBP", lossless=True)
    return {
        "13000x13000 progressive JPEG 4:4:4 (refused)": progressive,
        "2500x2500 WebP (refused)": webp,
        "PNG with 60 MB of compressed text (refused)": text,
        "4400x4400 progressive JPEG 4:2:0": admitted_jpeg,
        "2000x2000 WebP": admitted_webp,
    }


def rss_mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def mbs(values: list[float]) -> str:
    return " / ".join(f"{value:.0f}" for value in values)


def is_worker(pid: int) -> bool:
    """A Granian worker, not multiprocessing's resource tracker beside them."""
    try:
        return b"resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def create_device(port: int) -> str:
    """One device config; the path wrk fetches it by."""
    import httpx

    mac = "24:0a:c4:99:00:01"
    body = {"mac_address": mac, "content": {"deviceName": "bench", "padding": "x" * 900}}
    response = httpx.post(f"http://127.0.0.1:{port}/api/configs", json=body, timeout=10)
    if response.status_code != 409:  # made already, by the previous scenario's server
        response.raise_for_status()
    return f"/api/configs/{mac}.json"


def worst_case(args: argparse.Namespace, folder: Path, options: list[str], log: Path) -> None:
    database = f"sqlite:///{folder / 'worst.db'}"
    engine = create_engine(database)
    migrate.upgrade(engine)
    engine.dispose()
    env = {"IMAGE_PROXY_ALLOWED_HOSTS": f"127.0.0.1:{args.upstream_port}"}
    device_paths = folder / "device.txt"
    rows: list[Figures] = []
    memory: list[str] = []
    for name, poster in posters(folder).items():
        size_kib = poster.stat().st_size // 1024
        query = urlencode(
            {"url": f"http://127.0.0.1:{args.upstream_port}/{poster.name}", "width": 320}
        )
        image_paths = folder / f"{poster.stem}.txt"
        image_paths.write_text(f"/api/images/lvgl?{query} -\n")
        server = Server(database, args.port, options, log, env=env, source=args.source)
        try:
            device_paths.write_text(f"{create_device(args.port)} -\n")
            workers = [pid for pid in server.worker_pids() if is_worker(pid)]
            before = [rss_mb(pid, "VmRSS") for pid in workers]
            expected = 422 if "refused" in name else 200
            if not rows:
                rows.append(run_wrk("device alone", args.port, device_paths, 8, args.seconds, 200))
            with ThreadPoolExecutor(2) as pool:
                images = pool.submit(
                    run_wrk,
                    f"{name}, {size_kib} KiB",
                    args.port,
                    image_paths,
                    8,
                    args.seconds,
                    expected,
                )
                device = pool.submit(
                    run_wrk, "  device meanwhile", args.port, device_paths, 8, args.seconds, 200
                )
                rows += [images.result(), device.result()]
            peaks = [rss_mb(pid, "VmHWM") for pid in workers]
            time.sleep(5)  # the load has stopped: what the workers give back
            after = [rss_mb(pid, "VmRSS") for pid in workers]
            memory.append(
                f"{name}, MB per worker: {mbs(before)} before, peak {mbs(peaks)}, "
                f"{mbs(after)} 5 s after"
            )
        finally:
            server.stop()
    print(
        "\nworst case: 8 image requests at once (expected: 422 for the refused poster, 200 "
        "for the other; 'errors' counts any other answer, of which '503' the refusals of "
        "a worker whose conversion slots are taken) and 8 device fetches"
    )
    print_table(rows)
    for line in memory:
        print(line)


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


def throughput(
    args: argparse.Namespace, paths: dict[str, Path], database: str, options: list[str], log: Path
) -> None:
    env = {"IMAGE_PROXY_ALLOWED_HOSTS": f"127.0.0.1:{args.upstream_port}"}
    server = Server(database, args.port, options, log, env=env, source=args.source)
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
    parser.add_argument("--scenario", choices=["throughput", "worst-case", "all"], default="all")
    parser.add_argument("--baseline", help="serve this git revision's code instead (e.g. main)")
    args = parser.parse_args()
    args.source = source_of(args.baseline) if args.baseline else None
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
                f"code: {args.baseline or 'this checkout'}; "
                f"1920x1080 JPEG of {size // 1024} KiB -> fit 320x240; server: iotsupport serve "
                f"{' '.join(options) or '(default workers and threads)'}; "
                f"wrk {args.seconds}s per scenario"
            )
            print(f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
            if args.scenario != "worst-case":
                throughput(args, paths, database, options, log)
            if args.scenario != "throughput":
                worst_case(args, folder, options, log)
            print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
        finally:
            upstream.terminate()
            upstream.wait(timeout=10)


if __name__ == "__main__":
    main()
