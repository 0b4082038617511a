// The JSON editor: CodeMirror 6 (vendored, see ui-vendor/) with a live "does it parse?"
// line, Format, and the model's JSON Schema as hints.

import { checkDoc, hints, serverErrorsEffect } from "./editor-hints.js";
import { formatJson } from "./json.js";
import {
  EditorState, EditorView, Compartment, Transaction, autocompletion, bracketMatching,
  closeBrackets, closeBracketsKeymap, completionKeymap, defaultKeymap, drawSelection,
  dropCursor, foldGutter, foldKeymap, forceLinting, highlightActiveLine,
  highlightActiveLineGutter, highlightSelectionMatches, highlightSpecialChars, history,
  historyKeymap, indentOnInput, indentWithTab, json, keymap, lineNumbers, lintGutter,
  lintKeymap, rectangularSelection, search, searchKeymap, syntaxHighlighting, tagHighlighter,
  tags, updateSchema,
} from "./vendor/codemirror.js";

export { checkContent, findJsonError, formatJson, lineAndColumn, positionFromMessage } from "./json.js";

// Colours come from style.css (tok-* classes), so light and dark follow the page.
const highlighter = tagHighlighter([
  { tag: tags.propertyName, class: "tok-key" },
  { tag: tags.string, class: "tok-string" },
  { tag: tags.number, class: "tok-number" },
  { tag: [tags.bool, tags.null], class: "tok-atom" },
  { tag: [tags.brace, tags.squareBracket, tags.separator], class: "tok-punct" },
]);

// A large document is checked once typing pauses rather than on every frame.
const LARGE = 50_000;
const LARGE_DELAY_MS = 150;

const isSpace = (char) => char === " " || char === "\n" || char === "\r" || char === "\t";

/** Where `position` in `before` lands in `after`, the same JSON with other whitespace. */
function samePlace(before, after, position) {
  let solid = 0;
  for (let index = 0; index < position; index += 1) if (!isSpace(before[index])) solid += 1;
  let index = 0;
  for (; index < after.length && solid > 0; index += 1) if (!isSpace(after[index])) solid -= 1;
  return index;
}

/**
 * Wire up the editor in the page (ids content, content-label, parse-status, format).
 * `onInput(state, {user})` runs after every change with the latest check; `user` is true
 * when the admin made the change (typing, pasting, Format, undo), false for `text = ...`.
 */
export function setupEditor({ onInput = () => {} } = {}) {
  const container = document.getElementById("content");
  const status = document.getElementById("parse-status");
  const formatButton = document.getElementById("format");
  const nonce = document.querySelector('meta[name="csp-nonce"]')?.content ?? "";
  const dark = window.matchMedia("(prefers-color-scheme: dark)");
  const theme = new Compartment();
  let schema = null;
  let checked = null; // the document `state` belongs to
  let state;
  let userEdit = false;
  let cancelCheck = () => {}; // the check waiting for a frame or a pause, if any
  let text = { doc: null, value: "" }; // the last document as a string

  function extensions() {
    return [
      lineNumbers(), highlightActiveLineGutter(), foldGutter(), lintGutter(),
      highlightSpecialChars(), history(), drawSelection(), dropCursor(),
      EditorState.allowMultipleSelections.of(true), indentOnInput(),
      syntaxHighlighting(highlighter), bracketMatching(), closeBrackets(), autocompletion(),
      rectangularSelection(), highlightActiveLine(), highlightSelectionMatches(),
      search({ top: true }), json(), hints(schema),
      keymap.of([
        ...closeBracketsKeymap, ...defaultKeymap, ...searchKeymap, ...historyKeymap,
        ...foldKeymap, ...completionKeymap, ...lintKeymap, indentWithTab,
      ]),
      EditorView.contentAttributes.of({
        "aria-labelledby": "content-label", "aria-describedby": "parse-status editor-keys",
        tabindex: "0", // said out loud, so axe sees the scroller has a keyboard stop in it
      }),
      EditorView.cspNonce.of(nonce),
      theme.of(EditorView.darkTheme.of(dark.matches)),
      EditorView.updateListener.of(changed),
    ];
  }

  const view = new EditorView({ parent: container, state: EditorState.create({ extensions: extensions() }) });

  function goToError() {
    if (state.ok || state.position === null) return;
    const from = Math.min(state.position, view.state.doc.length);
    view.dispatch({ selection: { anchor: from, head: Math.min(from + 1, view.state.doc.length) }, scrollIntoView: true });
    view.focus();
  }

  function render() {
    status.replaceChildren();
    status.classList.toggle("bad", !state.ok);
    view.contentDOM.setAttribute("aria-invalid", String(!state.ok));
    container.classList.toggle("bad", !state.ok);
    if (state.ok) {
      const keys = Object.keys(state.value).length;
      status.textContent = `✓ Valid JSON object, ${keys} ${keys === 1 ? "key" : "keys"}`;
      return;
    }
    const where = state.line ? `Line ${state.line}, column ${state.column}: ` : "";
    status.append(`✗ ${where}${state.message}`);
    if (state.position !== null) {
      const jump = document.createElement("button");
      jump.type = "button";
      jump.className = "link";
      jump.textContent = "Go to error";
      jump.addEventListener("click", goToError);
      status.append(" ", jump);
    }
  }

  function update() {
    cancelCheck();
    checked = view.state.doc;
    state = checkDoc(checked);
    render();
    const user = userEdit;
    userEdit = false;
    onInput(state, { user });
  }

  /** The check of what is in the editor now (a change still waiting is checked first). */
  function current() {
    if (checked !== view.state.doc) update();
    return state;
  }

  function changed(viewUpdate) {
    if (!viewUpdate.docChanged) return;
    if (viewUpdate.transactions.some((tr) => tr.annotation(Transaction.userEvent) !== undefined)) userEdit = true;
    cancelCheck();
    // Re-check on the next frame, not on every keystroke of a fast typist.
    if (view.state.doc.length > LARGE) {
      const timer = setTimeout(update, LARGE_DELAY_MS);
      cancelCheck = () => clearTimeout(timer);
    } else {
      const frame = requestAnimationFrame(update);
      cancelCheck = () => cancelAnimationFrame(frame);
    }
  }

  function format() {
    if (!current().ok) { goToError(); return; }
    const before = view.state.doc.toString();
    const after = formatJson(before);
    if (after !== before) {
      const cursor = samePlace(before, after, view.state.selection.main.head);
      view.dispatch({
        changes: { from: 0, to: view.state.doc.length, insert: after },
        selection: { anchor: cursor },
        scrollIntoView: true,
        userEvent: "input.format",
      });
    }
    view.focus();
    update();
  }

  formatButton.addEventListener("click", format);
  document.getElementById("content-label")?.addEventListener("click", () => view.focus());
  dark.addEventListener("change", () => {
    view.dispatch({ effects: theme.reconfigure(EditorView.darkTheme.of(dark.matches)) });
  });
  update();

  return {
    get text() {
      if (text.doc !== view.state.doc) text = { doc: view.state.doc, value: view.state.doc.toString() };
      return text.value;
    },
    set text(value) {
      // A new document: its own undo history, the current schema, no old server errors.
      view.setState(EditorState.create({ doc: value, extensions: extensions() }));
      userEdit = false;
      update();
    },
    get state() { return current(); },
    view,
    focus() { view.focus(); },
    check: update,
    format,
    /** Use `schema` (a JSON Schema object) for completion, hover help and the margin; null: none. */
    setSchema(value) {
      schema = value ?? null;
      updateSchema(view, schema ?? undefined);
      forceLinting(view);
    },
    /** Show the server's errors ([{path, message, keyword}], path a JSON Pointer) in the margin. */
    setServerErrors(errors) {
      view.dispatch({ effects: serverErrorsEffect(errors) });
      forceLinting(view);
    },
  };
}
