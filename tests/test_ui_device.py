"""The device and new-device pages at fleet scale, in Chromium: the model's schema in the
editor, honest saving, focus after changes, a taken MAC, the device picker, shortcuts,
downloads, and the API docs page."""

from __future__ import annotations

import re
import typing as t
from pathlib import Path

from conftest import RecordingPublisher
from editor_support import content_box
from editor_support import expect_text
from editor_support import replace_text
from flask import Flask
from flask.testing import FlaskClient
from playwright.sync_api import Page
from playwright.sync_api import Route
from playwright.sync_api import expect
from test_device_models import SCHEMA
from test_ui import seed
from test_ui_editor import lint_messages
from ui_support import NewPage
from ui_support import ServeWith
from ui_support import create_config
from ui_support import screenshot
from ui_support import stored_content
from ui_support import toast


def thermostat(client: FlaskClient, content: str = '{"deviceName": "Hall"}') -> dict[str, t.Any]:
    client.post("/api/models", json={"code": "thermostat", "name": "Thermostat", "schema": SCHEMA})
    response = client.post(
        "/api/configs",
        json={"mac_address": "aa:bb:cc:01:00:01", "content": content, "model": "thermostat"},
    )
    assert response.status_code == 201, response.get_data(as_text=True)
    body: dict[str, t.Any] = response.get_json()
    return body


def test_the_models_schema_feeds_the_editor(page: Page, client: FlaskClient) -> None:
    config = thermostat(client, '{\n  "deviceName": "Hall",\n  "display": {\n    \n  }\n}')
    page.goto(f"/devices/{config['id']}")
    box = content_box(page)
    expect(page.locator("#schema-status")).to_have_text("✓ Meets the schema of thermostat")
    # Completion from the schema: inside "display", its keys.
    box.press("Control+Home")
    for _ in range(3):
        box.press("ArrowDown")
    box.press("End")
    box.press_sequentially('"bri')
    expect(page.locator(".cm-tooltip-autocomplete li", has_text="brightness")).to_be_visible()
    box.press_sequentially('ghtness": 140')  # typed on (the quote was closed for us)
    expect_text(page, '{\n  "deviceName": "Hall",\n  "display": {\n    "brightness": 140\n  }\n}')
    # The editor's own check and the server's, both in the margin.
    expect(page.locator("#schema-status")).to_have_text("✗ 1 schema error")
    expect(page.locator(".cm-lintRange-error")).to_have_text("140")
    # (The editor's own mark of the same value gives way to the server's.)
    assert lint_messages(page) == [
        "/display/brightness: must be at most 100 (it is 140) server: maximum"
    ]
    screenshot(page, "device-schema-in-editor", full_page=False)
    # No model: no schema, no marks.
    page.get_by_role("combobox", name="Model").select_option("")
    expect(page.locator(".cm-lintRange-error")).to_have_count(0)
    expect(page.locator("#schema-status")).to_be_hidden()


def test_the_new_page_feeds_the_schema_and_marks_the_servers_refusal(
    page: Page, client: FlaskClient
) -> None:
    client.post("/api/models", json={"code": "thermostat", "name": "Thermostat", "schema": SCHEMA})
    page.goto("/devices/new?model=thermostat")
    page.wait_for_selector("#copy-from[data-ready]", state="attached")
    page.get_by_label("MAC address").fill("aa:bb:cc:01:01:01")
    replace_text(page, '{"deviceName": "", "display": {"brightness": 500}}')
    expect(page.locator(".cm-lintRange-error").first).to_be_visible()
    page.get_by_role("button", name="Create device").click()
    expect(toast(page, "Not created: the content does not meet the schema")).to_be_visible()
    messages = lint_messages(page)
    assert any("server: maximum" in message for message in messages), messages


def test_save_is_honest(
    new_page: NewPage, base_url: str, client: FlaskClient, publisher: RecordingPublisher
) -> None:
    original = '{"deviceName": "Attic"}'
    config = create_config(client, "aa:bb:cc:01:02:01", original)
    page = new_page(base_url)
    page.clock.install()
    page.goto(f"/devices/{config['id']}")
    save = page.get_by_role("button", name="Save", exact=True)
    expect(save).to_be_disabled()  # nothing changed yet
    replace_text(page, '{"deviceName": "Attic fan"}')
    expect(save).to_be_enabled()
    replace_text(page, original)
    expect(save).to_be_disabled()  # the same text again: nothing to save

    # A save that gets no answer says so, gives up, and keeps the edits.
    held: list[Route] = []
    page.route(f"**/api/configs/{config['id']}", lambda route: held.append(route)
               if route.request.method == "PUT" else route.continue_())  # fmt: skip
    replace_text(page, '{"deviceName": "Attic fan"}')
    save.click()
    expect(page.get_by_role("button", name="Saving…")).to_be_disabled()
    page.clock.fast_forward(21_000)
    expect(
        toast(page, "Not saved: The server did not answer within 20 seconds. The server still has")
    ).to_be_visible()
    expect_text(page, '{"deviceName": "Attic fan"}')
    expect(save).to_be_enabled()
    assert stored_content(client, "aa:bb:cc:01:02:01") == original
    # The next save goes through, and the old error message goes away.
    page.unroute(f"**/api/configs/{config['id']}")
    publisher.messages.clear()
    content_box(page).press("Control+s")
    expect(toast(page, "Saved version 2")).to_be_visible()
    expect(page.locator("#alerts .toast")).to_have_count(0)
    expect(save).to_be_disabled()
    assert len(publisher.messages) == 1
    # Through the API, the same bytes save nothing: no version, no message.
    again = client.put(
        f"/api/configs/{config['id']}", json={"content": '{"deviceName": "Attic fan"}'}
    )
    assert again.status_code == 200 and again.get_json()["version"] == 2
    assert len(publisher.messages) == 1


def test_focus_lands_on_the_new_state_after_a_rollback(page: Page, client: FlaskClient) -> None:
    config = create_config(client, "aa:bb:cc:01:03:01", '{"v": 1}')
    client.put(f"/api/configs/{config['id']}", json={"content": '{"v": 2}'})
    page.goto(f"/devices/{config['id']}")
    page.get_by_role("button", name="Roll back to version 1").click()
    dialog = page.get_by_role("dialog", name="Roll back?")
    # Without MQTT, the dialog does not promise to tell the device.
    expect(dialog).to_contain_text("as a new version; the device gets it at its next fetch.")
    dialog.get_by_role("button", name="Roll back").click()
    expect(toast(page, "Rolled back")).to_be_visible()
    expect(content_box(page)).to_be_focused()
    expect_text(page, '{"v": 1}')


def test_with_mqtt_the_rollback_dialog_says_the_device_is_told(
    new_page: NewPage, serve_with: ServeWith
) -> None:
    app, url = serve_with(mqtt_url="mqtt://127.0.0.1:1")  # never connects: a test publisher
    client = app.test_client()
    config = create_config(client, "aa:bb:cc:01:04:01", '{"v": 1}')
    client.put(f"/api/configs/{config['id']}", json={"content": '{"v": 2}'})
    page = new_page(url)
    page.goto(f"/devices/{config['id']}")
    page.get_by_role("button", name="Roll back to version 1").click()
    expect(page.get_by_role("dialog", name="Roll back?")).to_contain_text(
        "as a new version and tells the device over MQTT."
    )


def test_the_size_limit_is_named(new_page: NewPage, serve_with: ServeWith) -> None:
    app, url = serve_with(max_request_bytes=2048)
    config = create_config(app.test_client(), "aa:bb:cc:01:05:01", "{}")
    page = new_page(url)
    page.goto(f"/devices/{config['id']}")
    replace_text(page, '{"notes": "' + "x" * 3000 + '"}')
    page.get_by_role("button", name="Save", exact=True).click()
    expect(
        toast(page, "the server takes at most 2.0 KiB per request (MAX_REQUEST_BYTES)")
    ).to_be_visible()


def test_a_taken_mac_links_to_its_device(page: Page, client: FlaskClient) -> None:
    existing = create_config(client, "aa:bb:cc:01:06:01", "{}")
    page.goto("/devices/new")
    mac = page.get_by_label("MAC address")
    mac.fill("AA-BB-CC-01-06-01")
    page.get_by_role("button", name="Create device").click()
    expect(
        toast(page, "Not created: a device with aa:bb:cc:01:06:01 exists already")
    ).to_be_visible()
    expect(mac).to_have_attribute("aria-invalid", "true")
    expect(mac).to_be_focused()
    link = page.locator("#mac-help").get_by_role("link", name="open aa:bb:cc:01:06:01")
    expect(link).to_have_attribute("href", f"/devices/{existing['id']}")
    link.click()
    expect(page.locator("#mac")).to_have_text("aa:bb:cc:01:06:01")


def test_the_copy_picker_searches_two_thousand_devices(page: Page, app: Flask) -> None:
    seed(app, 2000)
    page.goto("/devices/new")
    page.wait_for_selector("#copy-from[data-ready]", state="attached")
    page.get_by_label("a copy of").check()
    picker = page.get_by_role("combobox", name="Device to copy")
    expect(picker).to_be_focused()
    options = page.get_by_role("listbox", name="Devices to copy").get_by_role("option")
    expect(options).to_have_count(20)  # never 2,000
    expect(page.locator("#copy-status")).to_contain_text("2000 devices match; the first 20")
    picker.press_sequentially("sensor 123")
    # Sensor 0123, 1123, 1230-1239 and a MAC with 123 in it: all listed.
    expect(page.locator("#copy-status")).to_have_text("13 devices match.")
    expect(options).to_have_count(13)
    picker.press_sequentially("0")
    expect(page.locator("#copy-status")).to_have_text("1 device matches.")
    picker.press("ArrowDown")
    expect(picker).to_have_attribute("aria-activedescendant", re.compile(r"^copy-option-\d+$"))
    picker.press("Enter")
    expect(picker).to_have_value(re.compile(r"— Sensor 1230$"))
    expect_text(page, '{\n  "deviceName": "Sensor 1230",\n  "enableOTA": true\n}')
    screenshot(page, "new-copy-picker", full_page=False)


def test_question_mark_lists_the_shortcuts(page: Page) -> None:
    page.goto("/")
    page.get_by_label("Filter devices").press_sequentially("a?")  # typing stays typing
    dialog = page.get_by_role("dialog", name="Keyboard shortcuts")
    expect(dialog).to_be_hidden()
    page.locator("main").click(position={"x": 5, "y": 5})
    page.keyboard.press("?")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("Go to the filter")
    screenshot(page, "shortcuts", full_page=False)
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    page.get_by_role("button", name="Keyboard shortcuts").click()
    expect(dialog).to_be_visible()
    page.goto("/no-such-page")  # every page, the missing-page page too
    page.keyboard.press("?")
    expect(dialog).to_be_visible()


def test_download_one_config_and_the_missing_device_heading(
    page: Page, client: FlaskClient, tmp_path: Path
) -> None:
    content = '{\n    "deviceName": "Kept as saved"\n}'
    config = create_config(client, "aa:bb:cc:01:07:01", content)
    page.goto(f"/devices/{config['id']}")
    replace_text(page, "{}")  # unsaved edits are not what is downloaded
    with page.expect_download() as download:
        page.get_by_role("button", name="Download").click()
    assert download.value.suggested_filename == "aa-bb-cc-01-07-01.json"
    saved = tmp_path / "config.json"
    download.value.save_as(saved)
    assert saved.read_text() == content
    page.goto("/devices/99999")
    expect(page.get_by_role("heading", level=1)).to_have_text("Device not found")


def test_the_api_docs_link_back_and_follow_dark_mode(new_page: NewPage, base_url: str) -> None:
    schemes: list[tuple[t.Literal["light", "dark"], str]] = [
        ("light", "rgb(255, 255, 255)"),
        ("dark", "rgb(15, 18, 22)"),
    ]
    for scheme, background in schemes:
        page = new_page(base_url, color_scheme=scheme)
        with page.expect_response(re.compile(r"favicon\.svg$")) as icon_response:
            page.goto("/api/docs")
        assert icon_response.value.status == 200
        expect(page.locator(".swagger-ui .info .title")).to_contain_text("IoTSupport")
        assert page.evaluate("getComputedStyle(document.body).backgroundColor") == background
        icon = page.locator('link[rel="icon"]')
        expect(icon).to_have_attribute("href", re.compile(r"^/ui/static/\w+/favicon\.svg$"))
        screenshot(page, f"api-docs-{scheme}", full_page=False)
        page.get_by_role("link", name="IoTSupport").click()
        expect(page).to_have_url(re.compile(r"/$"))
