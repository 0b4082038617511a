"""The firmware pages of a model in Chromium: upload a release, start a staged rollout,
watch it move as devices report, pause and resume it."""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient
from playwright.sync_api import FilePayload
from playwright.sync_api import Page
from playwright.sync_api import expect
from release_support import release_image
from rollout_support import Fleet
from ui_support import NewPage
from ui_support import screenshot
from ui_support import toast

REFRESH_MS = 3000  # how often the rollout page refreshes itself (rollout.js)
WATCH_MS = 15_000


def image_file(name: str, data: bytes) -> FilePayload:
    return {"name": name, "mimeType": "application/octet-stream", "buffer": data}


@pytest.mark.parametrize("path", ["/models/thermo/releases", "/models/thermo/rollouts/1"])
def test_the_pages_run_only_our_own_scripts(client: FlaskClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200 and response.mimetype == "text/html"
    policy = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert "<script>" not in response.get_data(as_text=True)


def test_upload_start_watch_pause_and_resume(app: Flask, new_page: NewPage, base_url: str) -> None:
    fleet = Fleet(app, 10, versions=("1.0.0",))
    page: Page = new_page(base_url)
    # The browser's clock is ours: the test moves it on to the next refresh, not waits for it.
    page.clock.install()
    page.goto("/models/thermo")
    page.get_by_role("link", name="Firmware and rollouts").click()
    expect(page).to_have_url(f"{base_url}/models/thermo/releases")
    expect(page.locator("#rows tr")).to_have_count(1)

    page.set_input_files("#image", files=image_file("thermo.bin", release_image("2.0.0")))
    page.get_by_role("button", name="Upload").click()
    expect(toast(page, "Uploaded release 2.0.0 (esp32)")).to_be_visible()
    expect(page.locator("#rows tr").first).to_contain_text("2.0.0")
    expect(page.locator("#chip")).to_have_text("Chip: esp32.")
    page.set_input_files("#image", files=image_file("x.bin", b"junk"))
    page.get_by_role("button", name="Upload").click()
    expect(toast(page, "not an ESP32 app image")).to_be_visible()

    page.get_by_label("Release", exact=True).select_option("2.0.0")
    page.get_by_label("Stages").fill("1, 50%, 100%")
    page.get_by_label("Error threshold").fill("50%")
    page.get_by_role("button", name="Start rollout").click()
    page.get_by_role("dialog").get_by_role("button", name="Start rollout").click()
    expect(page).to_have_url(f"{base_url}/models/thermo/rollouts/1")
    stages = page.locator("li.stage")
    expect(stages).to_have_count(3)
    expect(stages.nth(0)).to_contain_text("0/1 updated")
    expect(page.locator("#state")).to_have_text("Running")

    rollout = fleet.rollout(1)
    for device in fleet.stage_devices(rollout, 1):
        fleet.update(device)
    fleet.settle()
    page.clock.fast_forward(REFRESH_MS)
    expect(stages.nth(0)).to_contain_text("1/1 updated", timeout=WATCH_MS)
    expect(stages.nth(1)).to_contain_text("running", timeout=WATCH_MS)
    second = fleet.stage_devices(fleet.rollout(1), 2)
    fleet.download(second[0])
    fleet.update(second[1])
    fleet.settle()
    page.clock.fast_forward(REFRESH_MS)
    expect(stages.nth(1)).to_contain_text("1/4 updated, 1 downloading", timeout=WATCH_MS)
    stages.nth(1).locator("summary").click()
    expect(stages.nth(1).locator("tbody tr")).to_have_count(4)
    expect(stages.nth(1).locator("tbody")).to_contain_text("downloading")
    screenshot(page, "rollout")

    page.get_by_role("button", name="Pause").click()
    expect(toast(page, "Paused")).to_be_visible()
    expect(page.locator("#state")).to_have_text("Paused")
    for device in second[2:]:
        fleet.update(device)
    fleet.update(second[0])
    fleet.settle()
    assert fleet.rollout(1)["current_stage"] == 2  # paused: stage 3 waits
    page.get_by_role("button", name="Resume").click()
    expect(page.locator("#state")).to_have_text("Running")
    page.clock.fast_forward(REFRESH_MS)
    expect(stages.nth(2)).to_contain_text("running", timeout=WATCH_MS)
    expect(stages.nth(1).locator("tbody tr")).to_have_count(4)  # still open after refreshes

    page.get_by_role("link", name="Firmware").last.click()
    item = page.locator("#rollouts li").first
    expect(item).to_contain_text("Rollout 1")
    expect(item).to_contain_text("stage 3 of 3")
    screenshot(page, "releases")


def test_a_rollout_counts_unverified_reports_only_when_asked(
    app: Flask, new_page: NewPage, base_url: str
) -> None:
    fleet = Fleet(app, 2)
    page: Page = new_page(base_url)
    page.goto("/models/thermo/releases")
    page.get_by_label("Release", exact=True).select_option("2.0.0")
    page.get_by_label("Stages").fill("100%")
    expect(page.get_by_label("Count unverified reports")).not_to_be_checked()
    page.get_by_label("Count unverified reports").check()
    page.get_by_role("button", name="Start rollout").click()
    page.get_by_role("dialog").get_by_role("button", name="Start rollout").click()
    expect(page).to_have_url(f"{base_url}/models/thermo/rollouts/1")
    expect(page.locator("#summary")).to_contain_text("unverified reports counted")
    assert fleet.rollout(1)["unverified_reports"] is True
    fleet.client.post("/api/rollouts/1/cancel")
    fleet.start(["100%"])
    page.goto("/models/thermo/rollouts/2")
    expect(page.locator("#summary")).to_contain_text("unverified reports ignored")
