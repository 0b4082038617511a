// A crash group: exception, symbolized top frames, releases with a sample dump; status.

import { api, el, notify, startPage, timeElement } from "./common.js";

const id = document.getElementById("crash").dataset.crashId;
const loading = document.getElementById("loading");
const unavailable = document.getElementById("unavailable");
const details = document.getElementById("details");

function hex(address) {
  return `0x${address.toString(16).padStart(8, "0")}`;
}

function show(group) {
  document.getElementById("title").textContent = group.title;
  document.title = `Crash: ${group.title}`;
  document.getElementById("exception").textContent = group.exception || "—";
  document.getElementById("status").textContent = group.regression ? `${group.status} (regression)` : group.status;
  document.getElementById("occurrences").textContent = String(group.occurrences);
  document.getElementById("devices").textContent = String(group.devices_affected);
  document.getElementById("first-seen").replaceChildren(group.first_seen_at ? timeElement(group.first_seen_at) : "—");
  document.getElementById("last-seen").replaceChildren(group.last_seen_at ? timeElement(group.last_seen_at) : "—");
  document.getElementById("frames").replaceChildren(...group.frames.map((frame, index) => el("tr", {},
    el("td", {}, String(index)),
    el("td", { class: "mono" }, frame.function || "?"),
    el("td", { class: "mono" }, frame.file ? `${frame.file}:${frame.line ?? "?"}` : "—"),
    el("td", { class: "mono" }, hex(frame.address)))));
  document.getElementById("releases").replaceChildren(...group.releases.map((release) => el("tr", {},
    el("td", {}, release.model),
    el("td", {}, release.version),
    el("td", { class: "num" }, String(release.occurrences)),
    el("td", {}, release.sample_coredump
      ? el("a", { href: `/api/coredumps/${release.sample_coredump}` }, `Dump ${release.sample_coredump}`)
      : "—"))));
  for (const button of document.querySelectorAll("#status-actions button")) {
    button.disabled = button.dataset.status === group.status;
  }
  details.hidden = false;
}

async function load() {
  const result = await api("GET", `/api/crashes/${encodeURIComponent(id)}`);
  loading.hidden = true;
  if (!result.ok) {
    unavailable.textContent = `This crash is not available: ${result.error}`;
    unavailable.hidden = false;
    return;
  }
  show(result.data);
}

for (const button of document.querySelectorAll("#status-actions button")) {
  button.addEventListener("click", async () => {
    const result = await api("PATCH", `/api/crashes/${encodeURIComponent(id)}`, { body: { status: button.dataset.status } });
    if (!result.ok) {
      notify(`Not changed: ${result.error}`, { kind: "error" });
      return;
    }
    notify(`Marked ${result.data.status}.`);
    show(result.data);
  });
}

startPage();
load();
