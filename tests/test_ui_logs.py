"""Device logs in the web UI (Chromium): the device page's log, the fleet page, following
live, filters, links, and the device list's mark on devices that logged errors."""

from __future__ import annotations

import re

from conftest import random_mac
from flask import Flask
from flask.testing import FlaskClient
from playwright.sync_api import Page
from playwright.sync_api import expect
from ui_support import screenshot

from iotsupport.extensions import state


def device_with_logs(app: Flask, client: FlaskClient, body: str) -> tuple[int, str, str]:
    mac = random_mac()
    created = client.post("/api/configs", json={"mac_address": mac, "content": {"n": 1}})
    config_id = created.get_json()["id"]
    token = client.post(f"/api/configs/{config_id}/credential").get_json()["token"]
    send(app, client, token, body)
    return config_id, mac, token


def send(app: Flask, client: FlaskClient, token: str, body: str) -> None:
    answer = client.post(
        "/api/device/logs", data=body, headers={"Authorization": f"Bearer {token}"}
    )
    assert answer.status_code == 202
    state(app).reports.flush()


LONG = "x" * 3000


def test_the_device_page_shows_its_log_and_follows_it(
    page: Page, app: Flask, client: FlaskClient
) -> None:
    body = f"I (10) boot: \x1b[0;32mstarted\x1b[0m\nE (20) wifi: auth failed\nI (30) blob: {LONG}\n"
    config_id, _mac, token = device_with_logs(app, client, body)
    page.goto(f"/devices/{config_id}")
    lines = page.locator("#log-lines li")
    expect(lines).to_have_count(3)
    expect(lines.first.locator(".log-message")).to_have_text(LONG)
    expect(lines.nth(2).locator(".log-message")).to_have_text("started")
    assert "\x1b" not in page.locator("#log-lines").inner_text()
    assert "[0;32m" not in page.locator("#log-lines").inner_text()
    # A long line wraps inside the view: nothing scrolls sideways.
    assert page.locator("#log-lines").evaluate("(list) => list.scrollWidth <= list.clientWidth")
    # The time is in the browser's zone, to the millisecond.
    expect(lines.first.locator(".log-time")).to_have_text(re.compile(r"\d{1,2}:\d{2}:\d{2}"))
    page.get_by_label("Level").select_option("E")
    expect(lines).to_have_count(1)
    expect(lines.first.locator(".log-tag")).to_have_text("wifi:")
    page.get_by_label("Level").select_option("")
    expect(lines).to_have_count(3)
    expect(page.locator("#log-status")).to_contain_text("Following")
    send(app, client, token, "W (40) app: live line")
    expect(lines.first.locator(".log-message")).to_have_text("live line", timeout=15000)
    page.get_by_role("button", name="Pause").click()
    send(app, client, token, "W (50) app: while paused")
    page.wait_for_timeout(2500)
    expect(lines.first.locator(".log-message")).to_have_text("live line")
    page.get_by_role("button", name="Follow").click()
    expect(lines.first.locator(".log-message")).to_have_text("while paused", timeout=15000)
    page.get_by_label("Search").fill("AUTH")
    expect(lines).to_have_count(1)
    screenshot(page, "device-logs")


def test_the_fleet_page_links_lines_to_their_devices(
    page: Page, app: Flask, client: FlaskClient
) -> None:
    config_id, mac, _ = device_with_logs(app, client, "E (1) ota: image invalid\n")
    page.goto("/logs")
    line = page.locator("#log-lines li", has_text="image invalid")
    expect(line).to_have_count(1)
    line.get_by_role("link", name=mac).click()
    expect(page).to_have_url(re.compile(rf"/devices/{config_id}$"))


def test_the_device_list_marks_devices_with_errors_in_the_last_hour(
    page: Page, app: Flask, client: FlaskClient
) -> None:
    noisy, noisy_mac, _ = device_with_logs(app, client, "E (1) a: broke\nE (2) a: broke again")
    _, calm_mac, _ = device_with_logs(app, client, "I (1) a: fine")
    page.goto("/")
    badge = page.locator("#rows tr", has_text=noisy_mac).locator(".badge.log-errors")
    expect(badge).to_have_text("2 errors in the last hour")
    expect(badge).to_have_attribute("href", f"/devices/{noisy}#logs")
    expect(page.locator("#rows tr", has_text=calm_mac).locator(".badge.log-errors")).to_have_count(
        0
    )
