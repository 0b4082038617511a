// What the editor's margin and tooltips say: the first JSON error, the model's JSON Schema
// (key completion, hover help, violations) and the errors the server reported.

import { el } from "./common.js";
import { checkContent } from "./json.js";
import {
  Draft04, Draft06, Draft07, StateEffect, StateField, ensureSyntaxTree, getJSONSchema,
  handleRefresh, hoverTooltip, jsonCompletion, jsonLanguage, jsonSchemaHover, linter,
  parseBestEffort, stateExtensions,
} from "./vendor/codemirror.js";

const checks = new WeakMap();

/** checkContent of a document, computed once per document (documents are immutable). */
export function checkDoc(doc) {
  let check = checks.get(doc);
  if (!check) {
    check = checkContent(doc.toString());
    checks.set(doc, check);
  }
  return check;
}

// --- where a JSON Pointer points -----------------------------------------------------------

const VALUES = new Set(["Object", "Array", "String", "Number", "True", "False", "Null"]);

function segmentsOf(path) {
  if (Array.isArray(path)) return path.map(String);
  const pointer = String(path ?? "").replace(/^#/, "");
  if (pointer === "") return [];
  return pointer.slice(1).split("/").map((part) => part.replace(/~1/g, "/").replace(/~0/g, "~"));
}

function children(node) {
  const found = [];
  for (let child = node.firstChild; child; child = child.nextSibling) found.push(child);
  return found;
}

function propertyName(state, node) {
  const text = state.sliceDoc(node.from, node.to);
  try { return JSON.parse(text); } catch { return text.replace(/^"|"$/g, ""); }
}

/**
 * Follow `path` (a JSON Pointer such as "/display/brightness", or a list of keys) through
 * the syntax tree: {key, value, exact}, the key node (null for array items and the root)
 * and value node of the deepest part of the path the document has.
 */
function walk(state, path) {
  const tree = ensureSyntaxTree(state, state.doc.length, 1000);
  let value = tree && children(tree.topNode).find((child) => VALUES.has(child.name));
  let key = null;
  if (!value) return null;
  for (const segment of segmentsOf(path)) {
    let next = null;
    if (value.name === "Object") {
      const property = children(value).find((child) => child.firstChild?.name === "PropertyName"
        && propertyName(state, child.firstChild) === segment);
      if (property) {
        next = { key: property.firstChild, value: children(property).find((child) => VALUES.has(child.name)) };
      }
    } else if (value.name === "Array" && /^\d+$/.test(segment)) {
      const item = children(value).filter((child) => VALUES.has(child.name))[Number(segment)];
      if (item) next = { key: null, value: item };
    }
    if (!next?.value) return { key, value, exact: false };
    ({ key, value } = next);
  }
  return { key, value, exact: true };
}

/**
 * The range to mark for `path`: a scalar value itself (its key with `onKey`); an object or
 * array by its key, or by its opening bracket when it has none. A path that goes further
 * than the document marks the deepest part it has.
 */
export function rangeOf(state, path, { onKey = false } = {}) {
  const found = walk(state, path);
  if (!found) return { from: 0, to: Math.min(1, state.doc.length) };
  const { key, value } = found;
  if (key && (onKey || value.name === "Object" || value.name === "Array")) return { from: key.from, to: key.to };
  if (value.name === "Object" || value.name === "Array") return { from: value.from, to: value.from + 1 };
  return { from: value.from, to: value.to };
}

/**
 * What codemirror-json-schema's completion reads a document with. Its own reader parses the
 * text again and maps every node's pointer (quadratic in the length of arrays) on every
 * request; completion only needs the data, and the parse check has it when the text is JSON.
 */
const parses = new WeakMap();

function parseForCompletion(state) {
  let parsed = parses.get(state.doc);
  if (!parsed) {
    const check = checkDoc(state.doc);
    let data = check.ok ? check.value : null;
    if (data === null) {
      try { data = parseBestEffort(state.doc.toString()); } catch { data = null; }
    }
    parsed = { data, pointers: new Map() };
    parses.set(state.doc, parsed);
  }
  return parsed;
}

// --- errors the server reported ----------------------------------------------------------

const setServerErrors = StateEffect.define();

function serverDiagnostic(state, error) {
  const path = error.path ?? error.pointer ?? "";
  const where = Array.isArray(path) ? `/${path.join("/")}` : String(path);
  return {
    ...rangeOf(state, path),
    severity: "error",
    source: error.keyword ? `server: ${error.keyword}` : "server",
    message: where && where !== "/" ? `${where}: ${error.message}` : String(error.message),
  };
}

/** The server's errors as diagnostics; each one goes away when the text it marks is edited. */
const serverErrors = StateField.define({
  create: () => [],
  update(diagnostics, tr) {
    for (const effect of tr.effects) {
      if (effect.is(setServerErrors)) return effect.value.map((error) => serverDiagnostic(tr.state, error));
    }
    if (!tr.docChanged || diagnostics.length === 0) return diagnostics;
    return diagnostics
      .filter((item) => !tr.changes.touchesRange(item.from, Math.max(item.to, item.from + 1)))
      .map((item) => ({ ...item, from: tr.changes.mapPos(item.from), to: tr.changes.mapPos(item.to) }));
  },
});

export function serverErrorsEffect(errors) {
  return setServerErrors.of(Array.isArray(errors) ? errors : []);
}

// --- the model's schema -------------------------------------------------------------------

function hoverBox({ message, typeInfo }) {
  return el("div", { class: "cm-schema-hover" },
    message ? el("p", {}, message) : null,
    typeInfo ? el("code", {}, typeInfo.replace(/`/g, "").trim()) : null);
}

// json-schema-library has drafts 4, 6 and 7; 7 is the nearest to 2019-09 and 2020-12.
const drafts = new WeakMap();

function draftFor(schema) {
  let draft = drafts.get(schema);
  if (!draft) {
    const name = String(schema.$schema ?? "");
    const Draft = name.includes("draft-04") ? Draft04 : name.includes("draft-06") ? Draft06 : Draft07;
    draft = new Draft(schema);
    drafts.set(schema, draft);
  }
  return draft;
}

/** json-schema-library's message without its `#` pointers and backticks. */
function plain(message) {
  return String(message).replace(/ (at|in) `#`/g, "").replace(/`#(\/[^`]*)`/g, "$1").replace(/`/g, "");
}

/** The violations of `schema` by `data` (the parsed content), marked where they are. */
function schemaDiagnostics(state, schema, data) {
  let errors;
  try { errors = draftFor(schema).validate(data); } catch { return []; }
  return errors.map((error) => {
    const pointer = String(error.data?.pointer ?? "#").replace(/^#/, "");
    const extra = error.name === "NoAdditionalPropertiesError" ? error.data?.property : undefined;
    const range = extra === undefined
      ? rangeOf(state, pointer)
      : rangeOf(state, `${pointer}/${String(extra).replace(/~/g, "~0").replace(/\//g, "~1")}`, { onKey: true });
    return { ...range, severity: "error", source: "schema", message: plain(error.message) };
  });
}

const schemaCompletion = jsonCompletion({ jsonParser: parseForCompletion });

/** Keys and values the schema allows here; nothing (not an empty list) without a schema. */
function complete(context) {
  const result = schemaCompletion(context);
  return result?.options?.length ? result : null;
}

/** All diagnostics: the JSON error, else the server's errors and the schema's violations. */
function diagnostics(view) {
  const { doc } = view.state;
  const check = checkDoc(doc);
  const fromServer = view.state.field(serverErrors);
  if (!check.ok && check.position !== null) {
    const from = Math.min(check.position, doc.length);
    return [...fromServer, {
      from, to: Math.min(from + 1, doc.length), severity: "error", source: "JSON", message: check.message,
    }];
  }
  const schema = getJSONSchema(view.state);
  if (!check.ok || !schema) return fromServer;
  // The server has the last word: a violation it also reported is shown once.
  const fromSchema = schemaDiagnostics(view.state, schema, check.value)
    .filter((item) => !fromServer.some((server) => server.from === item.from));
  return [...fromServer, ...fromSchema];
}

/** The extensions behind the margin and the hints, starting with `schema` (or none). */
export function hints(schema) {
  return [
    stateExtensions(schema ?? undefined),
    serverErrors,
    jsonLanguage.data.of({ autocomplete: complete }),
    hoverTooltip(jsonSchemaHover({ formatHover: hoverBox })),
    linter(diagnostics, {
      delay: 300,
      // A new schema or new server errors are worth a look without a change of the text.
      needsRefresh: (update) => handleRefresh(update)
        || update.startState.field(serverErrors) !== update.state.field(serverErrors),
    }),
  ];
}
