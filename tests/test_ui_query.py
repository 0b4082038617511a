"""The devices list's search box takes a device query, in Chromium: the rows it selects,
the URL that keeps it, an error pointed at, completion of names and schema paths, and
plain text still searched as before."""

from __future__ import annotations

import re
from urllib.parse import parse_qs
from urllib.parse import urlsplit

from flask.testing import FlaskClient
from playwright.sync_api import Page
from playwright.sync_api import expect
from ui_support import create_config

SCHEMA = {
    "type": "object",
    "properties": {
        "display": {"type": "object", "properties": {"brightness": {"type": "integer"}}},
        "sensors": {"type": "array", "items": {"type": "object", "properties": {"type": {}}}},
    },
}


def seed(client: FlaskClient) -> None:
    created = client.post("/api/models", json={"code": "lamp", "name": "Lamp", "schema": SCHEMA})
    assert created.status_code == 201, created.get_json()
    for index, brightness in enumerate((90, 50, 200)):
        body = {
            "mac_address": f"aa:bb:cc:00:02:0{index}",
            "content": {"deviceName": f"Lamp {index}", "display": {"brightness": brightness}},
            "model": "lamp" if index < 2 else None,
        }
        assert client.post("/api/configs", json=body).status_code == 201
    create_config(client, "aa:bb:cc:00:02:09", '{"deviceName": "Porch", "note": "homelab"}')


def test_a_query_in_the_search_box_selects_devices_and_the_url_keeps_it(
    page: Page, client: FlaskClient
) -> None:
    seed(client)
    page.goto("/")
    expect(page.locator("#count")).to_have_text("4")
    box = page.get_by_label("Filter devices")
    with page.expect_request(re.compile(r"/api/configs\?where=")) as asked:
        box.fill("display.brightness > 80")
    assert parse_qs(urlsplit(asked.value.url).query)["where"] == ["display.brightness > 80"]
    expect(page.locator("#count")).to_have_text("2 of 4")
    expect(page.locator("#search-status")).to_have_text("2 devices match the query.")
    expect(page.locator("#rows tr", has_text="Lamp 1")).to_have_count(0)
    expect(page).to_have_url(re.compile(r"\?where=display\.brightness"))
    # The URL keeps it: a reload (or a shared link) shows the same devices.
    page.reload()
    expect(box).to_have_value("display.brightness > 80")
    expect(page.locator("#count")).to_have_text("2 of 4")
    # With the model filter: the query and the model together.
    page.locator("#model-filter").select_option("lamp")
    expect(page.locator("#count")).to_have_text("1 of 4")
    # A mistake is pointed at, and nothing matches it.
    box.fill("display.brightness >")
    status = page.locator("#search-status")
    expect(status).to_contain_text("Query not run: expected a value")
    expect(status.locator("mark")).to_have_count(1)
    expect(box).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#count")).to_have_text("0 of 4")


def test_plain_text_still_searches_the_content(page: Page, client: FlaskClient) -> None:
    seed(client)
    page.goto("/")
    expect(page.locator("#count")).to_have_text("4")
    with page.expect_request(re.compile(r"/api/configs\?q=homelab")):
        page.get_by_label("Filter devices").fill("homelab")
    expect(page.locator("#count")).to_have_text("1 of 4")
    expect(page).to_have_url(re.compile(r"\?q=homelab"))


def test_completion_of_attributes_and_the_models_schema_paths(
    page: Page, client: FlaskClient
) -> None:
    seed(client)
    page.goto("/")
    expect(page.locator("#count")).to_have_text("4")
    page.locator("#model-filter").select_option("lamp")
    box = page.get_by_label("Filter devices")
    box.press_sequentially("sync")
    options = page.get_by_role("listbox", name="Suggestions").get_by_role("option")
    expect(options).to_have_text(["sync_state"])
    box.press("ArrowDown")
    box.press("Enter")
    expect(box).to_have_value("sync_state")
    box.press_sequentially(" == never and display.b")
    expect(options).to_have_text(["display.brightness"])
    box.press("ArrowDown")
    box.press("Tab")
    expect(box).to_have_value("sync_state == never and display.brightness")
    box.press_sequentially(" >= 90 or sensors[*].")
    expect(options).to_have_text(["sensors[*].type"])
    box.press("Escape")
    expect(options).to_have_count(0)
    box.press_sequentially("type == x")
    expect(page.locator("#count")).to_have_text("1 of 4")  # Lamp 0: 90, never fetched
