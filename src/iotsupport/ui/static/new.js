// New device: a MAC in any spelling, content from a template or a copy of another device.

import { api, el, normalizeMac, notify, rawMember, startPage } from "./common.js";
import { formatJson, setupEditor } from "./editor.js";

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
const sources = form.elements.namedItem("source");
const createButton = document.getElementById("create");
let touched = false; // once the admin edits the content, switching source asks first
const editor = setupEditor({ onInput: (state, { user }) => { touched ||= user; } });
const helpText = macHelp.innerHTML;

function checkMac() {
  const raw = macInput.value;
  const mac = raw.trim() ? normalizeMac(raw) : null;
  const bad = raw.trim() !== "" && mac === null;
  macInput.setAttribute("aria-invalid", String(bad));
  if (bad) macHelp.textContent = "Not a MAC address: expected 12 hex digits, e.g. aa:bb:cc:dd:ee:ff.";
  else macHelp.innerHTML = helpText;
  macHelp.classList.toggle("error-text", bad);
  if (mac) macInput.value = mac;
  return mac;
}

async function loadCopy(id) {
  const result = await api("GET", `/api/configs/${id}`);
  if (!result.ok) {
    notify(`Could not read that device: ${result.error}`, { kind: "error" });
    return;
  }
  editor.text = rawMember(result.text, "content") ?? formatJson(JSON.stringify(result.data.content));
  touched = false;
}

async function useSource() {
  if (touched && !window.confirm("Replace the content you edited?")) return;
  const copy = sources.value === "copy";
  copyFrom.disabled = !copy;
  if (!copy) { editor.text = TEMPLATE; touched = false; return; }
  if (copyFrom.value) await loadCopy(copyFrom.value);
}

async function fillDevices(preselect) {
  const result = await api("GET", "/api/configs");
  if (!result.ok) {
    copyFrom.replaceChildren(el("option", { value: "" }, "Devices could not be loaded"));
    notify(`Could not load the devices: ${result.error}`, { kind: "error" });
    return;
  }
  const configs = result.data.configs;
  if (configs.length === 0) {
    copyFrom.replaceChildren(el("option", { value: "" }, "No devices yet"));
    return;
  }
  copyFrom.replaceChildren(...configs.map((config) => el("option", {
    value: config.id, selected: String(config.id) === preselect,
  }, config.device_name ? `${config.mac_address} — ${config.device_name}` : config.mac_address)));
}

async function create(event) {
  event.preventDefault();
  const mac = checkMac();
  if (!mac) {
    notify(macInput.value.trim() ? "Not created: the MAC address is not valid." : "Not created: enter the device's MAC address.", { kind: "error" });
    macInput.focus();
    return;
  }
  const state = editor.state;
  if (!state.ok) {
    notify(`Not created: the content is not a valid JSON object (${state.line ? `line ${state.line}, column ${state.column}: ` : ""}${state.message}).`, { kind: "error" });
    editor.focus();
    return;
  }
  createButton.disabled = true;
  const result = await api("POST", "/api/configs", { body: { mac_address: mac, content: editor.text } });
  createButton.disabled = false;
  if (!result.ok) {
    notify(`Not created: ${result.error}`, { kind: "error" });
    return;
  }
  location.assign(`/devices/${result.data.id}?created=1`);
}

macInput.addEventListener("blur", checkMac);
macInput.addEventListener("input", () => {
  if (macInput.getAttribute("aria-invalid") === "true" && normalizeMac(macInput.value)) checkMac();
});
for (const radio of form.querySelectorAll('input[name="source"]')) radio.addEventListener("change", useSource);
copyFrom.addEventListener("change", useSource);
form.addEventListener("submit", create);

startPage();
const from = new URLSearchParams(location.search).get("from");
editor.text = TEMPLATE;
await fillDevices(from);
if (from) {
  sources.value = "copy";
  copyFrom.disabled = false;
  await loadCopy(from);
}
macInput.focus();
