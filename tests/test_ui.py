"""The web UI end to end: a real headless Chromium (Playwright) against a served app.

The browser fixtures (`page`, `new_page`, `serve`, ...) are in ui_support.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
import typing as t
from pathlib import Path
from pathlib import PurePosixPath

import pytest
from assets_support import build_assets_app
from assets_support import rsa_key
from assets_support import upload
from assets_support import write_private_key
from conftest import RecordingPublisher
from conftest import random_mac
from editor_support import content_box
from editor_support import expect_text
from editor_support import replace_text
from flask import Flask
from flask.testing import FlaskClient
from nvs_reader import read_partition
from oidc_stack import Stack
from playwright.sync_api import Page
from playwright.sync_api import Route
from playwright.sync_api import ViewportSize
from playwright.sync_api import expect
from test_device_models import SCHEMA
from ui_support import PHONE
from ui_support import WIDE
from ui_support import NewPage
from ui_support import Serve
from ui_support import create_config
from ui_support import screenshot
from ui_support import stored_content
from ui_support import toast

from iotsupport.configs.service import ConfigService
from iotsupport.db import commit
from iotsupport.extensions import state


def seed(app: Flask, count: int) -> None:
    """`count` configs in one transaction, through the service like the API would."""
    app_state = state(app)
    session = app_state.database.session()
    service = ConfigService(session)
    for index in range(count):
        mac = f"24:0a:c4:00:{index // 256:02x}:{index % 256:02x}"
        content = {"deviceName": f"Sensor {index:04d}", "enableOTA": index % 2 == 0}
        if index % 10:
            content["deviceEntityId"] = f"sensor.room_{index:04d}"
        service.create(mac, json.dumps(content, indent=2))
    commit(session)
    session.close()


# --- without a browser ----------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/devices/new",
        "/devices/7",
        "/firmware",
        "/models",
        "/models/new",
        "/models/x",
        "/crashes",
        "/crashes/3",
        "/change-sets",
    ],
)
def test_pages_are_html_that_runs_only_our_own_scripts(client: FlaskClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    policy = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert "<script>" not in response.get_data(as_text=True)  # no inline script


def test_every_ui_file_ships_in_the_package() -> None:
    """`pip install` must bring the whole UI: each file matches a package-data pattern."""
    root = Path(__file__).resolve().parent.parent
    pyproject = tomllib.loads((root / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["iotsupport"]
    package = root / "src" / "iotsupport"
    files = [
        PurePosixPath(path.relative_to(package).as_posix())
        for folder in ("ui/static", "ui/templates")
        for path in (package / folder).rglob("*")
        if path.is_file()
    ]
    assert files
    # PurePath.match, like setuptools, does not let "*" cross a "/".
    assert [name for name in files if not any(name.match(p) for p in patterns)] == []


# --- in the browser ----------------------------------------------------------------------


def test_create_a_device_and_see_it_in_the_list(page: Page, client: FlaskClient) -> None:
    page.goto("/devices/new")
    mac = page.get_by_label("MAC address")
    mac.fill("AA-BB-CC-dd-EE-01")
    mac.blur()
    expect(mac).to_have_value("aa:bb:cc:dd:ee:01")
    expect_text(page, '{\n  "deviceName": "",\n  "deviceEntityId": "",\n  "enableOTA": false\n}\n')
    content = '{"deviceName": "Desk lamp",   "enableOTA": true}'
    replace_text(page, content)
    expect(page.locator("#parse-status")).to_contain_text("Valid JSON object, 2 keys")
    screenshot(page, "new-device")
    page.get_by_role("button", name="Create device").click()

    expect(page).to_have_url(re.compile(r"/devices/\d+$"))
    expect(toast(page, "Created aa:bb:cc:dd:ee:01")).to_be_visible()
    expect(page.locator("#mac")).to_have_text("aa:bb:cc:dd:ee:01")
    assert stored_content(client, "aa:bb:cc:dd:ee:01") == content  # verbatim, spacing kept

    page.get_by_role("link", name="Devices", exact=True).first.click()
    row = page.locator("#rows tr", has_text="aa:bb:cc:dd:ee:01")
    expect(row).to_contain_text("Desk lamp")
    expect(page.locator("#count")).to_have_text("1")


def test_a_bad_mac_and_a_taken_mac_are_refused_in_words(page: Page, client: FlaskClient) -> None:
    create_config(client, "aa:bb:cc:dd:ee:02", "{}")
    page.goto("/devices/new")
    mac = page.get_by_label("MAC address")
    mac.fill("not-a-mac")
    mac.blur()
    expect(page.locator("#mac-help")).to_contain_text("Not a MAC address")
    page.get_by_role("button", name="Create device").click()
    expect(toast(page, "the MAC address is not valid")).to_be_visible()

    mac.fill("aabb.ccdd.ee02")
    mac.blur()
    expect(mac).to_have_value("aa:bb:cc:dd:ee:02")
    # Said before Create: the page has every device.
    expect(page.locator("#mac-help")).to_contain_text("A device with aa:bb:cc:dd:ee:02 exists")
    expect(page.locator("#mac-help").get_by_role("link")).to_have_text("open aa:bb:cc:dd:ee:02")
    posts: list[str] = []
    page.on(
        "request", lambda request: posts.append(request.url) if request.method == "POST" else None
    )
    page.get_by_role("button", name="Create device").click()
    expect(
        toast(page, "Not created: a device with aa:bb:cc:dd:ee:02 exists already")
    ).to_be_visible()
    assert posts == []


def test_an_unknown_device_is_reported_in_words(page: Page) -> None:
    page.goto("/devices/999")
    expect(page.locator("#load-error")).to_have_text(
        "Could not load this device: config 999 does not exist Back to the list"
    )


def test_edit_with_invalid_then_valid_json(
    page: Page, client: FlaskClient, publisher: RecordingPublisher
) -> None:
    config = create_config(client, "aa:bb:cc:dd:ee:03", '{"deviceName": "Porch"}')
    page.goto(f"/devices/{config['id']}")
    expect_text(page, '{"deviceName": "Porch"}')
    expect(page.get_by_label("Device URL")).to_have_value(
        re.compile(r"^http://127\.0\.0\.1:\d+/api/configs/aa:bb:cc:dd:ee:03\.json$")
    )

    replace_text(page, '{\n  "deviceName": "Porch light",\n  "enableOTA": tru\n}')
    status = page.locator("#parse-status")
    expect(status).to_contain_text("Line 3, column 16")
    expect(content_box(page)).to_have_attribute("aria-invalid", "true")
    expect(page.locator(".cm-gutter-lint .cm-lint-marker-error")).to_have_count(1)
    expect(page.locator("#dirty")).to_be_visible()
    screenshot(page, "device-invalid-json")
    page.get_by_role("button", name="Save").click()
    expect(
        toast(page, "Not saved: the content is not a valid JSON object (line 3, column 16")
    ).to_be_visible()
    assert stored_content(client, "aa:bb:cc:dd:ee:03") == '{"deviceName": "Porch"}'

    replace_text(page, '{"deviceName": "Porch light", "enableOTA": true, "extra": [1, 2]}')
    expect(status).to_contain_text("Valid JSON object, 3 keys")
    page.get_by_role("button", name="Format").click()
    formatted = (
        '{\n  "deviceName": "Porch light",\n  "enableOTA": true,\n'
        '  "extra": [\n    1,\n    2\n  ]\n}\n'
    )
    expect_text(page, formatted)
    content_box(page).press("Control+s")
    expect(toast(page, "Saved version 2")).to_be_visible()
    expect(page.locator("#dirty")).to_be_hidden()
    assert stored_content(client, "aa:bb:cc:dd:ee:03") == formatted
    assert publisher.messages[-1] == (
        "iotsupport/updates/configs",
        {"filename": "aa:bb:cc:dd:ee:03.json"},
    )


def test_stale_save_shows_their_changes_and_lets_the_admin_choose(
    page: Page, client: FlaskClient
) -> None:
    config = create_config(
        client, "aa:bb:cc:dd:ee:04", '{\n  "deviceName": "Garage",\n  "interval": 30\n}'
    )
    page.goto(f"/devices/{config['id']}")
    expect_text(page, '{\n  "deviceName": "Garage",\n  "interval": 30\n}')
    replace_text(page, '{\n  "deviceName": "Garage door",\n  "interval": 30\n}')

    theirs = '{"deviceName": "Garage", "interval": 60}'
    assert client.put(f"/api/configs/{config['id']}", json={"content": theirs}).status_code == 200
    page.get_by_role("button", name="Save").click()
    dialog = page.get_by_role("dialog", name="Someone else saved this device meanwhile")
    expect(dialog).to_be_visible()
    expect(dialog.locator(".del")).to_contain_text('"interval": 30')
    expect(dialog.locator(".add")).to_contain_text('"interval": 60')
    screenshot(page, "device-conflict")
    dialog.get_by_role("button", name="Load theirs").click()
    expect_text(page, theirs)
    assert stored_content(client, "aa:bb:cc:dd:ee:04") == theirs

    # Again, and this time the admin keeps their own version.
    mine = '{"deviceName": "Garage door", "interval": 60}'
    replace_text(page, mine)
    third = '{"deviceName": "Garage", "interval": 90}'
    assert client.put(f"/api/configs/{config['id']}", json={"content": third}).status_code == 200
    page.get_by_role("button", name="Save").click()
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name="Overwrite with mine").click()
    expect(toast(page, "Saved version 4 (theirs overwritten)")).to_be_visible()
    assert stored_content(client, "aa:bb:cc:dd:ee:04") == mine


def test_delete_and_undo(page: Page, client: FlaskClient) -> None:
    content = '{\n    "deviceName": "Attic fan",\n    "enableOTA": false\n}'
    config = create_config(client, "aa:bb:cc:dd:ee:05", content)
    page.goto(f"/devices/{config['id']}")
    page.get_by_role("button", name="Delete…").click()
    dialog = page.get_by_role("dialog", name="Delete this device's config?")
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    assert stored_content(client, "aa:bb:cc:dd:ee:05") == content

    page.get_by_role("button", name="Delete…").click()
    dialog.get_by_role("button", name="Delete").click()
    expect(page).to_have_url(re.compile(r"/$"))
    assert stored_content(client, "aa:bb:cc:dd:ee:05") is None
    undo = toast(page, "Deleted aa:bb:cc:dd:ee:05")
    expect(undo).to_be_visible()
    undo.get_by_role("button", name="Undo").click()
    expect(toast(page, "Restored aa:bb:cc:dd:ee:05")).to_be_visible()
    expect(page.locator("#rows tr", has_text="aa:bb:cc:dd:ee:05")).to_contain_text("Attic fan")
    assert stored_content(client, "aa:bb:cc:dd:ee:05") == content


def test_filter_and_sort_two_thousand_devices(page: Page, app: Flask) -> None:
    seed(app, 2000)
    page.goto("/")
    rows = page.locator("#rows tr:not([hidden])")
    expect(page.locator("#count")).to_have_text("2,000")
    expect(rows.first).to_contain_text("24:0a:c4:00:00:00")

    page.keyboard.press("/")
    filter_box = page.get_by_label("Filter devices")
    expect(filter_box).to_be_focused()
    filter_box.press_sequentially("room_019")
    expect(page.locator("#count")).to_have_text("9 of 2,000")  # 0191-0199; 0190 has no entity id
    filter_box.fill("0004d3")  # a MAC typed without separators
    expect(page.locator("#count")).to_have_text("1 of 2,000")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Sensor 1235")
    expect(page).to_have_url(re.compile(r"\?q=0004d3$"))

    filter_box.fill("")
    name_header = page.get_by_role("button", name="Name")
    name_header.click()
    name_header.click()  # second click: descending
    expect(page.locator("th[aria-sort=descending]")).to_contain_text("Name")
    expect(rows.first).to_contain_text("Sensor 1999")
    page.get_by_role("button", name="Entity ID").focus()
    page.keyboard.press("Enter")  # sorting works from the keyboard
    expect(page.locator("th[aria-sort=ascending]")).to_contain_text("Entity ID")
    expect(rows.first).to_contain_text("sensor.room_0001")
    # The table shows the first rows and grows on demand; the count is of all matches.
    expect(rows).to_have_count(150)
    page.get_by_role("button", name="Show 150 more (1,850 not shown)").click()
    expect(rows).to_have_count(300)
    screenshot(page, "devices", full_page=False)
    # Scrolling to just above the button shows one more page by itself; the button moves on.
    more = page.locator("#more")
    more.evaluate("(more) => scrollBy(0, more.getBoundingClientRect().top - innerHeight - 300)")
    expect(rows).to_have_count(450)
    expect(more).to_have_text("Show 150 more (1,550 not shown)")
    # On screen it stays put until pressed (after two frames the observer has answered).
    more.scroll_into_view_if_needed()
    page.evaluate(
        "() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))"
    )
    expect(rows).to_have_count(450)

    rows.nth(2).locator("td").nth(1).click()  # a click anywhere on a row opens the device
    expect(page.locator("#mac")).to_have_text("24:0a:c4:00:00:03")


def test_firmware_page_reports_in_words(page: Page) -> None:
    page.goto("/firmware")
    expect(page.locator("#loading")).to_be_hidden()
    # Without the firmware routes (or with ASSETS_DIR unset) a sentence; else the list.
    outcome = page.locator("#unavailable, #table-wrap, #empty").filter(visible=True)
    expect(outcome).to_have_count(1)
    notice = page.locator("#unavailable")
    if notice.is_visible():
        assert "{" not in notice.inner_text()
    screenshot(page, "firmware")


def test_firmware_list_and_delete(
    new_page: NewPage, serve: Serve, database_url: str, tmp_path: Path
) -> None:
    """A real upload through the API, then the page lists it and deletes it."""
    assets_dir = tmp_path / "assets"
    assets_dir.mkdir()
    app = build_assets_app(
        database_url, assets_dir, write_private_key(tmp_path / "ci.pem", rsa_key())
    )
    firmware = bytes(range(256)) * 5000  # 1.2 MiB
    assert upload(app.test_client(), "sensor-1.4.2.bin", firmware).status_code == 200
    page = new_page(serve(app))
    page.goto("/firmware")
    row = page.locator("#rows tr", has_text="sensor-1.4.2.bin")
    expect(row).to_contain_text("1.2 MiB")
    expect(row).to_contain_text(hashlib.sha256(firmware).hexdigest()[:12] + "…")
    # The checksum button's name starts with what it shows (WCAG "label in name").
    checksum = hashlib.sha256(firmware).hexdigest()[:12] + "… copy the SHA-256 of sensor-1.4.2.bin"
    expect(row.get_by_role("button", name=checksum, exact=True)).to_be_visible()
    page.get_by_role("button", name="Delete sensor-1.4.2.bin").click()
    page.get_by_role("dialog", name="Delete firmware?").get_by_role("button", name="Delete").click()
    expect(toast(page, "Deleted sensor-1.4.2.bin.")).to_be_visible()
    expect(page.locator("#empty")).to_be_visible()
    assert not (assets_dir / "sensor-1.4.2.bin").exists()
    app.extensions["iotsupport"].database.dispose()


def test_a_401_sends_the_browser_to_log_in(page: Page) -> None:
    def refuse(route: Route) -> None:
        route.fulfill(
            status=401, json={"error": "log in first", "code": "unauthorized", "details": {}}
        )

    page.route("**/api/configs", refuse)
    with page.expect_request("**/api/auth/login?redirect=*") as login:
        page.goto("/?q=lamp")
    assert login.value.url.endswith("/api/auth/login?redirect=%2F%3Fq%3Dlamp")


def test_unsaved_edits_survive_a_trip_to_the_login_page(page: Page, client: FlaskClient) -> None:
    config = create_config(client, "aa:bb:cc:dd:ee:07", '{"deviceName": "Shed"}')
    url = f"/devices/{config['id']}"

    def session_expired(route: Route) -> None:  # on the save; reading works again after login
        if route.request.method == "PUT":
            route.fulfill(status=401, json={"error": "log in again", "code": "unauthorized"})
        else:
            route.continue_()

    def log_in_again(route: Route) -> None:  # the provider sends the browser straight back
        route.fulfill(status=302, headers={"Location": url})

    page.goto(url)
    expect_text(page, '{"deviceName": "Shed"}')
    page.route(f"**/api/configs/{config['id']}", session_expired)
    page.route("**/api/auth/login?*", log_in_again)
    replace_text(page, '{"deviceName": "Garden shed"}')
    page.get_by_role("button", name="Save").click()
    expect(toast(page, "Your unsaved edits were kept")).to_be_visible()
    expect_text(page, '{"deviceName": "Garden shed"}')

    page.unroute(f"**/api/configs/{config['id']}")
    page.get_by_role("button", name="Save").click()
    expect(toast(page, "Saved version 2")).to_be_visible()
    assert stored_content(client, "aa:bb:cc:dd:ee:07") == '{"deviceName": "Garden shed"}'


def test_sync_state_history_diff_and_rollback(page: Page, app: Flask, client: FlaskClient) -> None:
    """The real history and check-in endpoints: a device fetches, the admin edits, rolls back."""
    mac = "aa:bb:cc:dd:ee:06"
    v1 = '{"deviceName": "Hall", "interval": 1}'
    config = create_config(client, mac, v1)
    config_id = config["id"]
    assert stored_content(client, mac) == v1  # the device fetches version 1
    state(app).reports.flush()
    v2 = '{"deviceName": "Hall", "interval": 2}'
    assert client.put(f"/api/configs/{config_id}", json={"content": v2}).status_code == 200

    page.goto("/")
    row = page.locator("#rows tr", has_text=mac)
    expect(row.locator(".badge.sync-pending")).to_have_text("Pending")
    expect(page.get_by_label("Sync")).to_be_visible()
    screenshot(page, "devices-sync", full_page=False)

    row.get_by_role("link").click()
    history_panel = page.locator("#history")
    expect(history_panel).to_be_visible()
    expect(page.locator("#sync")).to_contain_text("Pending")
    expect(page.locator("#meta")).to_contain_text("by anonymous")
    expect(history_panel.locator("#versions tr")).to_have_count(2)
    expect(history_panel.locator(".add")).to_contain_text('"interval": 2')
    expect(history_panel.locator(".del")).to_contain_text('"interval": 1')
    screenshot(page, "device-history")
    page.get_by_role("button", name="Roll back to version 1").click()
    page.get_by_role("dialog", name="Roll back?").get_by_role("button", name="Roll back").click()
    expect(toast(page, "Rolled back")).to_be_visible()
    expect_text(page, v1)
    expect(history_panel.locator("#versions tr")).to_have_count(3)
    current = client.get(f"/api/configs/{config_id}").get_json()
    assert current["version"] == 3 and stored_content(client, mac) == v1

    # The device picks version 3 up: the page says so once the fetch is written.
    state(app).reports.flush()
    page.reload()
    expect(page.locator("#sync")).to_contain_text("In sync")


def test_a_mistyped_page_is_a_page_and_api_clients_keep_json(
    page: Page, client: FlaskClient
) -> None:
    response = page.goto("/devicez")
    assert response is not None and response.status == 404
    expect(page.get_by_role("heading", name="Nothing here")).to_be_visible()
    page.get_by_role("link", name="Back to the devices").click()
    expect(page.get_by_role("heading", name=re.compile("^Devices"))).to_be_visible()
    assert client.get("/devicez").mimetype == "application/json"
    html_only = client.get("/api/nope", headers={"Accept": "text/html"})
    assert html_only.status_code == 404 and html_only.mimetype == "application/json"


def test_an_empty_fleet_says_so_and_links_to_new_device(page: Page) -> None:
    page.goto("/")
    expect(page.get_by_text("No devices yet.")).to_be_visible()
    page.get_by_role("link", name="Add the first one").click()
    expect(page).to_have_url(re.compile("/devices/new$"))


def test_login_round_trip_through_the_provider(new_page: NewPage, oidc_stack: Stack) -> None:
    """OIDC on: a visit goes through the provider's login and lands on the page asked for."""
    provider = re.escape(oidc_stack.provider_url)
    page = new_page(oidc_stack.app_url)
    page.goto("/?q=hall")
    expect(page).to_have_url(re.compile(provider + "/interaction/"))
    page.locator('input[name="login"]').fill("alice")
    page.get_by_role("button", name="Sign in").click()

    expect(page).to_have_url(oidc_stack.app_url + "/?q=hall")
    expect(page.locator("#user-name")).to_have_text("Alice Admin")
    expect(page.get_by_label("Filter devices")).to_have_value("hall")
    # The login cookie authenticates the page's own API calls (with our Origin).
    mac = random_mac()
    created = page.request.post(
        "/api/configs",
        data={"mac_address": mac, "content": {"deviceName": "Hall light"}},
        headers={"Origin": oidc_stack.app_url},
    )
    assert created.status == 201, created.text()
    page.reload()
    expect(page.locator("#rows tr", has_text=mac)).to_contain_text("Hall light")
    screenshot(page, "login-landed", full_page=False)

    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(provider + "/session/end"))
    page.get_by_role("button", name="Sign out").click()
    # Home again, but logged out everywhere: the provider asks who we are.
    expect(page).to_have_url(re.compile(provider + "/interaction/"))


def test_screenshots_of_each_page(new_page: NewPage, base_url: str, client: FlaskClient) -> None:
    """Every page, light on a laptop and dark on a phone, for a person to look at."""
    config = create_config(
        client, "24:0a:c4:12:34:01", '{"deviceName": "Kitchen display", "enableOTA": true}'
    )
    looks: list[tuple[t.Literal["light", "dark"], str, ViewportSize]] = [
        ("light", "wide", WIDE),
        ("dark", "phone", PHONE),
    ]
    for scheme, size, viewport in looks:
        page = new_page(base_url, viewport=viewport, color_scheme=scheme)
        for name, path, ready in (
            ("devices", "/", "#rows tr"),
            ("device", f"/devices/{config['id']}", "#device:not([hidden])"),
            ("new", "/devices/new", "#copy-from[data-ready]"),
            ("firmware", "/firmware", "#loading[hidden]"),
        ):
            page.goto(path)
            page.wait_for_selector(ready, state="attached")
            screenshot(page, f"{name}-{scheme}-{size}")


# --- device models and bulk change ------------------------------------------------------


def create_model(client: FlaskClient, code: str = "thermostat", **extra: t.Any) -> None:
    body = {"code": code, "name": "Thermostat", "schema": SCHEMA} | extra
    response = client.post("/api/models", json=body)
    assert response.status_code == 201, response.get_data(as_text=True)


def test_schema_errors_show_while_typing(page: Page, client: FlaskClient) -> None:
    create_model(client, template={"deviceName": "Hall", "display": {"brightness": 40}})
    config = client.post(
        "/api/configs",
        json={
            "mac_address": "aa:bb:cc:dd:ee:10",
            "content": '{"deviceName": "Hall"}',
            "model": "thermostat",
        },
    ).get_json()
    page.goto(f"/devices/{config['id']}")
    expect(page.get_by_role("combobox", name="Model")).to_have_value("thermostat")
    status = page.locator("#schema-status")
    expect(status).to_have_text("✓ Meets the schema of thermostat")
    replace_text(page, '{"deviceName": "", "display": {"brightness": 140}}')
    errors = page.locator("#schema-errors")
    expect(errors).to_contain_text("/display/brightness must be at most 100 (it is 140) (maximum)")
    expect(errors).to_contain_text("/deviceName")
    expect(status).to_have_text("✗ 2 schema errors")
    screenshot(page, "device-schema-errors")
    page.get_by_role("button", name="Save").click()
    expect(toast(page, "Not saved: the content does not meet the schema")).to_be_visible()
    assert stored_content(client, "aa:bb:cc:dd:ee:10") == '{"deviceName": "Hall"}'

    page.get_by_role("button", name="Schema and template").click()
    dialog = page.get_by_role("dialog", name="Model Thermostat (thermostat)")
    expect(dialog.locator("[data-model-schema]")).to_contain_text('"maximum": 100')
    expect(dialog.locator("[data-model-template]")).to_contain_text('"brightness": 40')
    dialog.get_by_role("button", name="Close").click()

    replace_text(page, '{"deviceName": "Hall", "display": {"brightness": 90}}')
    expect(errors).to_be_hidden()
    expect(status).to_have_text("✓ Meets the schema of thermostat")
    page.get_by_role("button", name="Save").click()
    expect(toast(page, "Saved version 2")).to_be_visible()

    # Moving it to no model: free-form again, no schema check.
    page.get_by_role("combobox", name="Model").select_option("")
    expect(status).to_be_hidden()
    page.get_by_role("button", name="Save").click()
    expect(toast(page, "Saved version 3")).to_be_visible()
    assert client.get(f"/api/configs/{config['id']}").get_json()["model"] is None


def test_a_new_device_starts_from_its_models_template(page: Page, client: FlaskClient) -> None:
    create_model(client, template={"deviceName": "New thermostat"})
    page.goto("/devices/new?model=thermostat")
    expect_text(page, '{\n  "deviceName": "New thermostat"\n}\n')
    page.get_by_label("MAC address").fill("aa:bb:cc:dd:ee:11")
    page.get_by_role("button", name="Create device").click()
    expect(page).to_have_url(re.compile(r"/devices/\d+$"))
    expect(page.get_by_role("combobox", name="Model")).to_have_value("thermostat")


def test_a_schema_change_is_confirmed_with_the_devices_it_breaks(
    page: Page, client: FlaskClient
) -> None:
    create_model(client)
    for index, brightness in enumerate((20, 80)):
        client.post(
            "/api/configs",
            json={
                "mac_address": f"aa:bb:cc:dd:ee:2{index}",
                "content": {"deviceName": f"T{index}", "display": {"brightness": brightness}},
                "model": "thermostat",
            },
        )
    page.goto("/models")
    row = page.locator("#rows tr", has_text="thermostat")
    expect(row).to_contain_text("2")
    page.get_by_role("link", name="thermostat").click()
    schema = page.get_by_label("JSON Schema")
    expect(schema).to_have_value(re.compile('"maximum": 100'))
    schema.fill(schema.input_value().replace('"maximum": 100', '"maximum": 50'))
    page.get_by_role("button", name="Save model").click()
    dialog = page.get_by_role("dialog", name="Some devices would not meet the new schema")
    expect(dialog).to_contain_text("1 device of this model would not meet the new schema")
    expect(dialog).to_contain_text("aa:bb:cc:dd:ee:21")
    expect(dialog).to_contain_text("must be at most 50 (it is 80)")
    screenshot(page, "model-schema-confirm")
    dialog.get_by_role("button", name="Keep editing").click()
    expect(toast(page, "Not saved.")).to_be_visible()
    assert client.get("/api/models/thermostat").get_json()["version"] == 1

    page.get_by_role("button", name="Save model").click()
    dialog.get_by_role("button", name="Save anyway").click()
    expect(toast(page, "Saved version 2.")).to_be_visible()
    expect(page.locator("#counts")).to_contain_text("2 devices, 1 not meeting the schema")
    page.goto("/models")
    expect(page.locator("#rows tr", has_text="thermostat")).to_contain_text("1 not meeting it")
    page.goto("/?model=thermostat")
    expect(page.locator("#rows tr", has_text="aa:bb:cc:dd:ee:21")).to_contain_text("✗ schema")
    expect(page.locator("#count")).to_have_text("2")

    page.goto("/models/thermostat")
    page.get_by_role("button", name="Delete…").click()
    page.get_by_role("dialog", name="Delete this model?").get_by_role(
        "button", name="Delete"
    ).click()
    expect(toast(page, "Not deleted: 2 configs use model 'thermostat'")).to_be_visible()


def test_a_new_model_with_a_bad_schema_says_where(page: Page, client: FlaskClient) -> None:
    page.goto("/models/new")
    page.get_by_label("Code", exact=False).fill("display")
    page.get_by_label("Name", exact=True).fill("Display")
    page.get_by_label("JSON Schema").fill('{"type": "objekt"}')
    page.get_by_role("button", name="Save model").click()
    expect(page.locator("#form-errors")).to_contain_text("/type")
    page.get_by_label("JSON Schema").fill('{"type": "object"}')
    page.get_by_role("button", name="Save model").click()
    expect(page).to_have_url(re.compile("/models/display$"))
    expect(toast(page, "Created model display.")).to_be_visible()


def test_bulk_change_with_preview_apply_and_undo(
    page: Page, client: FlaskClient, publisher: RecordingPublisher
) -> None:
    macs = [f"aa:bb:cc:dd:ee:3{index}" for index in range(4)]
    originals = {}
    for index, mac in enumerate(macs):
        text = f'{{\n    "deviceName": "Lamp {index}",\n    "mqttBroker": "10.0.0.1"\n}}'
        create_config(client, mac, text)
        originals[mac] = text
    create_config(client, "aa:bb:cc:dd:ee:99", '{"deviceName": "Other"}')
    page.goto("/")
    page.get_by_label("Filter devices").fill("Lamp")
    expect(page.locator("#count")).to_have_text("4 of 5")
    page.get_by_label("Select all shown").check()
    expect(page.locator("#selected-count")).to_have_text("4 selected")
    page.get_by_label("Select aa:bb:cc:dd:ee:33").uncheck()
    expect(page.locator("#selected-count")).to_have_text("3 selected")
    page.get_by_role("button", name="Change selected…").click()
    page.get_by_label("Patch (JSON)").fill('{"mqttBroker": "10.0.0.5", "debug": true}')
    page.get_by_role("button", name="Preview").click()
    expect(page.locator("#bulk-summary")).to_have_text("3 devices would change, 0 unchanged.")
    results = page.locator("#bulk-results")
    expect(results.locator(".bulk-change")).to_have_count(3)
    expect(results.locator(".del").first).to_contain_text('"mqttBroker": "10.0.0.1"')
    expect(results.locator(".add").first).to_contain_text('"mqttBroker": "10.0.0.5"')
    screenshot(page, "bulk-preview")
    publisher.messages.clear()
    page.get_by_role("button", name="Apply").click()
    undo = toast(page, "Changed 3 devices")
    expect(undo).to_be_visible()
    changed = '{\n    "deviceName": "Lamp 0",\n    "mqttBroker": "10.0.0.5",\n    "debug": true\n}'
    assert stored_content(client, macs[0]) == changed
    assert stored_content(client, macs[3]) == originals[macs[3]]
    assert len(publisher.messages) == 3
    screenshot(page, "bulk-applied", full_page=False)

    undo.get_by_role("button", name="Undo").click()
    expect(toast(page, "Undone: 3 devices back as before.")).to_be_visible()
    for mac in macs:
        assert stored_content(client, mac) == originals[mac]
    assert len(publisher.messages) == 6


def test_bulk_undo_lists_devices_changed_since(page: Page, client: FlaskClient) -> None:
    a = create_config(client, "aa:bb:cc:dd:ee:40", '{"n": 1}')
    b = create_config(client, "aa:bb:cc:dd:ee:41", '{"n": 2}')
    page.goto("/")
    page.get_by_label("Select all shown").check()
    page.get_by_role("button", name="Change selected…").click()
    page.get_by_label("Patch (JSON)").fill('{"n": 0}')
    page.get_by_role("button", name="Preview").click()
    expect(page.locator("#bulk-summary")).to_contain_text("2 devices would change")
    page.get_by_role("button", name="Apply").click()
    undo = toast(page, "Changed 2 devices")
    expect(undo).to_be_visible()
    assert client.put(f"/api/configs/{b['id']}", json={"content": '{"n": 5}'}).status_code == 200
    undo.get_by_role("button", name="Undo").click()
    refused = toast(page, "Not undone: aa:bb:cc:dd:ee:41 changed since.")
    expect(refused).to_be_visible()
    refused.get_by_role("button", name="Undo the others").click()
    expect(toast(page, "1 device left as they are")).to_be_visible()
    assert stored_content(client, "aa:bb:cc:dd:ee:40") == '{"n": 1}'
    assert stored_content(client, "aa:bb:cc:dd:ee:41") == '{"n": 5}'
    assert a["id"] != b["id"]


# --- device credentials ---------------------------------------------------------------------


def test_issue_copy_rotate_download_a_bundle_and_revoke(
    new_page: NewPage, base_url: str, client: FlaskClient, tmp_path: Path
) -> None:
    config = create_config(client, "aa:bb:cc:dd:ee:08", '{"deviceName": "Gate"}')
    mac = "aa:bb:cc:dd:ee:08"
    page = new_page(base_url, permissions=["clipboard-read", "clipboard-write"])
    page.goto(f"/devices/{config['id']}")
    box = page.locator("#credential")
    expect(box).to_contain_text("No credential")

    page.get_by_role("button", name="Issue token").click()
    dialog = page.get_by_role("dialog", name="Device token")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("shown only this once")
    token = page.get_by_role("textbox", name="Device token").input_value()
    assert token.startswith("iotd_")
    dialog.get_by_role("button", name="Copy").click()
    expect(toast(page, "Token copied.")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == token
    screenshot(page, "device-token")
    dialog.get_by_role("button", name="Done").click()
    expect(box).to_contain_text("Token issued")
    assert client.get(f"/api/configs/{mac}.json", headers=ui_bearer(token)).status_code == 200

    page.get_by_role("button", name="Rotate token").click()
    rotated = page.get_by_role("textbox", name="Device token").input_value()
    assert rotated.startswith("iotd_") and rotated != token
    dialog.get_by_role("button", name="Done").click()
    assert client.get(f"/api/configs/{mac}.json", headers=ui_bearer(token)).status_code == 200

    page.locator("#provisioning summary").click()
    page.get_by_label("Format").select_option("nvs")
    page.get_by_label("Wi-Fi SSID").fill("homelab-iot")
    page.get_by_label("Wi-Fi password").fill("not stored")
    screenshot(page, "device-provisioning")
    with page.expect_download() as download:
        page.get_by_role("button", name="Download bundle").click()
    assert download.value.suggested_filename == "aa-bb-cc-dd-ee-08-nvs.bin"
    saved = tmp_path / "nvs.bin"
    download.value.save_as(saved)
    stored = read_partition(saved.read_bytes())["iotsupport"]
    assert stored["wifi_ssid"] == ("string", "homelab-iot")
    bundle_token = stored["token"][1]
    assert (
        client.get(f"/api/configs/{mac}.json", headers=ui_bearer(bundle_token)).status_code == 200
    )
    expect(page.get_by_label("Wi-Fi password")).to_have_value("")

    page.get_by_role("button", name="Revoke…").click()
    page.get_by_role("dialog", name="Revoke this device's credential?").get_by_role(
        "button", name="Revoke"
    ).click()
    expect(toast(page, "Credential revoked")).to_be_visible()
    expect(box).to_contain_text("No credential")
    assert (
        client.get(f"/api/configs/{mac}.json", headers=ui_bearer(bundle_token)).status_code == 401
    )


def test_the_list_marks_devices_that_fetch_without_a_credential(
    page: Page, app: Flask, client: FlaskClient
) -> None:
    migrated = create_config(client, "aa:bb:cc:dd:ee:09", '{"deviceName": "Migrated"}')
    create_config(client, "aa:bb:cc:dd:ee:0a", '{"deviceName": "Legacy"}')
    token = client.post(f"/api/configs/{migrated['id']}/credential").get_json()["token"]
    client.get("/api/configs/aa:bb:cc:dd:ee:09.json", headers=ui_bearer(token))
    client.get("/api/configs/aa:bb:cc:dd:ee:0a.json")
    state(app).reports.flush()
    page.goto("/")
    legacy = page.locator("#rows tr", has_text="aa:bb:cc:dd:ee:0a")
    expect(legacy.locator(".badge.no-credential")).to_have_text("fetched without a credential")
    done = page.locator("#rows tr", has_text="aa:bb:cc:dd:ee:09")
    expect(done.locator(".badge.credential-on")).to_have_text("token")
    expect(done.locator(".badge.no-credential")).to_have_count(0)
    screenshot(page, "devices-credentials", full_page=False)
    legacy.get_by_role("link").click()
    expect(page.locator("#credential")).to_contain_text("fetched without a credential")


def ui_bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_the_api_docs_run_under_their_strict_policy(page: Page) -> None:
    """Swagger UI renders the document with no inline script allowed and nothing refused."""
    refused: list[str] = []
    page.on(
        "console",
        lambda message: (
            refused.append(message.text)
            if "Content Security Policy" in message.text or "Refused to" in message.text
            else None
        ),
    )
    page.goto("/api/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("IoTSupport")
    expect(page.locator(".opblock-tag", has_text="configs")).to_be_visible()
    assert refused == []
    screenshot(page, "api-docs")
