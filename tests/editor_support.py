"""Helpers for driving the JSON editor (CodeMirror) in the UI tests.

The editor is not a textarea, so there is no value to read: the text comes from the
editor's own state, through CodeMirror's public `EditorView.findFromDOM`, imported from
the vendored bundle the page itself loaded.
"""

from __future__ import annotations

from playwright.sync_api import Locator
from playwright.sync_api import Page
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

LABEL = "Content (JSON)"

# The page's own module URL leads to the vendored bundle (same digest, same module).
_READ = """async () => {
  const script = document.querySelector('script[type="module"]').src;
  const { EditorView } = await import(new URL("vendor/codemirror.js", script));
  const view = EditorView.findFromDOM(document.querySelector("#content .cm-editor"));
  return view.state.doc.toString();
}"""


def content_box(page: Page) -> Locator:
    """The editor's content area, found by its accessible name like a person would."""
    return page.get_by_role("textbox", name=LABEL)


def editor_text(page: Page) -> str:
    text: str = page.evaluate(_READ)
    return text


# A synchronous reader for wait_for_function: an async predicate returns a promise, which
# is truthy at once, so the wait would never wait.
_INSTALL_READER = """async () => {
  const script = document.querySelector('script[type="module"]').src;
  const { EditorView } = await import(new URL("vendor/codemirror.js", script));
  window.editorTextForTests = () => EditorView.findFromDOM(
    document.querySelector("#content .cm-editor"))?.state.doc.toString();
}"""


def expect_text(page: Page, expected: str, *, timeout: float = 5000) -> None:
    """Wait until the editor holds exactly `expected`; fail with a diff-friendly assert."""
    page.evaluate(_INSTALL_READER)
    try:
        page.wait_for_function(
            "(expected) => window.editorTextForTests() === expected", arg=expected, timeout=timeout
        )
    except PlaywrightTimeoutError:
        assert editor_text(page) == expected  # (equal at the very last moment: fine)


_PASTE = """(node, text) => {
  const data = new DataTransfer();
  data.setData("text/plain", text);
  const init = { clipboardData: data, bubbles: true, cancelable: true };
  node.dispatchEvent(new ClipboardEvent("paste", init));
}"""


def replace_text(page: Page, text: str) -> None:
    """Select everything in the editor and paste `text` over it.

    A paste, not Playwright's fill: Chromium's own insertion of several lines into an
    editable element adds style attributes, which the page's CSP (rightly) refuses.
    """
    box = content_box(page)
    box.press("Control+a")
    box.evaluate(_PASTE, text)
