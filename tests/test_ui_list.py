"""The devices list at fleet scale, in Chromium: content search, a list that stays current,
rows that behave as links, sticky headers, import and export, Home Assistant links."""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

from flask import Flask
from flask.testing import FlaskClient
from playwright.sync_api import Page
from playwright.sync_api import Request
from playwright.sync_api import expect
from test_ui import seed
from ui_support import NewPage
from ui_support import ServeWith
from ui_support import create_config
from ui_support import screenshot
from ui_support import stored_content
from ui_support import toast

from iotsupport.extensions import state

WIFI = '{\n  "deviceName": "Porch",\n  "wifi": {\n    "ssid": "HomeLab-IoT"\n  }\n}'


def test_the_filter_searches_the_configs_content_on_the_server(
    page: Page, client: FlaskClient
) -> None:
    create_config(client, "aa:bb:cc:00:00:01", WIFI)
    create_config(client, "aa:bb:cc:00:00:02", '{"deviceName": "Garage", "wifi": {"ssid": "x"}}')
    create_config(client, "aa:bb:cc:00:00:03", '{"deviceName": "Homelab rack"}')
    page.goto("/")
    expect(page.locator("#count")).to_have_text("3")
    with page.expect_request(re.compile(r"/api/configs\?q=homelab")) as searched:
        page.get_by_label("Filter devices").fill("homelab")
    assert searched.value.url.endswith("q=homelab")
    # One matches by its name (at once, here), one by its content (with the line that
    # matched); the server finds both in their content.
    expect(page.locator("#count")).to_have_text("2 of 3")
    porch = page.locator("#rows tr", has_text="aa:bb:cc:00:00:01")
    expect(porch.locator("td.name .badge.content-match")).to_have_text("in content")
    expect(porch.locator("td.name .match code")).to_have_text('"ssid": "HomeLab-IoT"')
    expect(page.locator("#search-status")).to_have_text(
        "2 configs contain “homelab” (marked “in content”)."
    )
    expect(page.locator("#rows tr", has_text="Garage")).to_have_count(0)
    screenshot(page, "devices-content-search", full_page=False)
    page.get_by_label("Filter devices").fill("")
    expect(page.locator("#count")).to_have_text("3")
    expect(page.locator("td.name .badge.content-match")).to_have_count(0)


def test_the_list_stays_current_without_downloading_it_again(
    page: Page, app: Flask, client: FlaskClient
) -> None:
    stays = create_config(client, "aa:bb:cc:00:01:01", '{"deviceName": "Stays"}')
    goes = create_config(client, "aa:bb:cc:00:01:02", '{"deviceName": "Goes"}')
    lists: list[str] = []

    def count_lists(request: Request) -> None:
        if re.search(r"/api/configs(\?|$)", request.url):
            lists.append(request.url)

    page.on("request", count_lists)
    page.clock.install()
    page.goto("/")
    expect(page.locator("#rows tr", has_text="Stays").locator(".badge")).to_have_text(
        "Never fetched"
    )
    client.delete(f"/api/configs/{goes['id']}")
    create_config(client, "aa:bb:cc:00:01:03", '{"deviceName": "Arrives"}')
    assert stored_content(client, "aa:bb:cc:00:01:01") is not None  # the device fetches
    state(app).reports.flush()
    page.clock.fast_forward(6000)
    expect(page.locator("#rows tr", has_text="Arrives")).to_be_visible()
    expect(page.locator("#rows tr", has_text="Goes")).to_have_count(0)
    stayed = page.locator("#rows tr", has_text="Stays")
    expect(stayed.locator(".badge.sync-in_sync")).to_have_text("In sync")
    expect(stayed.locator("td").nth(9)).not_to_have_text("—")  # the last fetch
    expect(page.locator("#count")).to_have_text("2")
    # The whole list came once; after it only what changed since its cursor.
    assert len([url for url in lists if "since=" not in url]) == 1
    assert any("since=" in url for url in lists)
    assert stays["id"] != goes["id"]


def test_rows_open_like_links_and_let_text_be_selected(page: Page, client: FlaskClient) -> None:
    config = create_config(
        client, "aa:bb:cc:00:02:01", '{"deviceName": "Desk", "deviceEntityId": "light.desk"}'
    )
    page.goto("/")
    entity = page.locator("#rows tr td", has_text="light.desk")
    # Dragging over the entity ID selects it, as in any table: no navigation.
    box = entity.locator("span").bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + 1, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] - 1, box["y"] + box["height"] / 2, steps=5)
    page.mouse.up()
    assert page.evaluate("() => window.getSelection().toString()") == "light.desk"
    assert page.url.endswith("/")

    # Ctrl+click and middle click open the device in a new tab; this page stays.
    name = page.locator("#rows tr td", has_text="Desk").first
    for options in ({"modifiers": ["Control"]}, {"button": "middle"}):
        with page.context.expect_page() as opened:
            name.click(**options)
        opened.value.wait_for_load_state()
        assert opened.value.url.endswith(f"/devices/{config['id']}")
        opened.value.close()
        assert page.url.endswith("/")
    # A plain click opens it here.
    name.click()
    expect(page).to_have_url(re.compile(rf"/devices/{config['id']}$"))


def test_column_headers_stay_visible_while_scrolling(page: Page, app: Flask) -> None:
    seed(app, 200)
    page.goto("/")
    expect(page.locator("#rows tr")).to_have_count(150)
    page.mouse.wheel(0, 3000)
    header = page.get_by_role("button", name="MAC")
    expect(header).to_be_in_viewport()
    box = header.bounding_box()
    assert box is not None and 0 <= box["y"] < 60


def test_import_with_a_preview_then_export(page: Page, client: FlaskClient, tmp_path: Path) -> None:
    create_config(client, "aa:bb:cc:00:03:02", '{"deviceName": "Old"}')
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("fleet/aa-bb-cc-00-03-01.json", '{"deviceName": "Imported"}')
        bundle.writestr("fleet/aa-bb-cc-00-03-02.json", '{"deviceName": "Renamed"}')
        bundle.writestr("fleet/readme.txt", "hello")
    page.goto("/")
    page.get_by_role("button", name="Import…").click()
    files = page.get_by_label("Files")
    expect(files).to_be_focused()
    files.set_input_files(
        {"name": "fleet.zip", "mimeType": "application/zip", "buffer": archive.getvalue()}
    )
    page.get_by_role("button", name="Preview").click()
    summary = page.locator("#import-summary")
    expect(summary).to_have_text(
        "Preview (nothing changed yet): 1 created, 1 updated, 0 unchanged, 1 skipped."
    )
    expect(summary).to_be_focused()
    report = page.locator("#import-rows tr")
    expect(report).to_have_count(3)
    expect(report.filter(has_text="readme.txt")).to_contain_text("skipped")
    expect(report.filter(has_text="readme.txt")).to_contain_text("not a .json file")
    assert stored_content(client, "aa:bb:cc:00:03:01") is None
    screenshot(page, "devices-import-preview")
    page.get_by_role("button", name="Import", exact=True).click()
    expect(summary).to_have_text("Imported: 1 created, 1 updated, 0 unchanged, 1 skipped.")
    expect(page.locator("#rows tr", has_text="Imported")).to_be_visible()
    assert stored_content(client, "aa:bb:cc:00:03:02") == '{"deviceName": "Renamed"}'

    with page.expect_download() as download:
        page.get_by_role("link", name="Export").click()
    assert re.fullmatch(r"iotsupport-configs-\d{8}-\d{6}\.zip", download.value.suggested_filename)
    saved = tmp_path / "export.zip"
    download.value.save_as(saved)
    with zipfile.ZipFile(saved) as exported:
        assert exported.namelist() == ["aa-bb-cc-00-03-01.json", "aa-bb-cc-00-03-02.json"]
        assert exported.read("aa-bb-cc-00-03-01.json") == b'{"deviceName": "Imported"}'


def test_undo_after_a_delete_is_where_the_keyboard_is(page: Page, client: FlaskClient) -> None:
    config = create_config(client, "aa:bb:cc:00:04:01", '{"deviceName": "Shed"}')
    create_config(client, "aa:bb:cc:00:04:02", '{"deviceName": "Other"}')
    page.goto(f"/devices/{config['id']}")
    page.get_by_role("button", name="Delete…").click()
    page.get_by_role("dialog", name="Delete this device's config?").get_by_role(
        "button", name="Delete"
    ).click()
    undo = toast(page, "Deleted aa:bb:cc:00:04:01").get_by_role("button", name="Undo")
    expect(undo).to_be_focused()
    page.keyboard.press("Enter")
    expect(toast(page, "Restored aa:bb:cc:00:04:01")).to_be_visible()
    expect(page.get_by_role("link", name="aa:bb:cc:00:04:01")).to_be_focused()


def test_entity_ids_link_to_home_assistant(new_page: NewPage, serve_with: ServeWith) -> None:
    app, url = serve_with(home_assistant_url="http://ha.local:8123/")
    config = create_config(
        app.test_client(),
        "aa:bb:cc:00:05:01",
        '{"deviceName": "Desk", "deviceEntityId": "light.desk"}',
    )
    page = new_page(url)
    page.goto("/")
    link = page.locator("#rows").get_by_role("link", name="light.desk")
    expect(link).to_have_attribute("href", "http://ha.local:8123/history?entity_id=light.desk")
    expect(link).to_have_attribute("target", "_blank")
    page.goto(f"/devices/{config['id']}")
    expect(page.locator("#subtitle").get_by_role("link", name="light.desk")).to_have_attribute(
        "href", "http://ha.local:8123/history?entity_id=light.desk"
    )
