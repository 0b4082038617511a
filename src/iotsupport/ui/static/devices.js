// The devices list: every config in one table, filtered as you type (and searched in the
// configs' content on the server), sorted by any column, and kept current while it is open.
//
// Filtering and sorting work on the data; the table holds only the first rows of
// the result and grows as you scroll (or press "Show more"), so every keystroke
// stays quick with thousands of devices. A row's element is built once, when first shown.
// Every few seconds the list asks the server what changed since its last answer
// (`?since=<cursor>`) and applies only that: changed rows, new ones, deleted ones.

import {
  api, el, entityLink, notify, restoreDeleted, startPage, syncBadge, takeDeleted, timeElement,
} from "./common.js";
import { setupBulk } from "./bulk.js";
import { setupImport } from "./import.js";
import { isQuery, setupCompletion } from "./query-box.js";
import { fillModelPicker } from "./schema.js";

const SYNC_RANK = { pending: 0, never: 1, in_sync: 2 };
const POLL_MS = 5000; // how often an open, visible list asks what changed
const POLL_MAX_MS = 60000; // the longest wait after failures
const RELOAD_MS = 10 * 60 * 1000; // a whole new list now and then (what `since` cannot see)
const SEARCH_DELAY_MS = 300;
const SEARCH_MIN_LENGTH = 2;

const COLUMNS = [
  { key: "selected", label: "", cls: "select", unsortable: true },
  { key: "mac_address", label: "MAC", cls: "mono" },
  { key: "device_name", label: "Name", cls: "name hide-narrow" },
  { key: "device_entity_id", label: "Entity ID", cls: "mono small hide-narrow" },
  { key: "enable_ota", label: "OTA", cls: "center hide-narrow" },
  { key: "model", label: "Model", cls: "small hide-narrow", optional: true },
  { key: "version", label: "Ver.", cls: "num hide-narrow", title: "Version" },
  { key: "updated_at", label: "Updated", cls: "hide-narrow" },
  { key: "sync_state", label: "Sync", optional: true },
  { key: "last_fetched_at", label: "Last fetch", cls: "hide-narrow", optional: true },
  { key: "credential", label: "Credential", cls: "hide-narrow", optional: true },
];

const dom = {
  head: document.getElementById("head"),
  rows: document.getElementById("rows"),
  filter: document.getElementById("filter"),
  stateFilter: document.getElementById("state-filter"),
  stateFilterLabel: document.getElementById("state-filter-label"),
  count: document.getElementById("count"),
  title: document.getElementById("title"),
  loading: document.getElementById("loading"),
  wrap: document.getElementById("table-wrap"),
  empty: document.getElementById("empty"),
  more: document.getElementById("more"),
  pendingCount: document.getElementById("pending-count"),
  modelFilter: document.getElementById("model-filter"),
  modelFilterLabel: document.getElementById("model-filter-label"),
  bulkBar: document.getElementById("bulk-bar"),
  selectedCount: document.getElementById("selected-count"),
  searchStatus: document.getElementById("search-status"),
  exportLink: document.getElementById("export"),
};

const PAGE_ROWS = 150;
const view = {
  items: [], byId: new Map(), matches: [], shown: 0, columns: [], sort: "mac_address",
  descending: false, selected: new Set(), cursor: null,
  // The content search: the text it was for, and the line that matched, by config id.
  content: { query: "", lines: new Map() },
  // A device query (the box holds one): its text, and the ids it selects (null: not known yet).
  where: { query: "", ids: null },
  logErrors: new Map(), // config id -> error lines it logged in the last hour
};
const numberFormat = new Intl.NumberFormat();

function cell(column, item) {
  const config = item.config;
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
      // On a phone the name column is hidden: the name (and a content match) go here.
      return el("span", {}, el("a", { href: `/devices/${config.id}` }, value),
        el("span", { class: "narrow-only" }, config.device_name ? el("span", { class: "under" }, config.device_name) : null,
          contentMatch(config)), logErrorsBadge(config));
    case "device_name": {
      const name = value ? el("span", {}, value) : el("span", { class: "muted" }, "—");
      return el("span", {}, name, contentMatch(config));
    }
    case "device_entity_id":
      return value ? entityLink(value) : el("span", { class: "muted" }, "—");
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

/** A device that logged errors in the last hour: a link to its log. */
function logErrorsBadge(config) {
  const count = view.logErrors.get(config.id);
  if (!count) return null;
  return el("a", {
    class: "badge log-errors", href: `/devices/${config.id}#logs`,
    title: "Error lines it logged in the last hour",
  }, `${numberFormat.format(count)} error${count === 1 ? "" : "s"}`,
  el("span", { class: "visually-hidden" }, " in the last hour"));
}

async function loadLogErrors() {
  const result = await api("GET", "/api/logs/devices?level=E");
  if (!result.ok) return; // an older server, or logs unavailable: no badges
  const before = view.logErrors;
  view.logErrors = new Map(result.data.devices.map((device) => [device.id, device.lines]));
  let changed = false;
  for (const id of new Set([...before.keys(), ...view.logErrors.keys()])) {
    const item = view.byId.get(id);
    if (item && before.get(id) !== view.logErrors.get(id)) { item.tr = null; changed = true; }
  }
  if (changed) render({ keep: true });
}

/** Where a content search found the text: the matching line, or nothing. */
function contentMatch(config) {
  const line = view.content.lines.get(config.id);
  if (line === undefined) return null;
  return el("span", { class: "match" }, el("span", { class: "badge content-match" }, "in content"), " ",
    line === null ? null : el("code", {}, line));
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

function buildRow(item) {
  const tr = el("tr", { "data-href": `/devices/${item.config.id}`, "data-id": item.config.id });
  if (item.config.sync_state === "pending") tr.classList.add("pending");
  for (const column of view.columns) tr.append(el("td", { class: column.cls }, cell(column, item)));
  return tr;
}

function searchText(config) {
  const mac = config.mac_address || "";
  return [mac, mac.replaceAll(":", ""), config.device_name, config.device_entity_id]
    .filter(Boolean).join(" ").toLowerCase();
}

function itemOf(config) {
  return { config, search: searchText(config), tr: null };
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
      scope: "col", class: (column.cls || "").replace(/\b(mono|small|name)\b/g, "").trim() || null,
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
  item.tr ??= buildRow(item);
  const box = item.tr.querySelector("input.pick");
  if (box) box.checked = view.selected.has(item.config.id);
  return item.tr;
}

/** Append the next rows of matches to the table (a page, or up to `until`). */
function showMore(until = view.shown + PAGE_ROWS) {
  const next = view.matches.slice(view.shown, until);
  dom.rows.append(...next.map(rowOf));
  view.shown += next.length;
  const rest = view.matches.length - view.shown;
  dom.more.hidden = rest <= 0;
  dom.more.textContent = `Show ${numberFormat.format(Math.min(rest, PAGE_ROWS))} more (${numberFormat.format(rest)} not shown)`;
}

/** Draw the matches; `keep`: as many rows as before (a live update keeps the admin's place). */
function render({ keep = false } = {}) {
  const until = keep ? Math.max(view.shown, PAGE_ROWS) : PAGE_ROWS;
  const focused = dom.rows.contains(document.activeElement) ? document.activeElement : null;
  dom.rows.replaceChildren();
  view.shown = 0;
  showMore(until);
  if (focused?.isConnected) focused.focus({ preventScroll: true });
}

function applySort(options) {
  view.items.sort(compare);
  applyFilter(options);
}

function contentMatches(item) {
  return view.content.query !== "" && view.content.query === currentQuery()
    && view.content.lines.has(item.config.id);
}

/** The box as a device query: the ids it selects decide (all, until the first answer). */
function queryMatches(item) {
  return view.where.ids === null || view.where.ids.has(item.config.id);
}

function applyFilter(options = {}) {
  const before = view.matches;
  const asQuery = isQuery(dom.filter.value);
  const terms = asQuery ? [] : dom.filter.value.toLowerCase().replaceAll("-", ":").split(/\s+/).filter(Boolean);
  const state = dom.stateFilter.value;
  const model = dom.modelFilter.value;
  view.matches = view.items.filter((item) => (!state || item.config.sync_state === state)
    && (!model || (model === "-" ? !item.config.model : item.config.model === model))
    && (asQuery ? queryMatches(item)
      : terms.every((term) => item.search.includes(term) || item.search.includes(term.replaceAll(":", "")))
        || contentMatches(item)));
  const shown = view.matches.length;
  const total = view.items.length;
  // Still loading: no count and no "No devices yet" (there may be 2,000 on the way).
  const loaded = dom.loading.hidden;
  dom.count.textContent = !loaded ? "" : shown === total ? numberFormat.format(total) : `${numberFormat.format(shown)} of ${numberFormat.format(total)}`;
  dom.empty.hidden = !loaded || shown > 0;
  if (total === 0) dom.empty.replaceChildren("No devices yet. ", el("a", { href: "/devices/new" }, "Add the first one"), ".");
  else if (shown === 0) dom.empty.textContent = "No device matches this filter.";
  // A refresh that changed rows in place and left the same rows in the same order
  // rebuilds nothing: re-rendering 2,000 rows every 5 s froze the list.
  const same = options.inPlace && before && before.length === shown
    && before.every((item, index) => item === view.matches[index]);
  if (!same) render(options);
  renderSelection();
}

function saveState() {
  const params = new URLSearchParams();
  if (dom.filter.value) params.set(isQuery(dom.filter.value) ? "where" : "q", dom.filter.value);
  if (dom.stateFilter.value) params.set("sync", dom.stateFilter.value);
  if (dom.modelFilter.value) params.set("model", dom.modelFilter.value);
  if (view.sort !== "mac_address" || view.descending) params.set("sort", `${view.descending ? "-" : ""}${view.sort}`);
  const query = params.toString();
  history.replaceState(null, "", query ? `?${query}` : location.pathname);
  renderExportLink();
}

/** Export what the model filter shows: every config, or the model's. */
function renderExportLink() {
  const model = dom.modelFilter.value;
  const only = model && model !== "-";
  dom.exportLink.href = model === "-" ? "/api/configs/export?no_model=true"
    : only ? `/api/configs/export?model=${encodeURIComponent(model)}` : "/api/configs/export";
  dom.exportLink.textContent = model === "-" ? "Export those without a model" : only ? `Export ${model}` : "Export";
}

function loadState() {
  const params = new URLSearchParams(location.search);
  // What the admin typed while the list was loading wins over the URL.
  if (!dom.filter.value) dom.filter.value = params.get("where") || params.get("q") || "";
  dom.stateFilter.value = params.get("sync") || "";
  dom.modelFilter.value = params.get("model") || "";
  const sort = params.get("sort") || "";
  view.descending = sort.startsWith("-");
  const key = sort.replace(/^-/, "");
  if (view.columns.some((column) => column.key === key)) view.sort = key;
}

function renderPendingCount() {
  const pending = view.items.filter((item) => item.config.sync_state === "pending").length;
  dom.pendingCount.hidden = pending === 0;
  dom.pendingCount.textContent = `${numberFormat.format(pending)} pending`;
  dom.pendingCount.title = "Changed since the device last fetched its config: show only these";
}

// Loads and polls answer out of order on a busy server: only the newest load counts, and
// a poll that a load overtook is dropped (the load's cursor goes on from there).
let loadSequence = 0;

// The newest load: a caller whose own load was overtaken waits for this one instead.
let newestLoad = Promise.resolve(true);

function loadDevices() {
  newestLoad = loadDevicesOnce();
  return newestLoad;
}

/** Until no newer load is under way: the list then holds what was committed before. */
async function loadsSettled() {
  let seen;
  do { seen = newestLoad; await seen; } while (seen !== newestLoad);
}

async function loadDevicesOnce() {
  const mine = ++loadSequence;
  const result = await api("GET", "/api/configs");
  if (mine !== loadSequence) return false;
  dom.loading.hidden = true;
  if (!result.ok) {
    notify(`Could not load the devices: ${result.error}`, { kind: "error" });
    return false;
  }
  const configs = result.data.configs;
  view.cursor = result.data.cursor ?? null;
  const sample = configs[0] || {};
  const firstLoad = view.columns.length === 0;
  if (firstLoad || configs.length) view.columns = COLUMNS.filter((column) => !column.optional || column.key in sample);
  if (firstLoad && "model" in sample) {
    const chosen = new URLSearchParams(location.search).get("model");
    const models = await fillModelPicker(dom.modelFilter, null, { noneLabel: "all" });
    dom.modelFilter.append(el("option", { value: "-" }, "no model"));
    dom.modelFilter.value = chosen && (chosen === "-" || models.some((m) => m.code === chosen)) ? chosen : "";
    dom.modelFilterLabel.hidden = models.length === 0;
  }
  const known = new Set(configs.map((config) => config.id));
  for (const id of [...view.selected]) if (!known.has(id)) view.selected.delete(id);
  dom.stateFilterLabel.hidden = !("sync_state" in sample);
  if (firstLoad) { loadState(); renderExportLink(); }
  view.items = configs.map(itemOf);
  view.byId = new Map(view.items.map((item) => [item.config.id, item]));
  renderPendingCount();
  renderHead();
  dom.wrap.hidden = configs.length === 0;
  applySort({ keep: !firstLoad });
  if (firstLoad) searchContent();
  return true;
}

// --- the content search ----------------------------------------------------------------

function currentQuery() {
  const text = dom.filter.value.trim();
  return text.length >= SEARCH_MIN_LENGTH ? text : "";
}

let searchTimer = 0;
let searchSequence = 0;

/** Ask the server which configs contain the filter's text (debounced); mark those rows.
 * A query (the text has an operator) asks which devices it selects instead. */
function searchContent({ delay = 0 } = {}) {
  clearTimeout(searchTimer);
  const query = currentQuery();
  dom.filter.removeAttribute("aria-invalid");
  if (query && isQuery(query)) {
    searchTimer = setTimeout(() => runQuery(query), delay);
    return;
  }
  if (view.where.query) { view.where = { query: "", ids: null }; applyFilter(); }
  if (!query) {
    const had = view.content.lines.size > 0;
    view.content = { query: "", lines: new Map() };
    dom.searchStatus.textContent = "";
    if (had) { for (const item of view.items) item.tr = null; applyFilter(); }
    return;
  }
  searchTimer = setTimeout(async () => {
    const mine = ++searchSequence;
    dom.searchStatus.textContent = "Searching the configs' content…";
    const result = await api("GET", `/api/configs?q=${encodeURIComponent(query)}`);
    if (mine !== searchSequence || query !== currentQuery()) return; // a newer search runs
    if (!result.ok) {
      dom.searchStatus.textContent = `The content could not be searched: ${result.error}`;
      return;
    }
    const lines = new Map(result.data.configs.map((row) => [row.id, row.match ?? null]));
    for (const id of new Set([...lines.keys(), ...view.content.lines.keys()])) {
      const item = view.byId.get(id);
      if (item && lines.get(id) !== view.content.lines.get(id)) item.tr = null;
    }
    view.content = { query, lines };
    const count = lines.size;
    dom.searchStatus.textContent = count === 0
      ? `No config contains “${query}”.`
      : `${numberFormat.format(count)} ${count === 1 ? "config contains" : "configs contain"} “${query}” (marked “in content”).`;
    applyFilter({ keep: true });
  }, delay);
}

/** Which devices the query selects (`where=` on the server); a mistake is pointed at. */
async function runQuery(query) {
  const mine = ++searchSequence;
  dom.searchStatus.textContent = "Running the query…";
  const result = await api("GET", `/api/configs?where=${encodeURIComponent(query)}`);
  if (mine !== searchSequence || query !== currentQuery()) return; // a newer search runs
  if (view.content.lines.size) { for (const item of view.items) item.tr = null; }
  view.content = { query: "", lines: new Map() };
  if (!result.ok) {
    const position = result.data?.details?.position;
    if (typeof position === "number") {
      dom.filter.setAttribute("aria-invalid", "true");
      dom.searchStatus.replaceChildren(`Query not run: ${result.data?.error ?? result.error}. `,
        el("code", { class: "query-error" }, query.slice(0, position),
          el("mark", {}, query.slice(position, position + 1) || " "), query.slice(position + 1)));
    } else {
      dom.searchStatus.textContent = `The query could not be run: ${result.error}`;
    }
    view.where = { query, ids: new Set() };
    applyFilter({ keep: true });
    return;
  }
  view.where = { query, ids: new Set(result.data.configs.map((row) => row.id)) };
  const count = view.where.ids.size;
  dom.searchStatus.textContent = count === 0 ? "No device matches the query."
    : `${numberFormat.format(count)} ${count === 1 ? "device matches" : "devices match"} the query.`;
  applyFilter({ keep: true });
}

// --- keeping the list current ----------------------------------------------------------

let pollTimer = 0;
let pollDelay = POLL_MS;
let lastReload = Date.now();

function selectingText() {
  const selection = window.getSelection();
  return selection && !selection.isCollapsed && selection.toString() !== ""
    && dom.rows.contains(selection.anchorNode);
}

/** Apply what changed since the last answer: rows replaced in place, new and deleted rows. */
function applyChanges(configs, deleted) {
  let added = false;
  for (const id of deleted) {
    if (!view.byId.has(id)) continue;
    view.byId.delete(id);
    view.selected.delete(id);
    added = true; // the order of the list changes
  }
  if (deleted.length) view.items = view.items.filter((item) => view.byId.has(item.config.id));
  for (const config of configs) {
    const item = view.byId.get(config.id);
    if (!item) {
      const fresh = itemOf(config);
      view.items.push(fresh);
      view.byId.set(config.id, fresh);
      added = true;
      continue;
    }
    if (JSON.stringify(item.config) === JSON.stringify(config)) continue; // a repeat
    const moved = sortValue(item.config, view.sort) !== sortValue(config, view.sort);
    item.config = config;
    item.search = searchText(config);
    const old = item.tr;
    item.tr = null;
    if (old?.isConnected && !moved) {
      const focused = old.contains(document.activeElement) ? document.activeElement : null;
      const fresh = rowOf(item);
      old.replaceWith(fresh);
      if (focused) fresh.querySelector(focused.matches("input.pick") ? "input.pick" : "a")?.focus({ preventScroll: true });
    }
    added ||= moved;
  }
  return added;
}

let polling = false;

async function poll() {
  clearTimeout(pollTimer);
  if (document.hidden || view.cursor === null || polling) return; // resumed by visibilitychange
  polling = true;
  try {
    await pollOnce();
  } finally {
    polling = false;
  }
}

async function pollOnce() {
  if (Date.now() - lastReload > RELOAD_MS) {
    lastReload = Date.now();
    if (await loadDevices()) searchContent();
    schedule(POLL_MS);
    return;
  }
  if (selectingText()) { schedule(1000); return; } // do not pull rows from under a selection
  const loads = loadSequence;
  const result = await api("GET", `/api/configs?since=${encodeURIComponent(view.cursor)}`);
  if (loads !== loadSequence) { schedule(POLL_MS); return; }
  if (!result.ok) { schedule(Math.min(pollDelay * 2, POLL_MAX_MS)); return; }
  const { configs, deleted, cursor } = result.data;
  view.cursor = cursor;
  if (configs.length || deleted.length) {
    const wasEmpty = view.items.length === 0;
    const reorder = applyChanges(configs, deleted);
    renderPendingCount();
    if (wasEmpty && view.items.length) { view.columns = []; await loadDevices(); } else if (reorder) applySort({ keep: true });
    else applyFilter({ keep: true, inPlace: true });
    dom.wrap.hidden = view.items.length === 0;
    if (currentQuery()) searchContent({ delay: SEARCH_DELAY_MS }); // changed content may match now
  }
  schedule(POLL_MS);
}

function schedule(delay) {
  pollDelay = delay;
  clearTimeout(pollTimer);
  pollTimer = setTimeout(poll, delay);
}

document.addEventListener("visibilitychange", () => {
  if (!document.hidden) poll();
});

// --- undo and restore --------------------------------------------------------------------

/** Keyboard focus on a device's row (the new state after an undo or a restore). */
function focusDevice(id) {
  const index = view.matches.findIndex((item) => item.config.id === id);
  if (index < 0) { dom.title.focus(); return; }
  if (index >= view.shown) showMore(index + 1);
  const link = view.byId.get(id)?.tr?.querySelector("a");
  if (link) { link.focus(); link.scrollIntoView({ block: "nearest" }); } else dom.title.focus();
}

async function undoDelete(entry) {
  const result = await restoreDeleted(entry);
  if (!result.ok) {
    notify(`Could not restore ${entry.mac}: ${result.error}`, { kind: "error" });
    return;
  }
  notify(`Restored ${entry.mac}.`);
  await Promise.all([loadDevices(), loadDeleted()]);
  await loadsSettled(); // a refresh that started meanwhile answers for ours
  focusDevice(result.data.id);
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

// --- rows that behave as links ---------------------------------------------------------------

/** The device a click on a row opens, or null: controls, links and selected text are left alone. */
function rowTarget(event) {
  if (event.target.closest("a, button, input, label, select, td.select")) return null;
  const row = event.target.closest("tr[data-href]");
  if (!row) return null;
  const selection = window.getSelection();
  if (selection && selection.toString() !== "" && selection.containsNode(row, true)) return null;
  return row.dataset.href;
}

dom.rows.addEventListener("click", (event) => {
  const href = rowTarget(event);
  if (!href) return;
  if (event.ctrlKey || event.metaKey || event.shiftKey) window.open(href, "_blank", "noopener");
  else location.assign(href);
});
dom.rows.addEventListener("auxclick", (event) => {
  if (event.button !== 1) return;
  const href = rowTarget(event);
  if (!href) return;
  event.preventDefault();
  window.open(href, "_blank", "noopener");
});
dom.rows.addEventListener("mousedown", (event) => {
  // A middle click on a row opens it; it should not start scrolling the page.
  if (event.button === 1 && rowTarget(event)) event.preventDefault();
});

// --- wiring ---------------------------------------------------------------------------------

dom.filter.setAttribute("data-slash-focus", "");
setupCompletion(dom.filter, { model: () => dom.modelFilter.value });
let pendingFrame = 0;
dom.filter.addEventListener("input", () => {
  cancelAnimationFrame(pendingFrame);
  pendingFrame = requestAnimationFrame(() => { applyFilter(); saveState(); });
  searchContent({ delay: SEARCH_DELAY_MS });
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
  changed: async (ids = []) => {
    await loadDevices();
    await loadsSettled();
    if (ids.length) focusDevice(ids[0]);
  },
});
setupImport({ imported: () => loadDevices() });
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
dom.more.addEventListener("click", () => showMore());
// Scrolling near the end of the table shows the next page by itself, while the button is
// still below the screen. A button on screen stays put until it is pressed: a page shown
// then would pull it from under the pointer, and the click (or a keyboard user's focus)
// would add a second page or land on a row. Where the button is now decides, not the
// entry (a click may have moved the button since the entry was taken).
const NEAR_PX = 600;
new IntersectionObserver(() => {
  const { top } = dom.more.getBoundingClientRect();
  if (!dom.more.hidden && top >= window.innerHeight && top < window.innerHeight + NEAR_PX) showMore();
}, { rootMargin: `0px 0px ${NEAR_PX}px 0px` }).observe(dom.more);

startPage();
const deleted = takeDeleted();
if (deleted) {
  // The Undo is where the keyboard is: the admin just deleted and arrived here.
  notify(`Deleted ${deleted.mac}.`, { kind: "info", focus: true, action: { label: "Undo", run: () => undoDelete(deleted) } });
}
loadDevices().then(() => { schedule(POLL_MS); loadLogErrors(); });
setInterval(loadLogErrors, 60000);
loadDeleted();
