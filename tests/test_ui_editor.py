"""The JSON editor (CodeMirror) on the device and new-device pages, in Chromium.

The browser fixtures are in ui_support; editor_support reads and fills the editor.
"""

from __future__ import annotations

import json
import re
import secrets
import typing as t
from pathlib import Path

from editor_support import content_box
from editor_support import expect_text
from editor_support import replace_text
from flask import Flask
from flask import render_template
from flask.testing import FlaskClient
from playwright.sync_api import Page
from playwright.sync_api import Route
from playwright.sync_api import expect
from ui_support import NewPage
from ui_support import create_config
from ui_support import screenshot
from ui_support import stored_content
from ui_support import toast

from iotsupport.ui import CONTENT_SECURITY_POLICY
from iotsupport.ui import static_digest

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = (
    '{\n  "deviceName": "Porch",\n  "wifi": {\n    "ssid": "home",\n    "channel": 6\n  },\n'
    '  "enableOTA": true,\n  "sensor": null\n}'
)


def open_device(page: Page, client: FlaskClient, content: str, mac: str) -> None:
    config = create_config(client, mac, content)
    page.goto(f"/devices/{config['id']}")
    expect_text(page, content)


def test_the_vendored_bundle_is_the_one_the_npm_lock_builds() -> None:
    """Changing ui-vendor/package.json without `make ui-vendor` fails here, not in a browser."""
    lock = json.loads((ROOT / "ui-vendor" / "package-lock.json").read_text())
    locked = {
        path.removeprefix("node_modules/"): entry["version"]
        for path, entry in lock["packages"].items()
        if path.startswith("node_modules/") and "/node_modules/" not in path[len("node_modules/") :]
    }
    vendor = ROOT / "src" / "iotsupport" / "ui" / "static" / "vendor"
    banner = (vendor / "codemirror.js").read_text().split("\n", 1)[0]
    bundled = re.findall(r"(@?[\w.-]+(?:/[\w.-]+)?) (\d+\.\d+\.\d+)", banner)
    licences = (vendor / "LICENSES.txt").read_text()
    assert {"@codemirror/view", "codemirror-json-schema"} <= {name for name, _ in bundled}
    for name, version in bundled:
        assert locked.get(name) == version, name
        assert f"\n{name} {version} (" in licences, name


def test_every_page_gets_its_own_style_nonce_and_nothing_else_inline(client: FlaskClient) -> None:
    nonces = []
    for _ in range(2):
        response = client.get("/devices/new")
        policy = response.headers["Content-Security-Policy"]
        nonce = re.search(r"style-src 'self' 'nonce-([\w-]+)';", policy)
        assert nonce and "unsafe-inline" not in policy and "script-src 'self';" in policy
        assert f'<meta name="csp-nonce" content="{nonce[1]}">' in response.get_data(as_text=True)
        nonces.append(nonce[1])
    assert nonces[0] != nonces[1]


def test_highlighting_line_numbers_brackets_and_folding(page: Page, client: FlaskClient) -> None:
    open_device(page, client, SAMPLE, "aa:bb:cc:dd:ee:11")
    box = content_box(page)
    expect(box).to_have_attribute("aria-describedby", "parse-status editor-keys")
    for kind, text in (("key", '"wifi"'), ("string", '"home"'), ("number", "6"), ("atom", "null")):
        expect(page.locator(f".tok-{kind}", has_text=text).first).to_be_visible()
    numbers = page.locator(".cm-lineNumbers .cm-gutterElement").filter(visible=True)
    expect(numbers).to_have_text([str(line) for line in range(1, 10)])

    box.press("Control+Home")  # the cursor before the first "{" marks it and its partner
    expect(page.locator(".cm-matchingBracket")).to_have_count(2)

    lines = page.locator(".cm-line")
    expect(lines).to_have_count(9)
    page.locator(".cm-foldGutter .cm-gutterElement").nth(2).locator("span").click()  # "wifi": {
    expect(page.locator(".cm-line", has=page.locator(".cm-foldPlaceholder"))).to_have_text(
        '  "wifi": {…},'
    )
    expect(lines).to_have_count(6)
    screenshot(page, "editor-folded")
    page.locator(".cm-foldPlaceholder").click()
    expect(lines).to_have_count(9)
    expect_text(page, SAMPLE)  # folding only hides


def test_typing_indents_and_closes_brackets_on_the_new_page(page: Page) -> None:
    page.goto("/devices/new")
    page.wait_for_selector("#copy-from[data-ready]", state="attached")
    box = content_box(page)
    box.press("Control+a")
    box.press("Delete")
    box.press_sequentially("{")
    box.press("Enter")  # between the brackets: the "}" moves down and the line is indented
    box.press_sequentially('"deviceName": "Desk')
    box.press("End")
    box.press_sequentially(",")
    box.press("Enter")
    box.press_sequentially('"enableOTA": true')
    expect_text(page, '{\n  "deviceName": "Desk",\n  "enableOTA": true\n}')
    expect(page.locator("#parse-status")).to_have_text("✓ Valid JSON object, 2 keys")

    # Typed content is not thrown away without asking when the source changes.
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.get_by_label("a copy of").check()
    expect_text(page, '{\n  "deviceName": "Desk",\n  "enableOTA": true\n}')


def test_format_keeps_keys_numbers_and_escapes_and_undoes_in_one_step(
    page: Page, client: FlaskClient
) -> None:
    compact = (
        '{"b":1.0,"10":12345678901234567890,"a":"caf\\u00e9 \\"q\\"\\n",'
        '"2":[1e5,-0.0,[ ],{}],"n":{"x":null,"y":[true,false]}}'
    )
    open_device(page, client, compact, "aa:bb:cc:dd:ee:12")
    page.get_by_role("button", name="Format").click()
    expect_text(
        page,
        '{\n  "b": 1.0,\n  "10": 12345678901234567890,\n  "a": "caf\\u00e9 \\"q\\"\\n",\n'
        '  "2": [\n    1e5,\n    -0.0,\n    [],\n    {}\n  ],\n'
        '  "n": {\n    "x": null,\n    "y": [\n      true,\n      false\n    ]\n  }\n}\n',
    )
    expect(content_box(page)).to_be_focused()
    page.keyboard.press("Control+z")
    expect_text(page, compact)
    expect(page.locator("#dirty")).to_be_hidden()


def test_format_of_a_200_kb_config_matches_python(page: Page, client: FlaskClient) -> None:
    devices = [
        {"id": index, "name": f"Sensor {index}", "pins": [index % 7, 2, 3], "on": index % 2 == 0}
        for index in range(3500)
    ]
    content = {"deviceName": "Big", "devices": devices, "empty": {}, "none": []}
    compact = json.dumps(content, separators=(",", ":"))
    assert len(compact) > 200_000
    open_device(page, client, compact, "aa:bb:cc:dd:ee:13")
    page.get_by_role("button", name="Format").click()
    expect_text(page, json.dumps(content, indent=2) + "\n")
    expect(page.locator("#parse-status")).to_have_text("✓ Valid JSON object, 4 keys")


def test_search_and_replace(page: Page, client: FlaskClient) -> None:
    open_device(page, client, SAMPLE, "aa:bb:cc:dd:ee:14")
    content_box(page).press("Control+f")
    panel = page.locator(".cm-search")
    expect(panel).to_be_visible()
    find = panel.get_by_role("textbox", name="Find")
    expect(find).to_be_focused()
    find.fill("home")
    panel.get_by_role("textbox", name="Replace").fill("cabin")
    expect(page.locator(".cm-searchMatch")).to_have_count(1)
    screenshot(page, "editor-search", full_page=False)
    panel.get_by_role("button", name="replace all").click()
    expect_text(page, SAMPLE.replace('"home"', '"cabin"'))
    find.press("Escape")
    expect(panel).to_be_hidden()
    page.keyboard.press("Control+s")
    expect(toast(page, "Saved version 2")).to_be_visible()
    assert stored_content(client, "aa:bb:cc:dd:ee:14") == SAMPLE.replace('"home"', '"cabin"')


def test_tab_indents_and_escape_then_tab_moves_on(page: Page, client: FlaskClient) -> None:
    open_device(page, client, '{\n"deviceName": "Hall"\n}', "aa:bb:cc:dd:ee:15")
    box = content_box(page)
    box.press("Control+Home")
    box.press("ArrowDown")
    page.keyboard.press("Tab")
    expect_text(page, '{\n  "deviceName": "Hall"\n}')
    expect(box).to_be_focused()
    page.keyboard.press("Escape")
    page.keyboard.press("Tab")
    expect(box).not_to_be_focused()
    expect(page.get_by_role("button", name="Save")).to_be_focused()


def test_parse_errors_point_at_the_place(page: Page, client: FlaskClient) -> None:
    open_device(page, client, '{"deviceName": "Attic"}', "aa:bb:cc:dd:ee:16")
    replace_text(page, '{\n  "deviceName": "Attic",\n  "interval": 30,\n}')
    status = page.locator("#parse-status")
    expect(status).to_contain_text("Line 3, column 17: trailing comma before '}'")
    expect(page.locator(".cm-lint-marker-error")).to_have_count(1)
    status.get_by_role("button", name="Go to error").click()
    expect(content_box(page)).to_be_focused()
    page.keyboard.press("Delete")  # the selection is the comma
    expect_text(page, '{\n  "deviceName": "Attic",\n  "interval": 30\n}')
    expect(status).to_have_text("✓ Valid JSON object, 2 keys")
    expect(page.locator(".cm-lint-marker-error")).to_have_count(0)


# --- JSON Schema hints, through the editor's own API -------------------------------------

SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["deviceName"],
    "additionalProperties": False,
    "properties": {
        "deviceName": {"type": "string", "description": "The name shown in Home Assistant"},
        "brightness": {
            "type": "integer",
            "exclusiveMinimum": 0,
            "maximum": 100,
            "description": "Display brightness in percent",
        },
        "wifi": {"type": "object", "properties": {"ssid": {"type": "string", "maxLength": 32}}},
    },
}

# A page with the editor alone; its script uses the module as device.js does.
EDITOR_PAGE_SCRIPT = 'import { setupEditor } from "./editor.js";\nwindow.editor = setupEditor();\n'


def open_editor_page(page: Page, app: Flask) -> None:
    """Serve (through the browser's router) a page with only the editor, under the real CSP."""
    digest = static_digest()
    nonce = secrets.token_urlsafe(12)
    with app.test_request_context():
        editor = render_template("editor.html")
    html = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Editor</title>'
        f'<meta name="csp-nonce" content="{nonce}">'
        f'<link rel="stylesheet" href="/ui/static/{digest}/style.css">'
        f'<script type="module" src="/ui/static/{digest}/editor-page.js"></script>'
        f"</head><body><main>{editor}</main></body></html>"
    )
    headers = {"Content-Security-Policy": CONTENT_SECURITY_POLICY.format(nonce=nonce)}

    def shell(route: Route) -> None:
        route.fulfill(content_type="text/html", body=html, headers=headers)

    def script(route: Route) -> None:
        route.fulfill(content_type="text/javascript", body=EDITOR_PAGE_SCRIPT)

    page.route("**/editor-page", shell)
    page.route("**/editor-page.js", script)
    page.goto("/editor-page")
    page.wait_for_function("window.editor !== undefined")


def lint_messages(page: Page) -> list[str]:
    """The diagnostics as the lint panel lists them (Ctrl+Shift+M, as a keyboard user would)."""
    content_box(page).press("Control+Shift+M")
    items = page.locator(".cm-panel-lint li")
    expect(items.first).to_be_visible()
    texts: list[str] = items.all_inner_texts()
    page.keyboard.press("Escape")
    return [" ".join(text.split()) for text in texts]


def test_schema_completion_hover_and_margin(new_page: NewPage, base_url: str, app: Flask) -> None:
    page = new_page(base_url)
    open_editor_page(page, app)
    page.evaluate(
        'schema => { editor.text = \'{\\n  "deviceName": "Lamp",\\n  \\n}\';'
        " editor.setSchema(schema); }",
        SCHEMA,
    )
    box = content_box(page)
    box.press("Control+End")
    box.press("ArrowUp")
    box.press("End")
    box.press_sequentially('"bri')
    option = page.locator(".cm-tooltip-autocomplete li", has_text="brightness")
    expect(option).to_be_visible()
    expect(page.locator(".cm-completionInfo")).to_have_text("Display brightness in percent")
    # A click (Enter is ignored for 75 ms after the list changes: CodeMirror's interactionDelay).
    option.click()
    box.press_sequentially("150")
    expect_text(page, '{\n  "deviceName": "Lamp",\n  "brightness": 150\n}')

    expect(page.locator(".cm-lint-marker-error")).to_have_count(1)
    expect(page.locator(".cm-lintRange-error")).to_have_text("150")
    assert lint_messages(page) == [
        "Value in /brightness is 150, but should be 100 at maximum schema"
    ]

    page.locator(".tok-key", has_text='"brightness"').hover()
    hover = page.locator(".cm-tooltip-hover")
    expect(hover).to_contain_text("Display brightness in percent")
    expect(hover).to_contain_text("integer")
    screenshot(page, "editor-schema-hover", full_page=False)

    replace_text(page, '{"brightness": 0, "colour": "red"}')
    ranges = page.locator(".cm-lintRange-error")
    expect(ranges).to_have_count(3)
    assert ranges.all_inner_texts() == ["{", "0", '"colour"']
    assert lint_messages(page) == [
        "The required property deviceName is missing schema",
        "Value in /brightness is 0, but should be 0 at minimum schema",  # exclusive, as of draft 6
        "Additional property colour is not allowed schema",
    ]

    page.evaluate("() => editor.setSchema(null)")
    expect(ranges).to_have_count(0)


def test_server_errors_in_the_margin(new_page: NewPage, base_url: str, app: Flask) -> None:
    page = new_page(base_url)
    open_editor_page(page, app)
    errors: list[dict[str, t.Any]] = [
        {"path": "/wifi/ssid", "message": "'a long name' is too long", "keyword": "maxLength"},
        {
            "path": "",
            "message": '"deviceName" must be set (the schema requires it)',
            "keyword": "required",
        },
        {"path": "/wifi/channels/3", "message": "gone", "keyword": "type"},  # past the end
    ]
    page.evaluate(
        'errors => { editor.text = \'{"wifi": {"ssid": "a long name"}, "brightness": 5}\';'
        " editor.setServerErrors(errors); }",
        errors,
    )
    ranges = page.locator(".cm-lintRange-error")
    expect(ranges).to_have_count(3)
    assert ranges.all_inner_texts() == ["{", '"wifi"', '"a long name"']
    assert lint_messages(page) == [
        '"deviceName" must be set (the schema requires it) server: required',
        "/wifi/channels/3: gone server: type",
        "/wifi/ssid: 'a long name' is too long server: maxLength",
    ]
    screenshot(page, "editor-server-errors", full_page=False)

    # Editing what an error marks clears that error; the others stay until the next answer.
    marked = page.locator(".cm-lintRange-error", has_text="long").bounding_box()
    assert marked is not None
    page.mouse.click(marked["x"] + marked["width"] - 1, marked["y"] + marked["height"] / 2)
    page.keyboard.press("ArrowLeft")  # before the closing quote
    for _ in "name":
        page.keyboard.press("Backspace")
    page.keyboard.type("title")
    expect_text(page, '{"wifi": {"ssid": "a long title"}, "brightness": 5}')
    expect(ranges).to_have_count(2)
    page.evaluate("() => editor.setServerErrors([])")
    expect(ranges).to_have_count(0)
