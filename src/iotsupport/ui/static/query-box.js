// The list's search box as a device query (README "Device queries"): whether the text
// is a query, and completion of attribute names and the selected model's content paths.

import { el } from "./common.js";
import { loadModel } from "./schema.js";

export const ATTRIBUTES = [
  "mac", "name", "model", "firmware_version", "sync_state", "last_seen", "credential", "schema_valid",
];
const MAX_SUGGESTIONS = 8;
const MAX_PATHS = 400;

/**
 * A query has an operator outside quotes: == != < <= > >=, in (…) or exists(…). Any other
 * text is a plain search (MAC, name, text in the content), as before queries existed.
 */
export function isQuery(text) {
  const bare = text.replace(/"(?:[^"\\]|\\.)*"?|'(?:[^'\\]|\\.)*'?/g, "\"\"");
  return /==|!=|<|>|\bexists\s*\(|\bin\s*\(/i.test(bare);
}

/** The content paths a JSON Schema describes: `display.brightness`, `sensors[*].type`. */
export function schemaPaths(schema, prefix = "", out = new Set(), depth = 0) {
  if (!schema || typeof schema !== "object" || depth > 6 || out.size >= MAX_PATHS) return out;
  for (const part of [...(schema.allOf || []), ...(schema.anyOf || []), ...(schema.oneOf || [])]) {
    schemaPaths(part, prefix, out, depth + 1);
  }
  for (const [key, sub] of Object.entries(schema.properties || {})) {
    const step = /^[A-Za-z_][A-Za-z0-9_-]*$/.test(key) ? (prefix ? `.${key}` : key) : `["${key.replaceAll("\"", "")}"]`;
    const path = `${prefix || (step.startsWith("[") ? "$" : "")}${step}`;
    out.add(path);
    schemaPaths(sub, path, out, depth + 1);
  }
  const items = Array.isArray(schema.items) ? null : schema.items;
  if (items && prefix) schemaPaths(items, `${prefix}[*]`, out, depth + 1);
  return out;
}

/**
 * A listbox under `input` offering the names that start with the word at the caret:
 * ↓/↑ choose, Enter or Tab takes one, Escape closes. `model()`: the selected model's code.
 */
export function setupCompletion(input, { model }) {
  const list = el("ul", { id: "query-completions", role: "listbox", class: "completions", "aria-label": "Suggestions", hidden: true });
  input.after(list);
  input.setAttribute("role", "combobox");
  input.setAttribute("aria-autocomplete", "list");
  input.setAttribute("aria-controls", list.id);
  input.setAttribute("aria-expanded", "false");
  let options = [];
  let active = -1;
  let word = null;
  let paths = { code: null, names: [] };

  async function names() {
    const code = model();
    if (code && code !== "-" && paths.code !== code) {
      const result = await loadModel(code);
      paths = { code, names: result.ok ? [...schemaPaths(result.data.schema)] : [] };
    }
    return [...ATTRIBUTES, ...(code && code !== "-" && paths.code === code ? paths.names : [])];
  }

  function close() {
    list.hidden = true;
    options = [];
    active = -1;
    input.setAttribute("aria-expanded", "false");
    input.removeAttribute("aria-activedescendant");
  }

  function mark() {
    list.querySelectorAll("[role=option]").forEach((option, index) => {
      option.setAttribute("aria-selected", String(index === active));
    });
    if (active >= 0) input.setAttribute("aria-activedescendant", `query-completion-${active}`);
    else input.removeAttribute("aria-activedescendant");
  }

  function take(index) {
    const chosen = options[index];
    if (!chosen || !word) return;
    const text = input.value;
    input.value = text.slice(0, word.start) + chosen + text.slice(word.end);
    const caret = word.start + chosen.length;
    input.setSelectionRange(caret, caret);
    close();
    input.dispatchEvent(new Event("input", { bubbles: true }));
  }

  async function suggest() {
    const caret = input.selectionStart ?? input.value.length;
    const before = input.value.slice(0, caret);
    const found = /[A-Za-z_$][A-Za-z0-9_$.[\]*-]*$/.exec(before);
    // Only a name at the start of a comparison: not inside quotes, not a value after ==.
    const quoted = (before.match(/"/g) || []).length % 2 === 1;
    if (!found || quoted || /(==|!=|<|>|=)\s*$/.test(before.slice(0, found.index)) || !isQueryLike(input.value)) {
      close();
      return;
    }
    const typed = found[0];
    const all = await names();
    if (input.value.slice(0, caret) !== before) return; // typed on meanwhile
    word = { start: found.index, end: caret };
    options = all.filter((name) => name.toLowerCase().startsWith(typed.toLowerCase()) && name !== typed)
      .slice(0, MAX_SUGGESTIONS);
    if (!options.length) { close(); return; }
    active = -1;
    list.replaceChildren(...options.map((name, index) => el("li", {
      id: `query-completion-${index}`, role: "option", "aria-selected": "false",
      onmousedown: (event) => { event.preventDefault(); take(index); },
    }, name)));
    list.hidden = false;
    input.setAttribute("aria-expanded", "true");
  }

  input.addEventListener("input", () => { suggest(); });
  input.addEventListener("blur", () => close());
  input.addEventListener("keydown", (event) => {
    if (list.hidden) return;
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      const step = event.key === "ArrowDown" ? 1 : -1;
      active = (active + step + options.length + 1) % (options.length + 1);
      if (active === options.length) active = -1;
      mark();
    } else if ((event.key === "Enter" || event.key === "Tab") && active >= 0) {
      event.preventDefault();
      event.stopImmediatePropagation(); // Enter takes the name; it does not open a device
      take(active);
    } else if (event.key === "Escape") {
      event.preventDefault();
      close();
    }
  });
}

/** Completion starts once the text looks like a query: an operator, or a name with "." or "_". */
function isQueryLike(text) {
  return isQuery(text) || /^\s*(not\s+|\(\s*)*[A-Za-z_$][\w$-]*[._[]/.test(text)
    || ATTRIBUTES.some((name) => text.trim().length >= 2 && name.startsWith(text.trim().toLowerCase()));
}
