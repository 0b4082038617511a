"""The crash pages: the fleet's crash groups, a group's page (resolve it), and the device
page's crashes, from a real dump decoded against its real ELF."""

from __future__ import annotations

import pytest
from conftest import unavailable
from coredump_fixtures import AppElf
from coredump_fixtures import CompilerMissing
from coredump_fixtures import app_elf
from coredump_fixtures import riscv_dump
from flask.testing import FlaskClient
from playwright.sync_api import Page
from playwright.sync_api import expect
from release_support import create_model
from test_coredumps import add_release
from test_coredumps import decode_pending
from test_coredumps import device
from test_coredumps import post_elf
from test_coredumps import upload
from ui_support import screenshot
from ui_support import toast


@pytest.fixture(scope="module")
def elf() -> AppElf:
    try:
        return app_elf()
    except CompilerMissing as exc:
        unavailable(str(exc))


def test_a_crash_group_from_the_list_to_resolved(
    page: Page, client: FlaskClient, elf: AppElf
) -> None:
    create_model(client, "sensor")
    add_release(client, elf, "1.0.0")
    assert post_elf(client, "1.0.0", elf.data).status_code == 201
    config_id, _, token = device(client)
    raw, _ = riscv_dump(elf)
    assert upload(client, raw, token).status_code == 201
    decode_pending(client)
    page.goto("/crashes")
    row = page.locator("#rows tr", has_text="store_value < parse_packet < process_reading")
    expect(row).to_contain_text("Store access fault")
    screenshot(page, "crashes")
    row.get_by_role("link").click()
    expect(page.locator("#frames tr").first).to_contain_text("sensor.c:8")
    expect(page.locator("#frames tr")).to_have_count(3)
    expect(page.locator("#releases tr")).to_contain_text("1.0.0")
    page.get_by_role("button", name="Resolve").click()
    expect(toast(page, "Marked resolved.")).to_be_visible()
    expect(page.locator("#status")).to_have_text("resolved")
    screenshot(page, "crash")
    page.goto(f"/devices/{config_id}")
    crashes = page.locator("#device-crash-rows tr")
    expect(crashes).to_contain_text("store_value (sensor.c:8)")
    expect(crashes).to_contain_text("1.0.0")
