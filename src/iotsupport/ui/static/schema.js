// Device models in the pages: the model picker, schema errors, the live check of a draft.
// Small self-contained functions, so another editor can be attached to them later.

import { api, el } from "./common.js";

let modelsPromise = null;

/** Every model's summary (fetched once per page); [] when the server has no models. */
export function loadModels() {
  modelsPromise ??= api("GET", "/api/models").then((result) => (result.ok ? result.data.models : []));
  return modelsPromise;
}

const details = new Map();

/** One model with its schema and template (fetched once per page): the API answer. */
export function loadModel(code) {
  if (!details.has(code)) {
    const request = api("GET", `/api/models/${encodeURIComponent(code)}`);
    request.then((result) => { if (!result.ok) details.delete(code); });
    details.set(code, request);
  }
  return details.get(code);
}

/** Give the editor the schema of model `code` (completion, hover, margin); "" or null: none. */
export async function useModelSchema(editor, code, current = () => code) {
  if (!code) { editor.setSchema(null); return; }
  const result = await loadModel(code);
  if (current() !== code) return; // the admin picked another meanwhile
  editor.setSchema(result.ok ? result.data.schema : null);
}

/** Fill a <select> with "no model" and each model; `current` is a code or null. */
export async function fillModelPicker(select, current, { noneLabel = "No model (free-form)" } = {}) {
  const models = await loadModels();
  select.replaceChildren(
    el("option", { value: "" }, noneLabel),
    ...models.map((model) => el("option", { value: model.code, selected: model.code === current }, `${model.name} (${model.code})`)),
  );
  select.value = current ?? "";
  return models;
}

/** Show schema errors ({path, message, keyword}) as a list; hides the container when none. */
export function renderSchemaErrors(container, errors, { title = "Does not meet the model's schema:" } = {}) {
  container.replaceChildren();
  container.hidden = errors.length === 0;
  if (!errors.length) return;
  container.append(
    el("p", { class: "schema-title" }, title),
    el("ul", {}, ...errors.map((error) => el("li", {},
      el("code", { class: "path" }, error.path || "(the whole config)"), " ",
      error.message, " ", el("span", { class: "muted keyword" }, `(${error.keyword})`)))),
  );
}

/**
 * Check the draft against the model's schema as the admin types (debounced; the server
 * validates, the page only shows). Returns {check(), clear()}.
 * `draft()` gives the text or null when it is not a JSON object yet; `model()` a code or "";
 * `onErrors(errors)` gets each answer's errors ([] when there are none or no check).
 */
export function liveSchemaCheck({ container, status, model, draft, onErrors = () => {}, delay = 300 }) {
  let timer = 0;
  let sequence = 0;

  async function run() {
    const code = model();
    const text = draft();
    if (!code || text === null) { clear(); return; }
    const mine = ++sequence;
    const result = await api("POST", `/api/models/${encodeURIComponent(code)}/validate`, { body: { content: text } });
    if (mine !== sequence) return; // a newer check is on its way
    if (!result.ok) { clear(); return; }
    renderSchemaErrors(container, result.data.errors);
    onErrors(result.data.errors);
    if (status) {
      status.textContent = result.data.valid ? `✓ Meets the schema of ${code}` : `✗ ${result.data.errors.length} schema error${result.data.errors.length === 1 ? "" : "s"}`;
      status.className = `schema-status ${result.data.valid ? "ok" : "bad"}`;
      status.hidden = false;
    }
  }

  function clear() {
    sequence += 1;
    renderSchemaErrors(container, []);
    onErrors([]);
    if (status) status.hidden = true;
  }

  return {
    check() { clearTimeout(timer); timer = setTimeout(run, delay); },
    now: run,
    clear,
  };
}

/** A dialog that shows a model's schema and template (read-only), with a link to edit. */
export async function showModel(dialog, code) {
  const result = await loadModel(code);
  if (!result.ok) return result;
  dialog.querySelector("[data-model-title]").textContent = `${result.data.name} (${code})`;
  dialog.querySelector("[data-model-schema]").textContent = JSON.stringify(result.data.schema, null, 2);
  dialog.querySelector("[data-model-template]").textContent = result.data.template ? JSON.stringify(result.data.template, null, 2) : "(no template)";
  dialog.querySelector("[data-model-link]").href = `/models/${encodeURIComponent(code)}`;
  dialog.showModal();
  return result;
}
