// What the editor's margin and tooltips say: the first JSON error, the model's JSON Schema
// (key completion, hover help, violations) and the errors the server reported.

import { el } from "./common.js";
import { checkContent } from "./json.js";
import {
  StateEffect, StateField, ensureSyntaxTree, hoverTooltip, jsonCompletion, jsonLanguage,
  jsonSchemaHover, jsonSchemaLinter, linter, stateExtensions,
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
  if (!path || path === "/") return path === "/" ? [""] : [];
  return String(path).replace(/^#/, "").slice(1).split("/")
    .map((part) => part.replace(/~1/g, "/").replace(/~0/g, "~"));
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
 * The range to mark for `path` (a JSON Pointer such as "/display/brightness", or a list of
 * keys): the key of the property it names, else the value when it is a scalar, else the
 * opening bracket. A path that goes further than the document marks the deepest part found.
 */
export function rangeOf(state, path) {
  const tree = ensureSyntaxTree(state, state.doc.length, 500);
  let node = tree && children(tree.topNode).find((child) => VALUES.has(child.name));
  if (!node) return { from: 0, to: Math.min(1, state.doc.length) };
  let key = null;
  for (const segment of segmentsOf(path)) {
    let next = null;
    if (node.name === "Object") {
      const property = children(node).find((child) => child.name === "Property"
        && child.firstChild?.name === "PropertyName"
        && propertyName(state, child.firstChild) === segment);
      const value = property && children(property).find((child) => VALUES.has(child.name));
      if (property) next = { key: property.firstChild, value: value ?? property.firstChild };
    } else if (node.name === "Array" && /^\d+$/.test(segment)) {
      const item = children(node).filter((child) => VALUES.has(child.name))[Number(segment)];
      if (item) next = { key: null, value: item };
    }
    if (!next) break;
    ({ key, value: node } = next);
  }
  if (key) return { from: key.from, to: key.to };
  if (node.name === "Object" || node.name === "Array") return { from: node.from, to: node.from + 1 };
  return { from: node.from, to: node.to };
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

const schemaLint = jsonSchemaLinter();
const schemaCompletion = jsonCompletion();

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
  if (!check.ok) return fromServer;
  // The server has the last word: a schema violation it also reported is shown once.
  const fromSchema = schemaLint(view).filter((item) => !fromServer.some((server) => server.from === item.from));
  return [...fromServer, ...fromSchema.map((item) => ({ ...item, source: "schema" }))];
}

/** The extensions behind the margin and the hints, starting with `schema` (or none). */
export function hints(schema) {
  return [
    stateExtensions(schema ?? undefined),
    serverErrors,
    jsonLanguage.data.of({ autocomplete: complete }),
    hoverTooltip(jsonSchemaHover({ formatHover: hoverBox })),
    linter(diagnostics, { delay: 300 }),
  ];
}
