"""The web UI end to end: a real headless Chromium (Playwright) against a served app.

One browser per session and a new context per test. `serve` starts any app on a
werkzeug server thread and `new_page` opens a page on it, so a test needing other
settings (OIDC on, say) builds its own app: `new_page(serve(create_app(...)))`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import tomllib
import typing as t
from collections.abc import Callable
from collections.abc import Iterator
from pathlib import Path
from pathlib import PurePosixPath

import pytest
from assets_support import build_assets_app
from assets_support import rsa_key
from assets_support import upload
from assets_support import write_private_key
from conftest import RecordingPublisher
from conftest import random_mac
from conftest import unavailable
from flask import Flask
from flask.testing import FlaskClient
from oidc_stack import Stack
from playwright.sync_api import Browser
from playwright.sync_api import Page
from playwright.sync_api import Route
from playwright.sync_api import ViewportSize
from playwright.sync_api import expect
from playwright.sync_api import sync_playwright
from werkzeug.serving import BaseWSGIServer
from werkzeug.serving import make_server

from iotsupport.configs.service import ConfigService
from iotsupport.db import commit
from iotsupport.extensions import state

CHROMIUM = os.environ.get("IOTSUPPORT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
WIDE: ViewportSize = {"width": 1280, "height": 800}
PHONE: ViewportSize = {"width": 390, "height": 844}

Serve = Callable[[Flask], str]


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).is_file():
        unavailable(f"Chromium not found at {CHROMIUM} (apt-get install chromium)")
    playwright = sync_playwright().start()
    try:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    except Exception as exc:  # noqa: BLE001 - a browser that cannot start is "absent"
        playwright.stop()
        unavailable(f"Chromium at {CHROMIUM} did not start: {str(exc)[:200]}")
    yield launched
    launched.close()
    playwright.stop()


@pytest.fixture
def serve() -> Iterator[Serve]:
    """Start apps on local ports (threaded werkzeug); every one is stopped after the test."""
    servers: list[tuple[BaseWSGIServer, threading.Thread]] = []

    def start(app: Flask) -> str:
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        servers.append((server, thread))
        return f"http://127.0.0.1:{server.server_port}"

    yield start
    for server, thread in servers:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def base_url(app: Flask, serve: Serve) -> str:
    return serve(app)


NewPage = Callable[..., Page]


@pytest.fixture
def new_page(browser: Browser) -> Iterator[NewPage]:
    """Open a page in a fresh context on any served app; fails the test on a JavaScript error."""
    contexts = []
    errors: list[str] = []

    def open_page(base_url: str, **options: t.Any) -> Page:
        options.setdefault("viewport", WIDE)
        context = browser.new_context(base_url=base_url, **options)
        context.set_default_timeout(5000)
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        return page

    yield open_page
    for context in contexts:
        context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"


@pytest.fixture
def page(new_page: NewPage, base_url: str) -> Page:
    return new_page(base_url)


def screenshot(page: Page, name: str, *, full_page: bool = True) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=full_page)


def create_config(client: FlaskClient, mac: str, content: str) -> dict[str, t.Any]:
    response = client.post("/api/configs", json={"mac_address": mac, "content": content})
    assert response.status_code == 201, response.get_data(as_text=True)
    body: dict[str, t.Any] = response.get_json()
    return body


def stored_content(client: FlaskClient, mac: str) -> str | None:
    response = client.get(f"/api/configs/{mac}.json")
    return response.get_data(as_text=True) if response.status_code == 200 else None


def seed(app: Flask, count: int) -> None:
    """`count` configs in one transaction, through the service like the API would."""
    app_state = state(app)
    session = app_state.database.session()
    service = ConfigService(session, app_state.publisher)
    for index in range(count):
        mac = f"24:0a:c4:00:{index // 256:02x}:{index % 256:02x}"
        content = {"deviceName": f"Sensor {index:04d}", "enableOTA": index % 2 == 0}
        if index % 10:
            content["deviceEntityId"] = f"sensor.room_{index:04d}"
        service.create(mac, json.dumps(content, indent=2))
    commit(session)
    session.close()


def toast(page: Page, text: str) -> t.Any:
    return page.locator(".toast", has_text=text)


# --- without a browser ----------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/devices/new", "/devices/7", "/firmware"])
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
    editor = page.get_by_label("Content (JSON)")
    expect(editor).to_have_value(
        '{\n  "deviceName": "",\n  "deviceEntityId": "",\n  "enableOTA": false\n}\n'
    )
    content = '{"deviceName": "Desk lamp",   "enableOTA": true}'
    editor.fill(content)
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
    page.get_by_role("button", name="Create device").click()
    expect(
        toast(page, "Not created: a config for aa:bb:cc:dd:ee:02 already exists")
    ).to_be_visible()


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
    editor = page.get_by_label("Content (JSON)")
    expect(editor).to_have_value('{"deviceName": "Porch"}')
    expect(page.get_by_label("Device URL")).to_have_value(
        re.compile(r"^http://127\.0\.0\.1:\d+/api/configs/aa:bb:cc:dd:ee:03\.json$")
    )

    editor.fill('{\n  "deviceName": "Porch light",\n  "enableOTA": tru\n}')
    status = page.locator("#parse-status")
    expect(status).to_contain_text("Line 3, column 16")
    expect(page.locator("#dirty")).to_be_visible()
    screenshot(page, "device-invalid-json")
    page.get_by_role("button", name="Save").click()
    expect(
        toast(page, "Not saved: the content is not a valid JSON object (line 3, column 16")
    ).to_be_visible()
    assert stored_content(client, "aa:bb:cc:dd:ee:03") == '{"deviceName": "Porch"}'

    editor.fill('{"deviceName": "Porch light", "enableOTA": true, "extra": [1, 2]}')
    expect(status).to_contain_text("Valid JSON object, 3 keys")
    page.get_by_role("button", name="Format").click()
    formatted = (
        '{\n  "deviceName": "Porch light",\n  "enableOTA": true,\n'
        '  "extra": [\n    1,\n    2\n  ]\n}\n'
    )
    expect(editor).to_have_value(formatted)
    editor.press("Control+s")
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
    editor = page.get_by_label("Content (JSON)")
    expect(editor).to_have_value(re.compile("Garage"))
    editor.fill('{\n  "deviceName": "Garage door",\n  "interval": 30\n}')

    theirs = '{"deviceName": "Garage", "interval": 60}'
    assert client.put(f"/api/configs/{config['id']}", json={"content": theirs}).status_code == 200
    page.get_by_role("button", name="Save").click()
    dialog = page.get_by_role("dialog", name="Someone else saved this device meanwhile")
    expect(dialog).to_be_visible()
    expect(dialog.locator(".del")).to_contain_text('"interval": 30')
    expect(dialog.locator(".add")).to_contain_text('"interval": 60')
    screenshot(page, "device-conflict")
    dialog.get_by_role("button", name="Load theirs").click()
    expect(editor).to_have_value(theirs)
    assert stored_content(client, "aa:bb:cc:dd:ee:04") == theirs

    # Again, and this time the admin keeps their own version.
    mine = '{"deviceName": "Garage door", "interval": 60}'
    editor.fill(mine)
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
    editor = page.get_by_label("Content (JSON)")
    expect(editor).to_have_value('{"deviceName": "Shed"}')
    page.route(f"**/api/configs/{config['id']}", session_expired)
    page.route("**/api/auth/login?*", log_in_again)
    editor.fill('{"deviceName": "Garden shed"}')
    page.get_by_role("button", name="Save").click()
    expect(toast(page, "Your unsaved edits were kept")).to_be_visible()
    expect(editor).to_have_value('{"deviceName": "Garden shed"}')

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
    state(app).checkins.flush()
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
    expect(page.get_by_label("Content (JSON)")).to_have_value(v1)
    expect(history_panel.locator("#versions tr")).to_have_count(3)
    current = client.get(f"/api/configs/{config_id}").get_json()
    assert current["version"] == 3 and stored_content(client, mac) == v1

    # The device picks version 3 up: the page says so once the fetch is written.
    state(app).checkins.flush()
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
            ("new", "/devices/new", "#copy-from option[value]"),
            ("firmware", "/firmware", "#loading[hidden]"),
        ):
            page.goto(path)
            page.wait_for_selector(ready, state="attached")
            screenshot(page, f"{name}-{scheme}-{size}")


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
