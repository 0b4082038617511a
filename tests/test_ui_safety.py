"""The UI keeps an admin of many devices safe: a rollout defaults to the newest release and
is confirmed with its stages; a bulk change can skip the configs it would break; the change
sets have a page; action buttons cannot be pressed twice; a lost server is shown."""

from __future__ import annotations

import time

from editor_support import expect_text
from editor_support import replace_text
from flask import Flask
from flask.testing import FlaskClient
from playwright.sync_api import Page
from playwright.sync_api import Request
from playwright.sync_api import Route
from playwright.sync_api import expect
from release_support import release_image
from rollout_support import Fleet
from test_device_models import create_model
from test_ui_releases import image_file
from ui_support import NewPage
from ui_support import screenshot
from ui_support import stored_content
from ui_support import toast


def test_a_rollout_defaults_to_the_newest_release_and_is_confirmed(
    app: Flask, new_page: NewPage, base_url: str
) -> None:
    fleet = Fleet(app, 10, versions=("1.0.0",))
    fleet.settle()
    page: Page = new_page(base_url)
    page.goto("/models/thermo/releases")
    release = page.get_by_label("Release", exact=True)
    expect(release).to_have_value("1.0.0")
    release.select_option("1.0.0")  # the admin's choice, before a newer release exists
    page.set_input_files("#image", files=image_file("thermo.bin", release_image("1.2.0")))
    page.get_by_role("button", name="Upload").click()
    expect(toast(page, "Uploaded release 1.2.0")).to_be_visible()
    expect(release).to_have_value("1.2.0")
    expect(page.get_by_role("button", name="Upload")).to_be_focused()

    page.get_by_label("Stages").fill("1, 50%, 100%")
    page.get_by_role("button", name="Start rollout").click()
    dialog = page.get_by_role("dialog", name="Start a rollout of 1.2.0?")
    expect(dialog).to_be_visible()
    expect(dialog.locator("li")).to_have_text(
        ["Stage 1: 1 device", "Stage 2: 4 devices", "Stage 3: 5 devices"]
    )
    expect(dialog).to_contain_text("10 devices of thermo now: 10 on 1.0.0.")
    expect(dialog.get_by_role("button", name="Cancel")).to_be_focused()  # the safe choice
    screenshot(page, "rollout-confirm")
    dialog.get_by_role("button", name="Cancel").click()
    assert fleet.client.get("/api/models/thermo/rollouts").get_json()["count"] == 0

    release.select_option("1.0.0")
    page.get_by_role("button", name="Start rollout").click()
    older = page.get_by_role("dialog", name="Start a rollout of 1.0.0?")
    expect(older).to_contain_text("This is not the newest release (1.2.0 is).")
    older.get_by_role("button", name="Start rollout").click()
    expect(page).to_have_url(f"{base_url}/models/thermo/rollouts/1")
    assert fleet.rollout(1)["version"] == "1.0.0"


def thermostats(client: FlaskClient, count: int, failing: int) -> None:
    """`count` thermostats, of which `failing` already fail a stricter schema."""
    create_model(client, "thermostat", {"type": "object"})
    for index in range(count):
        content = {"deviceName": f"T{index}"} | ({} if index < failing else {"serial": index})
        body = {"mac_address": f"aa:00:00:00:01:{index:02x}", "content": content}
        assert client.post("/api/configs", json=body | {"model": "thermostat"}).status_code == 201
    strict = {"name": "T", "schema": {"type": "object", "required": ["serial"]}, "confirm": True}
    assert client.put("/api/models/thermostat", json=strict).status_code == 200


def test_a_bulk_change_can_skip_the_configs_it_would_break(page: Page, client: FlaskClient) -> None:
    thermostats(client, 161, failing=7)  # the thermostats
    page.goto("/")
    expect(page.locator("#count")).to_have_text("161")
    began = time.perf_counter()
    page.get_by_label("Select all shown").check()
    page.get_by_role("button", name="Change selected…").click()
    page.get_by_label("Patch (JSON)").fill('{"mode": "eco"}')
    page.get_by_role("button", name="Preview").click()
    summary = page.locator("#bulk-summary")
    expect(summary).to_have_text(
        "154 devices would change, 0 unchanged; 7 would not meet their schema (listed first)."
    )
    groups = page.locator("#bulk-results details.bulk-group > summary")
    expect(groups).to_have_text(["Refused: would not meet their schema (7)", "Changing (154)"])
    refused = page.locator("#bulk-results details.bulk-group").first
    expect(refused.locator(".bulk-change")).to_have_count(7)
    expect(refused).to_contain_text('"serial" must be set')
    apply = page.get_by_role("button", name="Apply")
    expect(apply).to_be_disabled()
    page.get_by_label("Skip the 7 devices that would not meet their schema").check()
    expect(apply).to_be_enabled()
    screenshot(page, "bulk-skip-invalid", full_page=False)
    apply.click()
    expect(toast(page, "Changed 154 devices")).to_contain_text(
        "7 devices left as they were (would not meet their schema)"
    )
    took = time.perf_counter() - began
    print(f"\nTIMING bulk change of 161 thermostats, 7 invalid skipped: {took:.2f} s")
    assert '"mode"' not in (stored_content(client, "aa:00:00:00:01:00") or "")
    assert '"mode": "eco"' in (stored_content(client, "aa:00:00:00:01:0a") or "")


def test_the_change_sets_page_lists_and_undoes(page: Page, client: FlaskClient) -> None:
    thermostats(client, 4, failing=0)
    ids = [row["id"] for row in client.get("/api/configs").get_json()["configs"]]
    for patch in ({"mode": "eco"}, {"fan": 2}):
        preview = client.post("/api/configs/bulk", json={"select": {"ids": ids}, "patch": patch})
        expect_ = {str(row["id"]): row["etag"] for row in preview.get_json()["changes"]}
        body = {"select": {"ids": ids}, "patch": patch, "dry_run": False, "expect": expect_}
        assert client.post("/api/configs/bulk", json=body).status_code == 201
    page.goto("/change-sets")
    expect(page.get_by_role("heading", level=1)).to_contain_text("Change sets")
    rows = page.locator("#rows tr")
    expect(rows).to_have_count(2)
    expect(rows.first).to_contain_text('{"fan":2}')
    expect(rows.first.locator("td.num")).to_have_text("4")
    rows.first.get_by_role("button", name="Undo change set 2").click()
    expect(toast(page, "Undone: 4 devices back as before.")).to_be_visible()
    expect(rows.first).to_contain_text("undone by")
    assert client.get("/api/change-sets/2").get_json()["undone_at"] is not None
    assert '"fan"' not in (stored_content(client, "aa:00:00:00:01:00") or "")
    assert '"mode": "eco"' in (stored_content(client, "aa:00:00:00:01:00") or "")


def test_an_action_button_works_once_however_often_it_is_clicked(
    page: Page, client: FlaskClient
) -> None:
    created = client.post("/api/configs", json={"mac_address": "aa:00:00:00:02:01", "content": {}})
    held: list[Route] = []

    def hold_posts(route: Route, request: Request) -> None:
        if request.method == "POST":
            held.append(route)  # answered below: the server is slow
        else:
            route.continue_()

    page.route("**/credential", hold_posts)
    page.goto(f"/devices/{created.get_json()['id']}")
    button = page.get_by_role("button", name="Issue token")
    button.dblclick()
    expect(button).to_have_attribute("aria-busy", "true")
    button.click()
    page.wait_for_timeout(300)
    assert len(held) == 1  # one request, however many clicks
    held[0].continue_()
    expect(page.get_by_role("dialog", name="Device token")).to_be_visible()
    expect(page.locator("#issue-token")).not_to_have_attribute("aria-busy", "true")


def test_a_lost_server_is_shown_until_it_answers_again(page: Page, client: FlaskClient) -> None:
    client.post("/api/configs", json={"mac_address": "aa:00:00:00:03:01", "content": {}})
    page.goto("/")
    expect(page.locator("#rows tr")).to_have_count(1)
    page.route("**/api/**", lambda route: route.abort("connectionrefused"))
    page.get_by_label("Select all shown").check()
    page.get_by_role("button", name="Change selected…").click()
    page.get_by_role("button", name="Preview").click()
    banner = page.get_by_role("alert").filter(has_text="The server cannot be reached")
    expect(banner).to_be_visible()
    page.unroute("**/api/**")
    expect(banner).to_be_hidden(timeout=15_000)
    expect(toast(page, "The server answers again.")).to_be_visible()


def test_a_stalled_stage_says_why_and_skips_the_unreachable(
    app: Flask, new_page: NewPage, base_url: str
) -> None:
    fleet = Fleet(app, 5)
    fleet.settle()
    fleet.start(["100%"], error_threshold="20%")
    for device in fleet.devices[:3]:
        fleet.update(device)
    fleet.settle()
    page: Page = new_page(base_url)
    page.goto("/models/thermo/rollouts/1")
    expect(page.locator("#summary")).to_contain_text(
        "a device not updated 1 hour after its stage started counts as failed"
    )
    stage = page.locator("li.stage").first
    expect(stage).to_contain_text(
        "2 devices have not contacted the server since this stage started"
    )
    stage.locator("summary").click()
    headers = stage.locator("thead th")
    expect(headers).to_have_text(
        ["Device", "State", "Reports", "Last report", "Last contact", "Times out"]
    )
    screenshot(page, "rollout-stalled")
    stage.get_by_role("button", name="Skip 2 not reachable").click()
    expect(toast(page, "Skipped 2 devices of stage 1")).to_be_visible()
    expect(page.locator("#state")).to_have_text("Completed")
    expect(page.locator("#summary")).to_be_focused()
    assert fleet.rollout(1)["counts"]["skipped"] == 2


def test_pause_and_resume_keep_the_keyboard_on_the_actions(
    app: Flask, new_page: NewPage, base_url: str
) -> None:
    fleet = Fleet(app, 3)
    fleet.start([1, "100%"])
    page: Page = new_page(base_url)
    page.goto("/models/thermo/rollouts/1")
    page.get_by_role("button", name="Pause").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("button", name="Resume")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_role("button", name="Pause")).to_be_focused()


def test_attach_fifty_devices_to_a_model_in_one_bulk_change(
    page: Page, client: FlaskClient
) -> None:
    create_model(client, "lamp", {"type": "object", "required": ["deviceName"]})
    for index in range(50):
        body = {
            "mac_address": f"aa:00:00:00:04:{index:02x}",
            "content": {"deviceName": f"L{index}"},
        }
        assert client.post("/api/configs", json=body).status_code == 201
    page.goto("/")
    expect(page.locator("#rows tr")).to_have_count(50)
    began = time.perf_counter()
    page.get_by_label("Select all shown").check()
    page.get_by_role("button", name="Change selected…").click()
    page.get_by_label("Patch (JSON)").fill("{}")
    page.get_by_label("Model", exact=True).select_option("lamp")
    page.get_by_role("button", name="Preview").click()
    expect(page.locator("#bulk-summary")).to_have_text("50 devices would change, 0 unchanged.")
    expect(page.locator(".bulk-change .badge", has_text="model: none → lamp")).to_have_count(50)
    page.get_by_role("button", name="Apply").click()
    expect(toast(page, "Changed 50 devices")).to_be_visible()
    took = time.perf_counter() - began
    print(f"\nTIMING attach 50 devices to a model via bulk change: {took:.2f} s")
    models = {row["model"] for row in client.get("/api/configs").get_json()["configs"]}
    assert models == {"lamp"}


def test_the_editor_hears_of_someone_elses_save_before_saving(
    new_page: NewPage, base_url: str, client: FlaskClient
) -> None:
    created = client.post(
        "/api/configs", json={"mac_address": "aa:00:00:00:07:01", "content": '{"n": 1}'}
    ).get_json()
    page = new_page(base_url)
    page.clock.install()
    page.goto(f"/devices/{created['id']}")
    expect_text(page, '{"n": 1}')
    replace_text(page, '{"n": 2}')
    other = client.put(f"/api/configs/{created['id']}", json={"content": '{"n": 3}'})
    assert other.status_code == 200
    page.clock.fast_forward(11_000)
    notice = toast(page, "Someone else saved this device meanwhile (version 2")
    expect(notice).to_be_visible()
    notice.get_by_role("button", name="Show their changes").click()
    expect(page.get_by_role("dialog")).to_contain_text("Version 2 was saved")


def test_a_save_whose_answer_was_lost_is_checked(
    new_page: NewPage, base_url: str, client: FlaskClient
) -> None:
    created = client.post(
        "/api/configs", json={"mac_address": "aa:00:00:00:07:02", "content": '{"n": 1}'}
    ).get_json()
    page = new_page(base_url)
    page.goto(f"/devices/{created['id']}")
    expect_text(page, '{"n": 1}')

    def reach_then_drop(route: Route, request: Request) -> None:
        if request.method == "PUT":
            route.fetch()  # the server saves it...
            route.abort("connectionreset")  # ...and the answer is lost on the way back
        else:
            route.continue_()

    page.route(f"**/api/configs/{created['id']}", reach_then_drop)
    replace_text(page, '{"n": 2}')
    page.get_by_role("button", name="Save", exact=True).click()
    expect(toast(page, "Saved version 2 (its answer was lost; checked).")).to_be_visible()
    expect(page.locator("#alerts .toast")).to_have_count(0)
    assert stored_content(client, "aa:00:00:00:07:02") == '{"n": 2}'


def test_a_slow_list_says_loading_not_no_devices(page: Page, client: FlaskClient) -> None:
    client.post("/api/configs", json={"mac_address": "aa:00:00:00:08:01", "content": {}})
    held: list[Route] = []

    def hold_list(route: Route, request: Request) -> None:
        if request.url.endswith("/api/configs"):
            held.append(route)
        else:
            route.continue_()

    page.route("**/api/configs*", hold_list)
    page.goto("/")
    page.get_by_label("Filter devices").fill("kitchen")  # typing while it loads
    expect(page.locator("#loading")).to_be_visible()
    expect(page.locator("#count")).to_have_text("")
    expect(page.locator("#empty")).to_be_hidden()
    page.wait_for_timeout(300)
    assert len(held) >= 1
    for route in held:
        route.continue_()
    page.unroute("**/api/configs*")
    page.get_by_label("Filter devices").fill("")
    expect(page.locator("#count")).to_have_text("1")


def test_the_keyboard_stays_on_download_bundle(page: Page, client: FlaskClient) -> None:
    created = client.post(
        "/api/configs", json={"mac_address": "aa:00:00:00:09:01", "content": {}}
    ).get_json()
    page.goto(f"/devices/{created['id']}")
    page.locator("#provisioning summary").click()
    page.get_by_label("Wi-Fi SSID").fill("lab")
    button = page.get_by_role("button", name="Download bundle")
    button.focus()
    with page.expect_download():
        page.keyboard.press("Enter")
    expect(toast(page, "Bundle downloaded")).to_be_visible()
    expect(button).to_be_focused()


def test_the_refresh_replaces_only_the_rows_that_changed(page: Page, client: FlaskClient) -> None:
    ids = []
    for index in range(120):
        body = {
            "mac_address": f"aa:00:00:00:0a:{index:02x}",
            "content": {"deviceName": f"D{index}"},
        }
        ids.append(client.post("/api/configs", json=body).get_json()["id"])
    page.clock.install()
    page.goto("/")
    expect(page.locator("#rows tr")).to_have_count(120)
    # Count the rows taken out of the table (a full re-render takes out every one).
    page.evaluate(
        """() => { window.removedRows = 0;
          new MutationObserver((records) => {
            for (const record of records) window.removedRows += record.removedNodes.length;
          }).observe(document.getElementById('rows'), { childList: true }); }"""
    )
    changed = client.put(f"/api/configs/{ids[5]}", json={"content": {"deviceName": "Renamed"}})
    assert changed.status_code == 200
    page.clock.fast_forward(6000)
    expect(page.locator("#rows tr", has_text="Renamed")).to_have_count(1)
    page.wait_for_timeout(200)
    assert page.evaluate("() => window.removedRows") == 1  # only the changed row
