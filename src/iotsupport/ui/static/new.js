// New device: a MAC in any spelling, content from a template or a copy of another device.

import { api, el, normalizeMac, notify, rawMember, startPage } from "./common.js";
import { formatJson, setupEditor } from "./editor.js";
import { devicePicker } from "./picker.js";
import {
  fillModelPicker, liveSchemaCheck, renderSchemaErrors, showModel, useModelSchema,
} from "./schema.js";

const TEMPLATE = `{
  "deviceName": "",
  "deviceEntityId": "",
  "enableOTA": false
}
`;

const form = document.getElementById("new-form");
const macInput = document.getElementById("mac");
const macHelp = document.getElementById("mac-help");
const copyFrom = document.getElementById("copy-from");
const picker = devicePicker({
  input: copyFrom,
  list: document.getElementById("copy-options"),
  status: document.getElementById("copy-status"),
  onPick: () => useSource(),
});
const sources = form.elements.namedItem("source");
const createButton = document.getElementById("create");
const modelSelect = document.getElementById("model");
const showModelButton = document.getElementById("show-model");
const schemaErrors = document.getElementById("schema-errors");
const schemaCheck = liveSchemaCheck({
  container: schemaErrors,
  status: document.getElementById("schema-status"),
  model: () => modelSelect.value,
  draft: () => (editor.state.ok ? editor.text : null),
  onErrors: (errors) => editor.setServerErrors(errors),
});
let touched = false; // once the admin edits the content, switching source asks first
const editor = setupEditor({
  onInput: (state, { user }) => {
    touched ||= user;
    schemaCheck.check();
  },
});
const helpText = macHelp.innerHTML;

let takenMac = null; // the MAC the server said exists, while the field still holds it
const knownMacs = new Map(); // every device's MAC -> its id (the page loads them all)

function checkMac() {
  const raw = macInput.value;
  const mac = raw.trim() ? normalizeMac(raw) : null;
  if (mac !== null && mac === takenMac) { macInput.value = mac; return mac; } // keep the link
  takenMac = null;
  if (mac !== null && knownMacs.has(mac)) { // said before Create, not after
    macInput.value = mac;
    macTaken(mac, knownMacs.get(mac), { focus: false });
    return mac;
  }
  const bad = raw.trim() !== "" && mac === null;
  macInput.setAttribute("aria-invalid", String(bad));
  if (bad) macHelp.textContent = "Not a MAC address: expected 12 hex digits, e.g. aa:bb:cc:dd:ee:ff.";
  else macHelp.innerHTML = helpText;
  macHelp.classList.toggle("error-text", bad);
  if (mac) macInput.value = mac;
  return mac;
}

/** The MAC is taken: mark the field and link to the device that has it. */
function macTaken(mac, configId, { focus = true } = {}) {
  takenMac = mac;
  macInput.setAttribute("aria-invalid", "true");
  macHelp.classList.add("error-text");
  macHelp.replaceChildren(`A device with ${mac} exists already: `,
    el("a", { href: `/devices/${configId}` }, `open ${mac}`), ", or use another MAC.");
  if (focus) macInput.focus();
}

function setModel(code) {
  modelSelect.value = code ?? "";
  showModelButton.disabled = !modelSelect.value;
  useModelSchema(editor, modelSelect.value, () => modelSelect.value);
}

async function loadCopy(id) {
  const result = await api("GET", `/api/configs/${id}`);
  if (!result.ok) {
    notify(`Could not read that device: ${result.error}`, { kind: "error" });
    return;
  }
  setModel(result.data.model);
  editor.text = rawMember(result.text, "content") ?? formatJson(JSON.stringify(result.data.content));
  touched = false;
}

/** The chosen model's template, else the plain one. */
async function template() {
  if (!modelSelect.value) return TEMPLATE;
  const result = await api("GET", `/api/models/${encodeURIComponent(modelSelect.value)}`);
  return result.ok && result.data.template ? `${JSON.stringify(result.data.template, null, 2)}\n` : TEMPLATE;
}

async function useSource() {
  const copy = sources.value === "copy";
  copyFrom.disabled = !copy;
  if (copy && picker.value === null) { copyFrom.focus(); return; } // nothing picked yet
  if (touched && !window.confirm("Replace the content you edited?")) return;
  if (copy) await loadCopy(picker.value);
  else { editor.text = await template(); touched = false; }
  schemaCheck.now();
}

modelSelect.addEventListener("change", async () => {
  setModel(modelSelect.value);
  if (sources.value === "template" && !touched) editor.text = await template();
  schemaCheck.now();
});
showModelButton.addEventListener("click", () => showModel(document.getElementById("model-dialog"), modelSelect.value));

async function fillDevices(preselect) {
  const result = await api("GET", "/api/configs");
  if (!result.ok) {
    document.getElementById("copy-status").textContent = "Devices could not be loaded.";
    notify(`Could not load the devices: ${result.error}`, { kind: "error" });
    return;
  }
  picker.setDevices(result.data.configs);
  for (const config of result.data.configs) knownMacs.set(config.mac_address, config.id);
  if (macInput.value.trim()) checkMac();
  if (preselect) picker.pick(preselect);
  copyFrom.dataset.ready = "";
}

async function create(event) {
  event.preventDefault();
  const mac = checkMac();
  if (!mac) {
    notify(macInput.value.trim() ? "Not created: the MAC address is not valid." : "Not created: enter the device's MAC address.", { kind: "error" });
    macInput.focus();
    return;
  }
  if (knownMacs.has(mac)) {
    notify(`Not created: a device with ${mac} exists already.`, { kind: "error" });
    macTaken(mac, knownMacs.get(mac));
    return;
  }
  const state = editor.state;
  if (!state.ok) {
    notify(`Not created: the content is not a valid JSON object (${state.line ? `line ${state.line}, column ${state.column}: ` : ""}${state.message}).`, { kind: "error" });
    editor.focus();
    return;
  }
  createButton.disabled = true;
  const body = { mac_address: mac, content: editor.text, model: modelSelect.value || null };
  const result = await api("POST", "/api/configs", { body });
  createButton.disabled = false;
  if (!result.ok) {
    if (result.data?.code === "schema_violation") {
      renderSchemaErrors(schemaErrors, result.data.details.errors);
      editor.setServerErrors(result.data.details.errors);
    }
    notify(`Not created: ${result.error}`, { kind: "error" });
    if (result.status === 409 && result.data?.details?.config_id) macTaken(mac, result.data.details.config_id);
    return;
  }
  location.assign(`/devices/${result.data.id}?created=1`);
}

macInput.addEventListener("blur", checkMac);
macInput.addEventListener("input", () => {
  const mac = normalizeMac(macInput.value);
  if (mac && (knownMacs.has(mac) || macInput.getAttribute("aria-invalid") === "true")) checkMac();
});
for (const radio of form.querySelectorAll('input[name="source"]')) radio.addEventListener("change", useSource);
form.addEventListener("submit", create);

startPage();
const params = new URLSearchParams(location.search);
const from = params.get("from");
await fillModelPicker(modelSelect, params.get("model"));
setModel(modelSelect.value);
editor.text = await template();
await fillDevices(from);
if (from) {
  sources.value = "copy";
  copyFrom.disabled = false;
  await loadCopy(from);
}
macInput.focus();
