// JSON text without the editor: check it (with the line and column of the first error)
// and re-indent it. Used by the editor and by the diffs.
//
// Browsers word JSON.parse errors differently and not all give a position, so a
// small strict scanner finds the first error and its position itself.

const MAX_DEPTH = 500;
const NUMBER = /-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/y;

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
    NUMBER.lastIndex = index;
    const match = NUMBER.exec(text);
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

const SPACE = new Set([" ", "\t", "\n", "\r"]);
const CLOSING = { "{": "}", "[": "]" };

/**
 * Re-indent valid JSON with 2 spaces in one pass over the text, copying keys, strings
 * and numbers verbatim (JSON.parse and JSON.stringify would move integer-like keys
 * first, round big integers and turn 1.0 into 1).
 */
export function formatJson(text) {
  const out = [];
  const indents = [""];
  const newline = (depth) => {
    while (indents.length <= depth) indents.push(`${indents[indents.length - 1]}  `);
    return `\n${indents[depth]}`;
  };
  let depth = 0;
  let index = 0;
  while (index < text.length) {
    const char = text[index];
    if (char === '"') {
      let end = index + 1;
      while (end < text.length && text[end] !== '"') end += text[end] === "\\" ? 2 : 1;
      out.push(text.slice(index, end + 1));
      index = end + 1;
    } else if (char === "{" || char === "[") {
      let next = index + 1;
      while (SPACE.has(text[next])) next += 1;
      if (text[next] === CLOSING[char]) {
        out.push(char, CLOSING[char]);
        index = next + 1;
      } else {
        depth += 1;
        out.push(char, newline(depth));
        index += 1;
      }
    } else if (char === "}" || char === "]") {
      depth -= 1;
      out.push(newline(depth), char);
      index += 1;
    } else if (char === ",") {
      out.push(",", newline(depth));
      index += 1;
    } else if (char === ":") {
      out.push(": ");
      index += 1;
    } else if (SPACE.has(char)) {
      index += 1;
    } else {
      let end = index + 1; // a number, true, false or null
      while (end < text.length && !SPACE.has(text[end]) && !",:]}".includes(text[end])) end += 1;
      out.push(text.slice(index, end));
      index = end;
    }
  }
  out.push("\n");
  return out.join("");
}
