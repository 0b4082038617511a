"""Benchmark the web UI's JSON editor in Chromium: Format and typing on a 200 KB config.

Stores a config of about `--size` bytes written on one line (SQLite, the app on a local
werkzeug thread), opens its device page in headless Chromium through Playwright and
measures inside the page, from the input event's timestamp to the frame painted after it:

- Format: a click on the button until the formatted text is on screen (then Ctrl+Z, again);
- formatJson, the parse check and (with `--schema`) the schema check alone, on the same text;
- typing: one key at a time inside a string in the middle of the formatted document,
  in bursts (the next key as soon as the frame is painted) and paced (250 ms apart, so the
  deferred parse check and the margin run between keys); `--schema` also sets a JSON
  Schema so that completion, hover and the schema check take part.

    .venv/bin/python bench/editor.py            # --help for the knobs

Needs Chromium (`/usr/bin/chromium`, or IOTSUPPORT_CHROMIUM) and Playwright (dev extra).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import threading
import typing as t
from pathlib import Path

from playwright.sync_api import Page
from playwright.sync_api import sync_playwright
from sqlalchemy import create_engine
from werkzeug.serving import make_server

from iotsupport import create_app
from iotsupport import migrate
from iotsupport.settings import Settings

CHROMIUM = os.environ.get("IOTSUPPORT_CHROMIUM", "/usr/bin/chromium")

# In the page: the editor's view (CodeMirror's public findFromDOM) and the modules it uses.
SETUP = """async () => {
  const script = document.querySelector('script[type="module"]').src;
  const cm = await import(new URL("vendor/codemirror.js", script));
  window.bench = {
    cm,
    json: await import(new URL("json.js", script)),
    view: cm.EditorView.findFromDOM(document.querySelector("#content .cm-editor")),
    keys: [],
    formats: [],
  };
  // Headless Chromium may skip frames nobody waits for; a display would not.
  const tick = () => requestAnimationFrame(tick);
  tick();
  // The frame after the event: its animation frame callback, then a task after its paint.
  const painted = (list, event) => requestAnimationFrame(() => {
    setTimeout(() => list.push(performance.now() - event.timeStamp), 0);
  });
  window.addEventListener("keydown", (event) => painted(bench.keys, event), true);
  window.addEventListener("click", (event) => {
    if (event.target.id === "format") painted(bench.formats, event);
  }, true);
}"""

TIME_FUNCTIONS = """([runs, schema]) => {
  const text = bench.view.state.doc.toString();
  const data = JSON.parse(text);
  const time = (work) => {
    const start = performance.now();
    work();
    return performance.now() - start;
  };
  const repeat = (work) => Array.from({ length: runs }, () => time(work));
  return {
    format: repeat(() => bench.json.formatJson(text)),
    check: repeat(() => bench.json.checkContent(text)),
    schema: schema ? repeat(() => new bench.cm.Draft07(schema).validate(data)) : [],
  };
}"""

SCHEMA: dict[str, t.Any] = {
    "type": "object",
    "properties": {
        "deviceName": {"type": "string", "description": "The name shown in Home Assistant"},
        "sensors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "id": {"type": "integer", "minimum": 0},
                    "name": {"type": "string", "maxLength": 64},
                    "topic": {"type": "string"},
                    "interval": {"type": "integer", "minimum": 1},
                    "calibration": {"type": "object"},
                    "enabled": {"type": "boolean"},
                },
            },
        },
    },
}


def config_of_size(size: int) -> dict[str, t.Any]:
    """A display's config of about `size` bytes when written compactly."""
    sensors: list[dict[str, t.Any]] = []
    total = 60
    while total < size:
        index = len(sensors)
        sensor = {
            "id": index,
            "name": f'Sensor {index:05d} \u00e9 "quoted"',
            "topic": f"home/room{index % 40}/sensor{index}",
            "interval": 30 + index % 5,
            "calibration": {"offset": -1.25, "scale": 1.0, "points": [[0, 0], [100, 98.5]]},
            "enabled": index % 3 != 0,
            "tags": [],
        }
        sensors.append(sensor)
        total += len(json.dumps(sensor, separators=(",", ":"))) + 1
    return {"deviceName": "Wall", "enableOTA": True, "10": "integer-like key", "sensors": sensors}


def summary(values: list[float]) -> str:
    median, most = statistics.median(values), max(values)
    return f"median {median:7.1f} ms, max {most:7.1f} ms (n={len(values)})"


def measure_format(page: Page, compact: str, runs: int) -> list[float]:
    for run in range(runs):
        page.get_by_role("button", name="Format").click()
        page.wait_for_function("n => bench.formats.length === n", arg=run + 1)
        page.keyboard.press("Control+z")
        page.wait_for_function(
            "length => bench.view.state.doc.length === length", arg=len(compact), timeout=30_000
        )
    formats: list[float] = page.evaluate("bench.formats")
    return formats


def measure_typing(page: Page, keys: int, pause_ms: float) -> list[float]:
    page.evaluate("""() => {
      const text = bench.view.state.doc.toString();
      const at = text.indexOf('"Sensor', Math.floor(text.length / 2)) + 2;
      bench.view.dispatch({ selection: { anchor: at }, scrollIntoView: true });
      bench.view.focus();
      bench.keys.length = 0;
    }""")
    for key in range(keys):
        page.keyboard.press("abcdefghijklmnopqrstuvwxyz"[key % 26])
        page.wait_for_function("n => bench.keys.length === n", arg=key + 1)
        if pause_ms:
            page.wait_for_timeout(pause_ms)
    latencies: list[float] = page.evaluate("bench.keys.slice()")
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=200_000, help="config size in bytes")
    parser.add_argument("--runs", type=int, default=5, help="Format runs")
    parser.add_argument("--keys", type=int, default=30, help="keys typed per typing scenario")
    parser.add_argument("--schema", action="store_true", help="also set a JSON Schema")
    args = parser.parse_args()

    content = config_of_size(args.size)
    compact = json.dumps(content, separators=(",", ":"), ensure_ascii=False)
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'bench.db'}"
        engine = create_engine(url)
        migrate.upgrade(engine)
        engine.dispose()
        app = create_app(Settings(_env_file=None, database_url=url, mqtt_url=None))
        created = app.test_client().post(
            "/api/configs", json={"mac_address": "aa:bb:cc:00:00:01", "content": compact}
        )
        assert created.status_code == 201, created.get_data(as_text=True)
        server = make_server("127.0.0.1", 0, app, threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            run(f"http://127.0.0.1:{server.server_port}", created.get_json()["id"], content, args)
        finally:
            server.shutdown()
            app.extensions["iotsupport"].database.dispose()


def run(base_url: str, config_id: int, content: dict[str, t.Any], args: argparse.Namespace) -> None:
    compact = json.dumps(content, separators=(",", ":"), ensure_ascii=False)
    formatted = json.dumps(content, indent=2, ensure_ascii=False) + "\n"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        page = browser.new_page(base_url=base_url, viewport={"width": 1280, "height": 900})
        page.goto(f"/devices/{config_id}")
        page.wait_for_selector("#device:not([hidden])")
        page.evaluate(SETUP)
        page.wait_for_function("length => bench.view.state.doc.length === length", arg=len(compact))
        if args.schema:
            page.evaluate("s => bench.cm.updateSchema(bench.view, s)", SCHEMA)
        print(
            f"config: {len(compact.encode()):,} bytes on one line; formatted "
            f"{len(formatted.encode()):,} bytes, {formatted.count(chr(10)):,} lines"
            f"{'; with a JSON Schema' if args.schema else ''}"
        )
        functions = page.evaluate(TIME_FUNCTIONS, [args.runs, SCHEMA if args.schema else None])
        print(f"formatJson alone:          {summary(functions['format'])}")
        print(f"parse check alone:         {summary(functions['check'])}")
        if args.schema:
            print(f"schema check alone:        {summary(functions['schema'])}")
        print(f"Format, click to painted:  {summary(measure_format(page, compact, args.runs))}")

        page.get_by_role("button", name="Format").click()
        page.wait_for_function("n => bench.view.state.doc.length === n", arg=len(formatted))
        assert page.evaluate("bench.view.state.doc.toString()") == formatted
        burst = measure_typing(page, args.keys, 0)
        print(f"typing, keys in a burst:   {summary(burst)}")
        paced = measure_typing(page, args.keys, 250)
        print(f"typing, keys 250 ms apart: {summary(paced)}")
        browser.close()


if __name__ == "__main__":
    main()
