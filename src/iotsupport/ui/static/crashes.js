// Crashes: the crash groups of the fleet, filtered by status.

import { api, el, isMissingRoute, startPage, timeElement } from "./common.js";

const rows = document.getElementById("rows");
const loading = document.getElementById("loading");
const unavailable = document.getElementById("unavailable");
const wrap = document.getElementById("table-wrap");
const empty = document.getElementById("empty");
const count = document.getElementById("count");
const status = document.getElementById("status");

function groupRow(group) {
  return el("tr", {},
    el("td", {}, el("a", { href: `/crashes/${group.id}` }, group.title)),
    el("td", {}, group.exception || "—"),
    el("td", {}, group.regression ? `${group.status} (regression)` : group.status),
    el("td", { class: "num" }, String(group.occurrences)),
    el("td", { class: "num" }, String(group.devices_affected)),
    el("td", { class: "nowrap" }, group.last_seen_at ? timeElement(group.last_seen_at) : "—"));
}

async function load() {
  const query = status.value ? `?status=${encodeURIComponent(status.value)}` : "";
  const result = await api("GET", `/api/crashes${query}`);
  loading.hidden = true;
  if (!result.ok) {
    unavailable.textContent = isMissingRoute(result)
      ? "This server does not collect crashes yet."
      : `Crashes are not available: ${result.error}`;
    unavailable.hidden = false;
    wrap.hidden = true;
    return;
  }
  const groups = result.data.crashes || [];
  count.textContent = String(groups.length);
  rows.replaceChildren(...groups.map(groupRow));
  wrap.hidden = groups.length === 0;
  empty.hidden = groups.length > 0;
}

status.addEventListener("change", load);
startPage();
load();
