"""axe-core on the states issue 24 names: the rollout confirmation, the grouped bulk
preview, the change sets page, scroll boxes reachable by keyboard (history diff on a
phone, import report, schema dialog), stages not started (light and dark), one h1 on
/api/docs; and at phone width the bulk bar and the releases table fit."""

from __future__ import annotations

import json
import typing as t

import pytest
from flask import Flask
from flask.testing import FlaskClient
from playwright.sync_api import Page
from playwright.sync_api import expect
from rollout_support import Fleet
from test_ui_a11y import axe_script  # noqa: F401 - the fixture
from test_ui_safety import thermostats
from ui_support import PHONE
from ui_support import NewPage

SERIOUS = ("serious", "critical")


def violations(
    page: Page, rules: t.Sequence[str] = (), impacts: t.Sequence[str] = SERIOUS
) -> list[str]:
    """axe's violations on the page as it is (only `rules` when given)."""
    options: dict[str, t.Any] = {"resultTypes": ["violations"]}
    if rules:
        options["runOnly"] = {"type": "rule", "values": list(rules)}
    script = f"""async () => {{
      const result = await axe.run(document, {json.dumps(options)});
      return result.violations.filter((v) => {json.dumps(list(impacts))}.includes(v.impact))
        .map((v) => `${{v.id}}: ` + v.nodes.slice(0, 5).map((n) => n.target.join(" ")).join(", "));
    }}"""
    found: list[str] = page.evaluate(script)
    return found


@pytest.fixture
def axe_page(new_page: NewPage, base_url: str, axe_script: str) -> t.Callable[..., Page]:  # noqa: F811
    def open_page(**options: t.Any) -> Page:
        page = new_page(base_url, **options)
        page.context.add_init_script(script=axe_script)
        return page

    return open_page


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_new_states_pass_axe(
    axe_page: t.Callable[..., Page], app: Flask, client: FlaskClient, scheme: str
) -> None:
    fleet = Fleet(app, 6)
    fleet.settle()
    fleet.start([1, "50%", "100%"])  # stages 2 and 3 not started
    thermostats(client, 4, failing=1)
    page = axe_page(color_scheme=scheme)

    page.goto("/models/thermo/rollouts/1")
    expect(page.locator("li.stage-waiting")).to_have_count(2)
    assert violations(page, ["color-contrast"], impacts=("minor", "moderate", *SERIOUS)) == []

    page.goto("/models/thermo/releases")
    expect(page.locator("#rows tr")).to_have_count(2)
    page.get_by_role(
        "button", name="Start rollout"
    ).click()  # refused (one is active), after the dialog
    expect(page.get_by_role("dialog")).to_be_visible()
    assert violations(page) == []
    page.keyboard.press("Escape")

    page.goto("/?model=thermostat")
    expect(page.locator("#rows tr")).to_have_count(4)
    page.get_by_label("Select all shown").check()
    page.get_by_role("button", name="Change selected…").click()
    page.get_by_label("Patch (JSON)").fill('{"mode": "eco"}')
    page.get_by_role("button", name="Preview").click()
    expect(page.locator("details.bulk-group")).to_have_count(2)
    assert violations(page) == []

    page.goto("/change-sets")
    expect(page.locator("#empty")).to_be_visible()
    assert violations(page) == []

    page.goto("/api/docs")
    page.wait_for_selector(".swagger-ui .info .title", timeout=20_000)
    assert violations(page, ["page-has-heading-one"], impacts=("minor", "moderate", *SERIOUS)) == []


def test_scroll_boxes_are_reachable_by_keyboard(
    axe_page: t.Callable[..., Page], client: FlaskClient
) -> None:
    rule = ["scrollable-region-focusable"]
    any_impact = ("minor", "moderate", *SERIOUS)
    long = {f"key{index}": "x" * 80 for index in range(60)}
    created = client.post(
        "/api/configs", json={"mac_address": "aa:00:00:00:05:01", "content": long}
    )
    config_id = created.get_json()["id"]
    for round_ in range(12):
        body = {"content": long | {"round": round_}}
        assert client.put(f"/api/configs/{config_id}", json=body).status_code == 200
    page = axe_page(viewport=PHONE)
    page.goto(f"/devices/{config_id}")
    expect(page.locator(".history-scroll tr").first).to_be_visible()
    expect(page.locator("#history-diff pre")).to_have_count(1)
    assert violations(page, rule, any_impact) == []

    client.post("/api/models", json={"code": "strict", "name": "S", "schema": {"type": "object"}})
    for index in range(30):
        device = {"mac_address": f"aa:00:00:00:06:{index:02x}", "content": {}, "model": "strict"}
        client.post("/api/configs", json=device)
    page.goto("/models/strict")
    page.get_by_label("JSON Schema").fill('{"type": "object", "required": ["name"]}')
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#broken-list")).to_be_visible()
    assert violations(page, rule, any_impact) == []


def test_the_bulk_bar_and_the_releases_fit_a_phone(
    new_page: NewPage, base_url: str, app: Flask, client: FlaskClient
) -> None:
    Fleet(app, 2, versions=("1.0.0", "2.0.0", "2.0.1-beta.10"))
    page = new_page(base_url, viewport=PHONE)
    page.goto("/")
    page.get_by_label("Select all shown").check()
    expect(page.locator("#bulk-bar")).to_be_visible()
    overflow = page.evaluate(
        "() => document.scrollingElement.scrollWidth - document.scrollingElement.clientWidth"
    )
    assert overflow <= 0, f"the page scrolls sideways by {overflow}px"
    page.goto("/models/thermo/releases")
    expect(page.locator("#rows tr")).to_have_count(3)
    wrap = page.locator("#table-wrap")
    assert wrap.evaluate("(box) => box.scrollWidth <= box.clientWidth"), "columns cut off"
