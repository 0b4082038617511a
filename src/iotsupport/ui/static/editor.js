// The JSON editor: a textarea with a live "does it parse?" line and a Format button.
//
// Browsers word JSON.parse errors differently and not all give a position, so a
// small strict scanner finds the first error and its position itself.

const MAX_DEPTH = 500;

class JsonError extends Error {
  constructor(message, position) {
    super(message);
    this.position = position;
  }
}

function describe(char) {
  return char === undefined ? "end of text" : `'${char}'`;
}

/** Strict JSON check: null when `text` is valid JSON, else {message, position}. */
export function findJsonError(text) {
  let index = 0;

  const fail = (message, at = index) => { throw new JsonError(message, at); };
  const skipSpace = () => { while (" \t\n\r".includes(text[index]) && index < text.length) index += 1; };

  function literal(word) {
    if (text.startsWith(word, index)) { index += word.length; return; }
    fail(`unexpected ${describe(text[index])}; expected a value`);
  }

  function string() {
    index += 1;
    while (true) {
      const char = text[index];
      if (char === undefined) fail("the text ends inside a string (missing closing \")");
      if (char === '"') { index += 1; return; }
      if (char < " ") fail(char === "\n" ? "line break inside a string (use \\n)" : "control character inside a string");
      if (char === "\\") {
        const escape = text[index + 1];
        if (escape === "u") {
          if (!/^[0-9a-fA-F]{4}$/.test(text.slice(index + 2, index + 6))) fail("\\u must be followed by 4 hex digits");
          index += 6;
          continue;
        }
        if (escape === undefined || !'"\\/bfnrt'.includes(escape)) fail(`invalid escape \\${escape ?? ""}`);
        index += 2;
        continue;
      }
      index += 1;
    }
  }

  function number() {
    const match = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/.exec(text.slice(index, index + 400));
    if (!match || match[0] === "-") fail(`unexpected ${describe(text[index])}; expected a value`);
    if (!Number.isFinite(Number(match[0]))) fail("number too large");
    index += match[0].length;
    if (/[0-9.eE+\-]/.test(text[index] ?? "")) fail(`unexpected ${describe(text[index])} in a number`);
  }

  function value(depth) {
    if (depth > MAX_DEPTH) fail("nested too deeply");
    skipSpace();
    const char = text[index];
    if (char === "{") return object(depth);
    if (char === "[") return array(depth);
    if (char === '"') return string();
    if (char === "t") return literal("true");
    if (char === "f") return literal("false");
    if (char === "n") return literal("null");
    if (char === "-" || (char >= "0" && char <= "9")) return number();
    if (char === "'") fail("strings need double quotes");
    return fail(`unexpected ${describe(char)}; expected a value`);
  }

  function object(depth) {
    index += 1;
    skipSpace();
    if (text[index] === "}") { index += 1; return; }
    let comma = -1;
    while (true) {
      skipSpace();
      if (text[index] === "}" && comma >= 0) fail("trailing comma before '}'", comma);
      if (text[index] !== '"') fail(`unexpected ${describe(text[index])}; expected a "quoted" property name`);
      string();
      skipSpace();
      if (text[index] !== ":") fail(`expected ':' after the property name, found ${describe(text[index])}`);
      index += 1;
      value(depth + 1);
      skipSpace();
      if (text[index] === ",") { comma = index; index += 1; continue; }
      if (text[index] === "}") { index += 1; return; }
      fail(`expected ',' or '}' after a property value, found ${describe(text[index])}`);
    }
  }

  function array(depth) {
    index += 1;
    skipSpace();
    if (text[index] === "]") { index += 1; return; }
    let comma = -1;
    while (true) {
      skipSpace();
      if (text[index] === "]" && comma >= 0) fail("trailing comma before ']'", comma);
      value(depth + 1);
      skipSpace();
      if (text[index] === ",") { comma = index; index += 1; continue; }
      if (text[index] === "]") { index += 1; return; }
      fail(`expected ',' or ']' after an array item, found ${describe(text[index])}`);
    }
  }

  try {
    skipSpace();
    if (index >= text.length) fail("the content is empty; a JSON object starts with '{'");
    value(0);
    skipSpace();
    if (index < text.length) fail(`unexpected ${describe(text[index])} after the end of the JSON`);
    return null;
  } catch (error) {
    if (error instanceof JsonError) return { message: error.message, position: error.position };
    throw error;
  }
}

/** The position a browser's JSON.parse message names, as "at position N" or "line L column C". */
export function positionFromMessage(message, text) {
  const lineColumn = /line (\d+) column (\d+)/.exec(message);
  if (lineColumn) {
    const lines = text.split("\n").slice(0, Number(lineColumn[1]) - 1);
    return lines.reduce((sum, line) => sum + line.length + 1, 0) + Number(lineColumn[2]) - 1;
  }
  const position = /position (\d+)/.exec(message);
  return position ? Number(position[1]) : null;
}

export function lineAndColumn(text, position) {
  const before = text.slice(0, position);
  const line = before.split("\n").length;
  return { line, column: position - before.lastIndexOf("\n") };
}

/**
 * Check `text`: {ok: true, value} for a JSON object, else
 * {ok: false, message, line, column, position}.
 */
export function checkContent(text) {
  let value;
  try {
    value = JSON.parse(text);
  } catch (error) {
    const found = findJsonError(text);
    const position = found ? found.position : positionFromMessage(error.message, text);
    const message = found ? found.message : error.message;
    if (position === null) return { ok: false, message, line: null, column: null, position: null };
    return { ok: false, message, position, ...lineAndColumn(text, position) };
  }
  const found = findJsonError(text); // JSON.parse lets a too-large number through as Infinity
  if (found) return { ok: false, message: found.message, position: found.position, ...lineAndColumn(text, found.position) };
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    return { ok: false, message: "the content must be a JSON object ({ … })", position: 0, line: 1, column: 1 };
  }
  return { ok: true, value };
}

/**
 * Re-indent valid JSON with 2 spaces, copying strings and numbers verbatim
 * (JSON.stringify would round big integers and turn 1.0 into 1).
 */
export function formatJson(text) {
  let out = "";
  let depth = 0;
  let index = 0;
  const newline = () => `\n${"  ".repeat(depth)}`;
  while (index < text.length) {
    const char = text[index];
    if (char === '"') {
      let end = index + 1;
      while (text[end] !== '"') end += text[end] === "\\" ? 2 : 1;
      out += text.slice(index, end + 1);
      index = end + 1;
      continue;
    }
    if (char === "{" || char === "[") {
      const rest = text.slice(index + 1).trimStart();
      if (rest[0] === (char === "{" ? "}" : "]")) {
        out += char === "{" ? "{}" : "[]";
        index = text.length - rest.length + 1;
        continue;
      }
      depth += 1;
      out += char + newline();
    } else if (char === "}" || char === "]") {
      depth -= 1;
      out += newline() + char;
    } else if (char === ",") {
      out += `,${newline()}`;
    } else if (char === ":") {
      out += ": ";
    } else if (!" \t\n\r".includes(char)) {
      out += char;
    }
    index += 1;
  }
  return `${out}\n`;
}

/**
 * Wire up the editor in the page (ids content, parse-status, format).
 * `onInput(state)` runs after every change with the latest check.
 */
export function setupEditor({ onInput = () => {} } = {}) {
  const textarea = document.getElementById("content");
  const status = document.getElementById("parse-status");
  const formatButton = document.getElementById("format");
  let state = checkContent(textarea.value);

  function goToError() {
    if (state.ok || state.position === null) return;
    textarea.focus();
    textarea.setSelectionRange(state.position, Math.min(state.position + 1, textarea.value.length));
  }

  function render() {
    status.replaceChildren();
    status.classList.toggle("bad", !state.ok);
    textarea.setAttribute("aria-invalid", String(!state.ok));
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

  let pending = 0;
  function update() {
    state = checkContent(textarea.value);
    render();
    onInput(state);
  }
  textarea.addEventListener("input", () => {
    // Re-check on the next frame, not on every keystroke of a fast typist.
    cancelAnimationFrame(pending);
    pending = requestAnimationFrame(update);
  });
  textarea.addEventListener("keydown", (event) => {
    if (event.key === "Tab" && !event.shiftKey && !event.ctrlKey && !event.altKey && !event.metaKey) {
      // Tab indents; Escape then Tab leaves the editor (keyboard users are never trapped).
      if (textarea.dataset.tabExits === "1") return;
      event.preventDefault();
      document.execCommand("insertText", false, "  ");
    } else if (event.key === "Escape") {
      textarea.dataset.tabExits = "1";
    }
  });
  textarea.addEventListener("blur", () => { delete textarea.dataset.tabExits; });
  formatButton.addEventListener("click", () => {
    if (!state.ok) { goToError(); return; }
    textarea.focus();
    textarea.select();
    document.execCommand("insertText", false, formatJson(textarea.value));
    update();
  });

  return {
    get text() { return textarea.value; },
    set text(value) { textarea.value = value; update(); },
    get state() { return state; },
    textarea,
    check: update,
  };
}
