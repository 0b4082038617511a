// The devices list: every config in one table, filtered as you type and sorted by any column.
//
// Filtering and sorting work on the data; the table holds only the first rows of
// the result and grows as you scroll (or press "Show more"), so every keystroke
// stays quick with thousands of devices. A row's element is built once, when first shown.

import {
  api, el, notify, restoreDeleted, startPage, syncBadge, takeDeleted, timeElement,
} from "./common.js";
import { setupBulk } from "./bulk.js";
import { fillModelPicker } from "./schema.js";

const SYNC_RANK = { pending: 0, never: 1, in_sync: 2 };

const COLUMNS = [
  { key: "selected", label: "", cls: "select", unsortable: true },
  { key: "mac_address", label: "MAC", cls: "mono" },
  { key: "device_name", label: "Name" },
  { key: "device_entity_id", label: "Entity ID", cls: "mono small hide-narrow" },
  { key: "enable_ota", label: "OTA", cls: "center" },
  { key: "model", label: "Model", cls: "small", optional: true },
  { key: "version", label: "Ver.", cls: "num hide-narrow", title: "Version" },
  { key: "updated_at", label: "Updated", cls: "hide-narrow" },
  { key: "sync_state", label: "Sync", optional: true },
  { key: "last_fetched_at", label: "Last fetch", cls: "hide-narrow", optional: true },
  { key: "credential", label: "Credential", optional: true },
];

const dom = {
  head: document.getElementById("head"),
  rows: document.getElementById("rows"),
  filter: document.getElementById("filter"),
  stateFilter: document.getElementById("state-filter"),
  stateFilterLabel: document.getElementById("state-filter-label"),
  count: document.getElementById("count"),
  loading: document.getElementById("loading"),
  wrap: document.getElementById("table-wrap"),
  empty: document.getElementById("empty"),
  more: document.getElementById("more"),
  pendingCount: document.getElementById("pending-count"),
  modelFilter: document.getElementById("model-filter"),
  modelFilterLabel: document.getElementById("model-filter-label"),
  bulkBar: document.getElementById("bulk-bar"),
  selectedCount: document.getElementById("selected-count"),
};

const PAGE_ROWS = 150;
const view = { items: [], matches: [], shown: 0, columns: [], sort: "mac_address", descending: false, selected: new Set() };
const numberFormat = new Intl.NumberFormat();

function cell(column, config) {
  const value = config[column.key];
  switch (column.key) {
    case "selected":
      return el("input", {
        type: "checkbox", class: "pick", "aria-label": `Select ${config.mac_address}`,
        checked: view.selected.has(config.id), "data-id": config.id,
      });
    case "model":
      if (!value) return el("span", { class: "muted" }, "—");
      return el("span", {}, value, config.schema_valid === false
        ? el("span", { class: "badge schema-bad", title: "Does not meet the model's current schema" }, "✗ schema")
        : null);
    case "mac_address":
      return el("a", { href: `/devices/${config.id}` }, value);
    case "enable_ota":
      if (value === null || value === undefined) return el("span", { class: "muted", title: "not set" }, "—");
      return el("span", { class: value ? "ota on" : "ota off" }, value ? "on" : "off");
    case "updated_at":
    case "last_fetched_at":
      return timeElement(value);
    case "sync_state": {
      const badge = syncBadge(value);
      if (value === "pending" && config.last_fetched_version) badge.title = `device has v${config.last_fetched_version}`;
      return badge;
    }
    case "version":
      return String(value);
    case "credential":
      return credentialCell(config);
    default:
      return value === null || value === undefined || value === "" ? el("span", { class: "muted" }, "—") : value;
  }
}

/** A token or not, and a mark on devices that still fetch by MAC alone (left to migrate). */
function credentialCell(config) {
  const parts = [config.credential
    ? el("span", { class: "badge credential-on", title: "has a device token" }, "token")
    : el("span", { class: "muted", title: "no device token" }, "—")];
  if (config.last_fetched_with_credential === false) {
    parts.push(el("span", { class: "badge no-credential", title: "its last fetch carried no valid token" },
      "fetched without a credential"));
  }
  return el("span", {}, ...parts);
}

function buildRow(config) {
  const tr = el("tr", { "data-href": `/devices/${config.id}` });
  if (config.sync_state === "pending") tr.classList.add("pending");
  for (const column of view.columns) tr.append(el("td", { class: column.cls }, cell(column, config)));
  return tr;
}

function searchText(config) {
  const mac = config.mac_address || "";
  return [mac, mac.replaceAll(":", ""), config.device_name, config.device_entity_id]
    .filter(Boolean).join(" ").toLowerCase();
}

function renderSelection() {
  const count = view.selected.size;
  dom.bulkBar.hidden = count === 0;
  dom.selectedCount.textContent = `${numberFormat.format(count)} selected`;
  const all = document.getElementById("pick-all");
  if (all) {
    const shownSelected = view.matches.filter((item) => view.selected.has(item.config.id)).length;
    all.checked = shownSelected > 0 && shownSelected === view.matches.length;
    all.indeterminate = shownSelected > 0 && shownSelected < view.matches.length;
  }
  if (count === 0) bulk.close();
}

function pick(id, on) {
  if (on) view.selected.add(id); else view.selected.delete(id);
  const box = dom.rows.querySelector(`input.pick[data-id="${id}"]`);
  if (box) box.checked = on;
}

/** "All shown": every device the filter matches, not only the rows drawn so far. */
function pickAllShown(on) {
  for (const item of view.matches) pick(item.config.id, on);
  renderSelection();
}

function sortValue(config, key) {
  const value = config[key];
  if (key === "sync_state") return SYNC_RANK[value] ?? 3;
  if (key === "model") return value ? `${value} ${config.schema_valid === false ? 0 : 1}` : null;
  if (key === "credential") return (value ? 2 : 0) + (config.last_fetched_with_credential === false ? 0 : 1);
  if (typeof value === "string") return value.toLowerCase();
  if (typeof value === "boolean") return value ? 1 : 0;
  return value;
}

function compare(a, b) {
  const left = sortValue(a.config, view.sort);
  const right = sortValue(b.config, view.sort);
  const missingLeft = left === null || left === undefined;
  const missingRight = right === null || right === undefined;
  let order;
  if (missingLeft || missingRight) order = missingLeft === missingRight ? 0 : missingLeft ? 1 : -1;
  else order = left < right ? -1 : left > right ? 1 : 0;
  if (order !== 0 && !(missingLeft || missingRight)) order = view.descending ? -order : order;
  return order || (a.config.mac_address < b.config.mac_address ? -1 : 1);
}

function renderHead() {
  dom.head.replaceChildren(...view.columns.map((column) => {
    if (column.key === "selected") {
      return el("th", { scope: "col", class: "select" }, el("input", {
        type: "checkbox", id: "pick-all", "aria-label": "Select all shown", title: "Select all shown (every match of the filter)",
        onchange: (event) => pickAllShown(event.target.checked),
      }));
    }
    const active = column.key === view.sort;
    const th = el("th", {
      // The header takes the column's alignment and visibility, not its cell font.
      scope: "col", class: (column.cls || "").replace(/\b(mono|small)\b/g, "").trim() || null,
      "aria-sort": active ? (view.descending ? "descending" : "ascending") : "none",
    });
    if (column.unsortable) return th;
    th.append(el("button", {
      type: "button", class: "sort", title: `Sort by ${column.title || column.label}`,
      onclick: () => sortBy(column.key),
    }, column.label, el("span", { class: "arrow", "aria-hidden": "true" }, active ? (view.descending ? "▼" : "▲") : "↕")));
    return th;
  }));
}

function sortBy(key) {
  view.descending = view.sort === key ? !view.descending : false;
  view.sort = key;
  applySort();
  renderHead();
  dom.head.querySelector(`[aria-sort]:not([aria-sort="none"]) button`)?.focus();
  saveState();
}

function rowOf(item) {
  item.tr ??= buildRow(item.config);
  const box = item.tr.querySelector("input.pick");
  if (box) box.checked = view.selected.has(item.config.id);
  return item.tr;
}

/** Append the next page of matches to the table. */
function showMore() {
  const next = view.matches.slice(view.shown, view.shown + PAGE_ROWS);
  dom.rows.append(...next.map(rowOf));
  view.shown += next.length;
  const rest = view.matches.length - view.shown;
  dom.more.hidden = rest <= 0;
  dom.more.textContent = `Show ${numberFormat.format(Math.min(rest, PAGE_ROWS))} more (${numberFormat.format(rest)} not shown)`;
}

function render() {
  dom.rows.replaceChildren();
  view.shown = 0;
  showMore();
}

function applySort() {
  view.items.sort(compare);
  applyFilter();
}

function applyFilter() {
  const terms = dom.filter.value.toLowerCase().replaceAll("-", ":").split(/\s+/).filter(Boolean);
  const state = dom.stateFilter.value;
  const model = dom.modelFilter.value;
  view.matches = view.items.filter((item) => (!state || item.config.sync_state === state)
    && (!model || (model === "-" ? !item.config.model : item.config.model === model))
    && terms.every((term) => item.search.includes(term) || item.search.includes(term.replaceAll(":", ""))));
  const shown = view.matches.length;
  const total = view.items.length;
  dom.count.textContent = shown === total ? numberFormat.format(total) : `${numberFormat.format(shown)} of ${numberFormat.format(total)}`;
  dom.empty.hidden = total === 0 || shown > 0;
  if (total > 0 && shown === 0) dom.empty.textContent = "No device matches this filter.";
  render();
  renderSelection();
}

function saveState() {
  const params = new URLSearchParams();
  if (dom.filter.value) params.set("q", dom.filter.value);
  if (dom.stateFilter.value) params.set("sync", dom.stateFilter.value);
  if (dom.modelFilter.value) params.set("model", dom.modelFilter.value);
  if (view.sort !== "mac_address" || view.descending) params.set("sort", `${view.descending ? "-" : ""}${view.sort}`);
  const query = params.toString();
  history.replaceState(null, "", query ? `?${query}` : location.pathname);
}

function loadState() {
  const params = new URLSearchParams(location.search);
  // What the admin typed while the list was loading wins over the URL.
  if (!dom.filter.value) dom.filter.value = params.get("q") || "";
  dom.stateFilter.value = params.get("sync") || "";
  dom.modelFilter.value = params.get("model") || "";
  const sort = params.get("sort") || "";
  view.descending = sort.startsWith("-");
  const key = sort.replace(/^-/, "");
  if (view.columns.some((column) => column.key === key)) view.sort = key;
}

async function loadDevices() {
  const result = await api("GET", "/api/configs");
  dom.loading.hidden = true;
  if (!result.ok) {
    notify(`Could not load the devices: ${result.error}`, { kind: "error" });
    return;
  }
  const configs = result.data.configs;
  const sample = configs[0] || {};
  view.columns = COLUMNS.filter((column) => !column.optional || column.key in sample);
  if ("model" in sample) {
    const chosen = new URLSearchParams(location.search).get("model");
    const models = await fillModelPicker(dom.modelFilter, null, { noneLabel: "all" });
    dom.modelFilter.append(el("option", { value: "-" }, "no model"));
    dom.modelFilter.value = chosen && (chosen === "-" || models.some((m) => m.code === chosen)) ? chosen : "";
    dom.modelFilterLabel.hidden = models.length === 0;
  }
  const known = new Set(configs.map((config) => config.id));
  for (const id of [...view.selected]) if (!known.has(id)) view.selected.delete(id);
  dom.stateFilterLabel.hidden = !("sync_state" in sample);
  const pending = configs.filter((config) => config.sync_state === "pending").length;
  dom.pendingCount.hidden = pending === 0;
  dom.pendingCount.textContent = `${numberFormat.format(pending)} pending`;
  dom.pendingCount.title = "Changed since the device last fetched its config: show only these";
  loadState();
  view.items = configs.map((config) => ({ config, search: searchText(config), tr: null }));
  renderHead();
  dom.wrap.hidden = configs.length === 0;
  applySort();
  if (configs.length === 0) {
    dom.empty.replaceChildren("No devices yet. ", el("a", { href: "/devices/new" }, "Add the first one"), ".");
    dom.empty.hidden = false;
  }
}

async function undoDelete(entry) {
  const result = await restoreDeleted(entry);
  if (!result.ok) {
    notify(`Could not restore ${entry.mac}: ${result.error}`, { kind: "error" });
    return;
  }
  notify(`Restored ${entry.mac}.`);
  await Promise.all([loadDevices(), loadDeleted()]);
}

function listOf(data, ...keys) {
  if (Array.isArray(data)) return data;
  for (const key of keys) if (Array.isArray(data?.[key])) return data[key];
  return [];
}

async function loadDeleted() {
  const box = document.getElementById("deleted");
  const result = await api("GET", "/api/configs/deleted");
  if (!result.ok) return; // a server without history has no such list
  const entries = listOf(result.data, "configs");
  box.hidden = entries.length === 0;
  document.getElementById("deleted-count").textContent = `(${entries.length})`;
  document.getElementById("deleted-list").replaceChildren(...entries.map((entry) => {
    const mac = entry.mac_address;
    const who = entry.deleted_by;
    return el("li", {},
      el("span", { class: "mono" }, mac), " ",
      el("span", { class: "muted" }, `v${entry.version}, deleted `, timeElement(entry.deleted_at), who ? ` by ${who}` : ""), " ",
      entry.mac_in_use
        ? el("span", { class: "muted" }, "(this MAC has a new config)")
        : el("button", {
          type: "button", class: "button small", "aria-label": `Restore ${mac}`,
          onclick: () => undoDelete({ mac }),
        }, "Restore"));
  }));
}

dom.filter.setAttribute("data-slash-focus", "");
let pendingFrame = 0;
dom.filter.addEventListener("input", () => {
  cancelAnimationFrame(pendingFrame);
  pendingFrame = requestAnimationFrame(() => { applyFilter(); saveState(); });
});
dom.stateFilter.addEventListener("change", () => { applyFilter(); saveState(); });
dom.modelFilter.addEventListener("change", () => { applyFilter(); saveState(); });
dom.rows.addEventListener("change", (event) => {
  const box = event.target.closest("input.pick");
  if (!box) return;
  pick(Number(box.dataset.id), box.checked);
  renderSelection();
});
document.getElementById("clear-selection").addEventListener("click", () => {
  for (const id of [...view.selected]) pick(id, false);
  renderSelection();
});
const bulk = setupBulk({
  selected: () => [...view.selected].sort((a, b) => a - b),
  changed: () => loadDevices(),
});
dom.pendingCount.addEventListener("click", () => {
  dom.stateFilter.value = dom.stateFilter.value === "pending" ? "" : "pending";
  applyFilter();
  saveState();
});
dom.filter.addEventListener("keydown", (event) => {
  if (event.key === "Enter") {
    // Enter opens the only (or first) match: type a few letters of a MAC, press Enter.
    const first = view.matches[0];
    if (first) location.assign(`/devices/${first.config.id}`);
  }
});
dom.more.addEventListener("click", showMore);
// Scrolling near the end of the table shows the next page by itself.
new IntersectionObserver((entries) => {
  if (entries.some((entry) => entry.isIntersecting) && !dom.more.hidden) showMore();
}, { rootMargin: "600px" }).observe(dom.more);
dom.rows.addEventListener("click", (event) => {
  if (event.target.closest("a, button, input, td.select")) return;
  const row = event.target.closest("tr[data-href]");
  if (row) location.assign(row.dataset.href);
});

startPage();
const deleted = takeDeleted();
if (deleted) {
  notify(`Deleted ${deleted.mac}.`, { kind: "info", action: { label: "Undo", run: () => undoDelete(deleted) } });
}
loadDevices();
loadDeleted();
