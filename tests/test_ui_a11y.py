"""Every page through axe-core (npm, tests/axe) in light and dark mode, and at phone width.

axe.min.js is added as an init script (run by the browser itself, so the pages keep
their strict CSP). Violations of serious or critical impact fail the test.
"""

from __future__ import annotations

import typing as t
from pathlib import Path

import pytest
from conftest import unavailable
from flask import Flask
from flask.testing import FlaskClient
from playwright.sync_api import Page
from playwright.sync_api import expect
from rollout_support import Fleet
from test_device_models import SCHEMA
from ui_support import PHONE
from ui_support import NewPage
from ui_support import create_config
from ui_support import screenshot

from iotsupport.extensions import state

AXE = Path(__file__).resolve().parent / "axe" / "node_modules" / "axe-core" / "axe.min.js"

_RUN = """async () => {
  const result = await axe.run(document, { resultTypes: ["violations"] });
  return result.violations
    .filter((v) => v.impact === "serious" || v.impact === "critical")
    .map((v) => `${v.id} (${v.impact}): ${v.help}: `
      + v.nodes.slice(0, 5).map((n) => n.target.join(" ")).join(", "));
}"""


@pytest.fixture(scope="session")
def axe_script() -> str:
    if not AXE.is_file():
        unavailable(f"axe-core not installed at {AXE} (make test runs npm ci in tests/axe)")
    return AXE.read_text()


def fleet(app: Flask, client: FlaskClient) -> dict[str, str]:
    """A model, a device in it with history and a token, a free-form one: the pages to visit,
    each with a selector that says it has loaded."""
    client.post(
        "/api/models",
        json={"code": "thermostat", "name": "Thermostat", "schema": SCHEMA, "description": "T"},
    )
    hall = client.post(
        "/api/configs",
        json={
            "mac_address": "24:0a:c4:00:00:01",
            "content": {"deviceName": "Hall", "deviceEntityId": "climate.hall"},
            "model": "thermostat",
        },
    ).get_json()
    client.put(f"/api/configs/{hall['id']}", json={"content": {"deviceName": "Hall 2"}})
    client.post(f"/api/configs/{hall['id']}/credential")
    create_config(client, "24:0a:c4:00:00:02", '{"deviceName": "Porch", "enableOTA": true}')
    client.get("/api/configs/24:0a:c4:00:00:02.json")
    # Firmware: releases of a model and a rollout under way, one device updated.
    firmware = Fleet(app, 3)
    firmware.start([1, "100%"], error_threshold="50%")
    firmware.update(firmware.stage_devices(firmware.rollout(1), 1)[0])
    firmware.settle()
    token = client.post(f"/api/configs/{hall['id']}/credential").get_json()["token"]
    client.post(
        "/api/device/logs",
        data="I (5) boot: \x1b[0;32mready\x1b[0m\nW (9) wifi: weak\nE (12) app: " + "y" * 400,
        headers={"Authorization": f"Bearer {token}"},
    )
    state(app).reports.flush()
    return {
        "/": "#rows tr",
        f"/devices/{hall['id']}": "#versions tr",
        "/devices/999": "#load-error:not([hidden])",
        "/devices/new": "#copy-from[data-ready]",
        "/models": "#rows tr",
        "/models/thermostat": "#counts:not(:empty)",
        "/models/new": "#model-form",
        "/firmware": "#loading[hidden]",
        "/crashes": "#loading[hidden]",
        "/crashes/1": "#loading[hidden]",
        "/logs": "#log-lines li",
        "/models/thermo/releases": "#rows tr",
        "/models/thermo/rollouts/1": "li.stage",
        "/nowhere": "h1",
        "/api/docs": ".swagger-ui .info .title",
    }


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_no_serious_violations_on_any_page(
    new_page: NewPage,
    base_url: str,
    app: Flask,
    client: FlaskClient,
    axe_script: str,
    scheme: t.Literal["light", "dark"],
) -> None:
    pages = fleet(app, client)
    page = new_page(base_url, color_scheme=scheme)
    page.context.add_init_script(script=axe_script)
    found = {}
    for path, ready in pages.items():
        page.goto(path)
        page.wait_for_selector(ready, state="attached", timeout=30_000)  # docs: 1 MB of JS

        problems = page.evaluate(_RUN)
        if problems:
            found[path] = problems
    report = "\n".join(
        f"{path}: {problem}" for path, problems in found.items() for problem in problems
    )
    assert not found, f"axe ({scheme}):\n{report}"


def no_sideways_scroll(page: Page) -> None:
    overflow = page.evaluate(
        "() => document.scrollingElement.scrollWidth - document.scrollingElement.clientWidth"
    )
    assert overflow <= 0, f"{page.url} scrolls sideways by {overflow}px"


def test_every_page_fits_a_phone(
    new_page: NewPage, base_url: str, app: Flask, client: FlaskClient
) -> None:
    pages = fleet(app, client)
    page = new_page(base_url, viewport=PHONE)
    for path, ready in pages.items():
        page.goto(path)
        page.wait_for_selector(ready, state="attached", timeout=30_000)  # docs: 1 MB of JS

        no_sideways_scroll(page)
    device = next(path for path in pages if path.startswith("/devices/") and path[9:].isdigit())
    page.goto(device)
    rollback = page.get_by_role("button", name="Roll back to version 1")
    rollback.scroll_into_view_if_needed()
    box = rollback.bounding_box()
    assert box is not None and box["x"] + box["width"] <= PHONE["width"], box
    # Nothing in the history scrolls sideways to get there.
    assert page.locator(".history-scroll").evaluate("(box) => box.scrollWidth <= box.clientWidth")
    screenshot(page, "device-history-phone", full_page=False)
    page.goto("/")
    last = page.locator("#head th").filter(visible=True).last
    expect(last).to_be_in_viewport()
    screenshot(page, "devices-phone", full_page=False)
    box = last.bounding_box()
    assert box is not None and box["x"] + box["width"] <= PHONE["width"]
