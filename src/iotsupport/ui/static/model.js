// One model: code, name, description, JSON Schema and template. A schema change that some
// devices would fail is confirmed with their list first; a model in use cannot be deleted.

import { api, ask, el, notify, rawMember, startPage } from "./common.js";
import { renderSchemaErrors } from "./schema.js";

const code = document.body.dataset.code || null;
const $ = (id) => document.getElementById(id);
const form = $("model-form");
const fields = { code: $("code"), name: $("name"), description: $("description"), schema: $("schema"), template: $("template") };
let etag = null;

function fill(result) {
  const model = result.data;
  etag = result.headers.get("ETag");
  fields.code.value = model.code;
  fields.name.value = model.name;
  fields.description.value = model.description;
  fields.schema.value = rawMember(result.text, "schema") ?? JSON.stringify(model.schema, null, 2);
  fields.template.value = model.template ? (rawMember(result.text, "template") ?? JSON.stringify(model.template, null, 2)) : "";
  const invalid = model.invalid_count ? `, ${model.invalid_count} not meeting the schema` : "";
  $("counts").textContent = `Version ${model.version}; ${model.config_count} device${model.config_count === 1 ? "" : "s"}${invalid}.`;
  $("devices-link").href = `/?model=${encodeURIComponent(model.code)}`;
  $("devices-link").hidden = false;
}

/** The JSON in a textarea, or an error message naming the field. */
function parsed(name, optional = false) {
  const text = fields[name].value.trim();
  if (!text && optional) return { value: null };
  try {
    const value = JSON.parse(text);
    if (value === null || typeof value !== "object" || Array.isArray(value)) return { error: `The ${name} must be a JSON object.` };
    return { value, text };
  } catch (error) {
    return { error: `The ${name} is not valid JSON: ${error.message}` };
  }
}

function brokenList(configs) {
  return el("ul", {}, ...configs.map((config) => el("li", {},
    el("a", { href: `/devices/${config.id}`, class: "mono" }, config.mac_address),
    el("ul", {}, ...config.errors.slice(0, 5).map((error) => el("li", {},
      el("code", {}, error.path || "(whole config)"), ` ${error.message} `, el("span", { class: "muted" }, `(${error.keyword})`)))))));
}

async function save(event, confirm = false) {
  event?.preventDefault();
  renderSchemaErrors($("form-errors"), []);
  const schema = parsed("schema");
  const template = parsed("template", true);
  const problem = schema.error || template.error;
  if (problem) { notify(`Not saved: ${problem}`, { kind: "error" }); return; }
  // The texts go as strings, so the server keeps them exactly as typed.
  const body = {
    name: fields.name.value, description: fields.description.value,
    schema: schema.text, template: template.value === null ? null : template.text,
  };
  let result;
  if (code) {
    result = await api("PUT", `/api/models/${encodeURIComponent(code)}`, { body: { ...body, confirm }, headers: etag ? { "If-Match": etag } : {} });
  } else {
    result = await api("POST", "/api/models", { body: { ...body, code: fields.code.value } });
  }
  if (result.ok) {
    if (!code) { location.assign(`/models/${encodeURIComponent(result.data.code)}?created=1`); return; }
    fill(result);
    notify(`Saved version ${result.data.version}.`);
    return;
  }
  if (result.status === 409 && result.data?.code === "schema_change_breaks_configs") {
    const details = result.data.details;
    $("confirm-schema-summary").textContent = `${details.count} device${details.count === 1 ? "" : "s"} of this model would not meet the new schema. Save anyway? They keep working, and are marked as not meeting it until someone fixes them.`;
    $("broken-list").replaceChildren(brokenList(details.configs));
    if (await ask($("confirm-schema")) === "save") await save(null, true);
    else notify("Not saved.", { kind: "info" });
    return;
  }
  if (result.data?.details?.errors) {
    const title = result.data.code === "schema_violation" ? "The template does not meet the schema:" : "The schema is not valid:";
    renderSchemaErrors($("form-errors"), result.data.details.errors, { title });
  }
  notify(`Not saved: ${result.error}`, { kind: "error" });
}

async function remove() {
  if (await ask($("confirm-delete")) !== "delete") return;
  const result = await api("DELETE", `/api/models/${encodeURIComponent(code)}`);
  if (!result.ok) { notify(`Not deleted: ${result.error}`, { kind: "error" }); return; }
  location.assign("/models");
}

async function load() {
  if (!code) {
    fields.schema.value = '{\n  "type": "object",\n  "properties": {},\n  "required": []\n}\n';
    fields.code.focus();
    return;
  }
  fields.code.readOnly = true;
  $("delete").hidden = false;
  $("loading").hidden = false;
  form.hidden = true;
  const result = await api("GET", `/api/models/${encodeURIComponent(code)}`);
  $("loading").hidden = true;
  if (!result.ok) {
    $("load-error").replaceChildren(`Could not load this model: ${result.error} `, el("a", { href: "/models" }, "Back to the models"));
    $("load-error").hidden = false;
    return;
  }
  form.hidden = false;
  fill(result);
  if (new URLSearchParams(location.search).has("created")) {
    notify(`Created model ${code}.`);
    history.replaceState(null, "", location.pathname);
  }
}

form.addEventListener("submit", save);
$("delete").addEventListener("click", remove);
startPage();
load();
