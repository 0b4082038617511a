// One device: edit its JSON, save with If-Match, resolve conflicts, delete with undo,
// and (when the server keeps history) compare versions and roll back.

import {
  api, ask, copyText, deviceUrl, el, entityLink, formatBytes, formatDateTime, isMissingRoute,
  notify, onLeaveForLogin, onlineDot, rawMember, rememberDeleted, saveFile, server, startPage, syncBadge,
  timeAgo, timeElement,
} from "./common.js";
import { renderCredential, setupCredential } from "./credential.js";
import { lineDiff, parseUnified, prettyJson, renderDiff } from "./diff.js";
import { formatJson, setupEditor } from "./editor.js";
import {
  fillModelPicker, liveSchemaCheck, renderSchemaErrors, showModel, useModelSchema,
} from "./schema.js";

const configId = Number(document.body.dataset.configId);
const base = `/api/configs/${configId}`;

const dom = Object.fromEntries([
  "loading", "load-error", "device", "mac", "crumb", "subtitle", "sync", "meta", "device-url",
  "copy-url", "save", "revert", "duplicate", "delete", "dirty", "edit-form", "history",
  "versions", "history-diff", "confirm-delete", "confirm-delete-mac", "confirm-rollback",
  "rollback-version", "conflict", "conflict-summary", "conflict-diff", "model", "show-model",
  "schema-errors", "schema-status", "model-dialog", "title", "download", "rollback-notify",
].map((id) => [id.replace(/-(.)/g, (_, char) => char.toUpperCase()), document.getElementById(id)]));

/** What the server has: the config's fields, its ETag, and the content text as saved. */
const saved = { config: null, etag: null, text: "" };
let historyAvailable = true;
let versions = [];
let saving = false;
let syncTimer = 0;
const SYNC_POLL_MS = 10000;
// A save with no answer gives up after this long (the edits stay in the editor).
const SAVE_TIMEOUT_MS = 20000;

const schemaCheck = liveSchemaCheck({
  container: dom.schemaErrors,
  status: dom.schemaStatus,
  model: () => dom.model.value,
  draft: () => (editor.state.ok ? editor.text : null),
  onErrors: (errors) => editor.setServerErrors(errors),
});
const editor = setupEditor({ onInput: () => { renderDirty(); schemaCheck.check(); } });

function chosenModel() {
  return dom.model.value || null;
}

function isDirty() {
  return saved.config !== null && (editor.text !== saved.text || chosenModel() !== (saved.config.model ?? null));
}

function renderDirty() {
  const dirty = isDirty();
  dom.dirty.hidden = !dirty;
  dom.revert.disabled = !dirty;
  dom.save.disabled = !dirty || saving;
  dom.save.title = dirty ? "" : "Nothing to save: no changes since the saved version";
  document.title = `${dirty ? "• " : ""}${saved.config?.device_name || saved.config?.mac_address || "Device"} · IoTSupport`;
  for (const button of dom.versions.querySelectorAll("button.rollback")) {
    button.disabled = dirty;
    button.title = dirty ? "Save or discard your changes first" : "";
  }
}

/** The content exactly as saved (the API splices it verbatim into the response). */
function contentText(result) {
  return rawMember(result.text, "content") ?? formatJson(JSON.stringify(result.data.content));
}

function accept(result) {
  saved.config = result.data;
  saved.etag = result.headers.get("ETag");
  saved.text = contentText(result);
}

function metaRow(term, ...value) {
  return el("div", {}, el("dt", {}, term), el("dd", {}, ...value));
}

function renderMeta() {
  const config = saved.config;
  dom.mac.textContent = config.mac_address;
  dom.crumb.textContent = config.mac_address;
  const subtitle = [];
  if (config.device_name) subtitle.push(config.device_name);
  if (config.device_entity_id) subtitle.push(subtitle.length ? " · " : "", entityLink(config.device_entity_id));
  dom.subtitle.replaceChildren(...(subtitle.length ? subtitle : ["No deviceName in the content"]));
  dom.deviceUrl.value = deviceUrl(config.mac_address);
  dom.duplicate.href = `/devices/new?from=${config.id}`;
  const updated = [timeElement(config.updated_at)];
  if (config.updated_by) updated.push(` by ${config.updated_by}`);
  const ota = config.enable_ota === null ? "not set" : config.enable_ota ? "on" : "off";
  dom.meta.replaceChildren(
    metaRow("Version", String(config.version)),
    metaRow("Updated", ...updated),
    metaRow("Created", timeElement(config.created_at)),
    metaRow("OTA", ota),
  );
  if ("online" in config) {
    const online = config.online === null ? "nothing known yet" : config.online ? "online" : "offline";
    const seen = config.last_seen_at ? [" · last seen ", timeElement(config.last_seen_at)] : [];
    dom.meta.append(metaRow("Online", onlineDot(config.online, config.last_seen_at), ` ${online}`, ...seen));
  }
  renderCredential(config);
  dom.sync.hidden = !("sync_state" in config);
  if (!dom.sync.hidden) {
    const from = [config.last_fetched_from, config.last_fetched_firmware_version && `firmware ${config.last_fetched_firmware_version}`]
      .filter(Boolean).join(", ");
    const fetched = config.last_fetched_at
      ? el("span", { title: config.last_fetched_user_agent || "" },
        `device fetched v${config.last_fetched_version ?? "?"} `, timeElement(config.last_fetched_at),
        from ? el("span", { class: "muted" }, ` (${from})`) : null)
      : el("span", {}, "the device has not fetched it yet");
    dom.sync.replaceChildren(syncBadge(config.sync_state), fetched);
    dom.sync.className = `sync sync-box-${config.sync_state}`;
    clearTimeout(syncTimer);
    if (config.sync_state !== "in_sync") syncTimer = setTimeout(refreshSync, SYNC_POLL_MS);
  }
  renderDirty();
}

/** While the device has not fetched the current version, look again now and then. */
async function refreshSync() {
  if (document.hidden) { syncTimer = setTimeout(refreshSync, SYNC_POLL_MS); return; }
  const result = await api("GET", base);
  if (!result.ok || !saved.config || result.data.version !== saved.config.version) return;
  const { sync_state, last_fetched_at, last_fetched_version } = result.data;
  saved.config = { ...saved.config, sync_state, last_fetched_at, last_fetched_version };
  renderMeta();
}

/** The device's resets of the last week (health), under its details. */
async function loadHealth() {
  const since = new Date(Date.now() - 7 * 86400 * 1000).toISOString();
  const result = await api("GET", `${base}/health?since=${encodeURIComponent(since)}`);
  if (!result.ok) return;
  const { resets, reset_reason: reason } = result.data;
  const items = resets.slice(-10).reverse().map((reset) => el("li", {},
    el("span", { class: reset.unexpected ? "unexpected" : "" }, reset.reset_reason), " ",
    timeElement(reset.boot_at), reset.firmware_version ? el("span", { class: "muted" }, ` on ${reset.firmware_version}`) : null));
  const value = resets.length
    ? [el("ol", { class: "resets", "aria-label": "Resets of the last 7 days" }, ...items)]
    : [reason || "none reported"];
  dom.meta.append(metaRow("Resets (7 days)", ...value));
}

async function load() {
  const result = await api("GET", base);
  dom.loading.hidden = true;
  if (!result.ok) {
    dom.mac.textContent = result.status === 404 ? "Device not found" : `Device ${configId}`;
    dom.loadError.replaceChildren(
      `Could not load this device: ${result.error} `, el("a", { href: "/" }, "Back to the list"));
    dom.loadError.hidden = false;
    return;
  }
  accept(result);
  editor.text = saved.text;
  dom.device.hidden = false;
  await fillModelPicker(dom.model, saved.config.model ?? null);
  restoreDraft();
  renderMeta();
  onModelChange();
  loadHistory();
  loadHealth();
  if (new URLSearchParams(location.search).has("created")) {
    notify(`Created ${saved.config.mac_address} (version 1).`);
    history.replaceState(null, "", location.pathname);
  }
}

// --- a draft survives a trip to the login page ----------------------------------

const DRAFT_KEY = `iotsupport.draft.${configId}`;
let leavingForLogin = false;

onLeaveForLogin(() => {
  leavingForLogin = true;
  if (isDirty()) sessionStorage.setItem(DRAFT_KEY, JSON.stringify({ draft: editor.text, ...saved }));
});

function restoreDraft() {
  const stored = sessionStorage.getItem(DRAFT_KEY);
  sessionStorage.removeItem(DRAFT_KEY);
  if (!stored) return;
  const { draft, ...base } = JSON.parse(stored);
  // Keep the version the edits started from, so saving still warns (with the diff)
  // if someone else saved while the admin was logging in.
  Object.assign(saved, base);
  editor.text = draft;
  notify("Your unsaved edits were kept while you logged in again. Save them when ready.", { kind: "info" });
}

// --- save and conflicts --------------------------------------------------------

async function save({ overwrite = false } = {}) {
  if (saving) return;
  if (!isDirty() && !overwrite) {
    notify(`Nothing to save: no changes since version ${saved.config.version}.`, { kind: "info" });
    return;
  }
  const state = editor.state;
  if (!state.ok) {
    notify(`Not saved: the content is not a valid JSON object (${state.line ? `line ${state.line}, column ${state.column}: ` : ""}${state.message}).`, { kind: "error" });
    editor.focus();
    return;
  }
  const sent = editor.text;
  const body = { content: sent, model: chosenModel() };
  const size = new Blob([JSON.stringify(body)]).size;
  if (server.maxRequestBytes && size > server.maxRequestBytes) {
    notify(`Not saved: the content is ${formatBytes(size)}, and the server takes at most ${formatBytes(server.maxRequestBytes)} per request (MAX_REQUEST_BYTES).`, { kind: "error" });
    return;
  }
  const before = saved.config.version;
  setSaving(true);
  const headers = saved.etag ? { "If-Match": saved.etag } : {};
  const result = await api("PUT", base, { body, headers, timeout: SAVE_TIMEOUT_MS });
  setSaving(false);
  if (result.ok) {
    accept(result);
    renderMeta();
    if (saved.config.version === before) {
      notify(`Nothing to save: the server has this content as version ${before} already.`, { kind: "info" });
    } else {
      notify(`Saved version ${saved.config.version}${overwrite ? " (theirs overwritten)" : ""}.`);
    }
    loadHistory();
    return;
  }
  if (result.timedOut) {
    notify(`Not saved: ${result.error} Your edits are still here. If the save did reach the server, saving again shows that first.`, { kind: "error" });
    return;
  }
  if (result.status === 412) {
    await resolveConflict(sent);
    return;
  }
  if (result.data?.code === "schema_violation") {
    renderSchemaErrors(dom.schemaErrors, result.data.details.errors);
    editor.setServerErrors(result.data.details.errors);
  }
  notify(`Not saved: ${result.error}`, { kind: "error" });
}

/** While a save waits for its answer: "Saving…", and no second save. */
function setSaving(on) {
  saving = on;
  dom.save.textContent = on ? "Saving…" : "Save";
  dom.save.setAttribute("aria-busy", String(on));
  renderDirty();
}

/** The unified diff text of a diff endpoint answer (JSON {diff} or plain text). */
function diffText(result) {
  const diff = result.data?.diff ?? result.data?.unified_diff;
  if (typeof diff === "string") return diff;
  if (Array.isArray(diff)) return diff.join("\n");
  return result.data ? "" : result.text;
}

async function showTheirChanges(started, current, currentText) {
  if (historyAvailable) {
    const result = await api("GET", `${base}/diff?from=${started.config.version}&to=${current.version}`);
    if (result.ok) {
      renderDiff(dom.conflictDiff, parseUnified(diffText(result)), { emptyText: "Only the formatting changed." });
      return;
    }
  }
  renderDiff(dom.conflictDiff, lineDiff(prettyJson(started.text), prettyJson(currentText)), {
    emptyText: "Only the formatting changed.",
  });
}

async function resolveConflict(sent) {
  const started = { ...saved };
  const result = await api("GET", base);
  if (!result.ok) {
    notify(`Not saved: someone else changed this device, and reading their version failed: ${result.error}`, { kind: "error" });
    return;
  }
  const current = result.data;
  const currentText = contentText(result);
  if (currentText === sent && (current.model ?? null) === chosenModel()) {
    // An earlier save that got no answer had gone through.
    accept(result);
    renderMeta();
    notify(`Saved: the server has your content as version ${current.version} (an earlier save went through).`);
    loadHistory();
    return;
  }
  const who = current.updated_by ? ` by ${current.updated_by}` : "";
  dom.conflictSummary.textContent = `You started from version ${started.config.version}. Version ${current.version} was saved${who} ${timeAgo(current.updated_at)} (${formatDateTime(current.updated_at)}). Your edits are not saved yet.`;
  await showTheirChanges(started, current, currentText);
  const choice = await ask(dom.conflict);
  if (choice === "overwrite") {
    accept(result);
    await save({ overwrite: true });
  } else if (choice === "theirs") {
    accept(result);
    dom.model.value = saved.config.model ?? "";
    editor.text = saved.text;
    onModelChange();
    renderMeta();
    notify(`Loaded version ${saved.config.version}; your edits were dropped.`, { kind: "info" });
    editor.focus();
    loadHistory();
  } else {
    notify("Not saved. Saving again will warn again; choose “Overwrite” to replace their version.", { kind: "info" });
    editor.focus();
  }
}

// --- delete with undo -----------------------------------------------------------

async function remove() {
  dom.confirmDeleteMac.textContent = saved.config.mac_address;
  if (await ask(dom.confirmDelete) !== "delete") return;
  const result = await api("DELETE", base);
  if (!result.ok) {
    notify(`Not deleted: ${result.error}`, { kind: "error" });
    return;
  }
  rememberDeleted({ mac: saved.config.mac_address });
  saved.config = null; // nothing left to lose: no "unsaved changes" prompt
  location.assign("/");
}

// --- history ------------------------------------------------------------------------

function entriesOf(data) {
  if (Array.isArray(data)) return data;
  for (const key of ["versions", "history", "entries", "items"]) if (Array.isArray(data?.[key])) return data[key];
  return [];
}

const EVENTS = { created: "created", updated: "edited", rolled_back: "rolled back", restored: "restored" };

function describeEvent(entry) {
  const event = EVENTS[entry.event] ?? entry.event;
  return entry.source_version ? `${event} to v${entry.source_version}` : event;
}

function checkedVersion(name) {
  const input = dom.versions.querySelector(`input[name="${name}"]:checked`);
  return input ? Number(input.value) : null;
}

async function showHistoryDiff() {
  const from = checkedVersion("from");
  const to = checkedVersion("to");
  if (from === null || to === null) return;
  if (from === to) {
    dom.historyDiff.replaceChildren(el("p", { class: "muted" }, "Pick two different versions."));
    return;
  }
  const result = await api("GET", `${base}/diff?from=${from}&to=${to}`);
  if (!result.ok) {
    dom.historyDiff.replaceChildren(el("p", { class: "error-text" }, `Could not compare: ${result.error}`));
    return;
  }
  renderDiff(dom.historyDiff, parseUnified(diffText(result)), { emptyText: "Only the formatting differs." });
}

function versionRow(entry, index) {
  const version = entry.version;
  const when = entry.saved_at ?? entry.changed_at ?? entry.created_at;
  const who = entry.saved_by ?? entry.updated_by;
  const action = describeEvent(entry);
  const isCurrent = version === saved.config.version;
  const radio = (name, checked) => el("input", {
    type: "radio", name, value: version, checked, "aria-label": `Compare ${name} version ${version}`,
    onchange: showHistoryDiff,
  });
  return el("tr", { class: isCurrent ? "current" : "" },
    el("td", { class: "center" }, radio("from", index === 1)),
    el("td", { class: "center" }, radio("to", index === 0)),
    el("td", { class: "num" }, `v${version}`, isCurrent ? el("span", { class: "badge current" }, "current") : null),
    el("td", {}, timeElement(when), el("br"), el("span", { class: "muted small" }, [who, action].filter(Boolean).join(" · "))),
    el("td", {}, isCurrent ? null : el("button", {
      type: "button", class: "button small rollback", "aria-label": `Roll back to version ${version}`,
      onclick: () => rollback(version),
    }, "Roll back")));
}

async function loadHistory() {
  if (!historyAvailable) return;
  const result = await api("GET", `${base}/history`);
  if (!result.ok) {
    // An older server (or one without history) has no such route: no panel.
    historyAvailable = false;
    dom.history.hidden = true;
    if (!isMissingRoute(result) && result.status !== 404) notify(`Could not load the history: ${result.error}`, { kind: "error" });
    return;
  }
  versions = entriesOf(result.data).filter((entry) => typeof entry.version === "number");
  dom.history.hidden = false;
  document.querySelector(".columns").classList.add("with-history");
  dom.versions.replaceChildren(...versions.map(versionRow));
  renderDirty();
  if (versions.length > 1) showHistoryDiff();
  else dom.historyDiff.replaceChildren(el("p", { class: "muted" }, "Only one version so far."));
}

async function rollback(version) {
  dom.rollbackVersion.textContent = `v${version}`;
  dom.rollbackNotify.textContent = server.mqtt
    ? " and tells the device over MQTT"
    : "; the device gets it at its next fetch";
  if (await ask(dom.confirmRollback) !== "rollback") return;
  const result = await api("POST", `${base}/rollback`, { body: { version } });
  if (!result.ok) {
    notify(`Not rolled back: ${result.error}`, { kind: "error" });
    return;
  }
  accept(result); // the rollback answers with the config as it is now
  dom.model.value = saved.config.model ?? "";
  editor.text = saved.text;
  onModelChange();
  renderMeta();
  notify(`Rolled back: version ${saved.config.version} has v${version}'s content.`);
  editor.focus(); // the new state, not the button that is gone with the old history
  loadHistory();
}

// --- the model ---------------------------------------------------------------------

function onModelChange() {
  dom.showModel.disabled = !dom.model.value;
  renderDirty();
  useModelSchema(editor, dom.model.value, () => dom.model.value);
  schemaCheck.now();
}

dom.model.addEventListener("change", onModelChange);
dom.showModel.addEventListener("click", async () => {
  const result = await showModel(dom.modelDialog, dom.model.value);
  if (result && !result.ok) notify(`Could not load the model: ${result.error}`, { kind: "error" });
});

// --- wiring -------------------------------------------------------------------------

dom.editForm.addEventListener("submit", (event) => { event.preventDefault(); save(); });
document.addEventListener("keydown", (event) => {
  if ((event.ctrlKey || event.metaKey) && event.key.toLowerCase() === "s") {
    event.preventDefault();
    if (saved.config) save();
  }
});
dom.revert.addEventListener("click", () => {
  dom.model.value = saved.config.model ?? "";
  editor.text = saved.text;
  onModelChange();
  notify("Changes discarded.", { kind: "info" });
  editor.focus();
});
dom.download.addEventListener("click", () => {
  const name = `${saved.config.mac_address.replaceAll(":", "-")}.json`;
  saveFile(new Blob([saved.text], { type: "application/json" }), name);
});
dom.delete.addEventListener("click", remove);
dom.copyUrl.addEventListener("click", async () => {
  const copied = await copyText(dom.deviceUrl.value, dom.deviceUrl);
  notify(copied ? "Device URL copied." : "Selected the URL: press Ctrl+C to copy it.", { kind: "info" });
});
window.addEventListener("beforeunload", (event) => {
  if (isDirty() && !leavingForLogin) event.preventDefault();
});

/** After a credential change: the config body again (credential, last use), edits kept. */
async function reloadMeta() {
  const result = await api("GET", base);
  if (!result.ok || !saved.config) return;
  saved.config = { ...saved.config, credential: result.data.credential };
  renderMeta();
}

setupCredential(configId, reloadMeta);
startPage();
load();
