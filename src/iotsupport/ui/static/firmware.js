// Firmware: the uploaded images with size, checksum and date; delete.

import { api, ask, copyText, el, formatBytes, isMissingRoute, notify, startPage, timeElement } from "./common.js";

const rows = document.getElementById("rows");
const loading = document.getElementById("loading");
const unavailable = document.getElementById("unavailable");
const wrap = document.getElementById("table-wrap");
const empty = document.getElementById("empty");
const count = document.getElementById("count");
const dialog = document.getElementById("confirm-delete");

function assetRow(asset) {
  const name = asset.name ?? asset.filename;
  const sha = asset.sha256 || "";
  return el("tr", {},
    el("td", { class: "mono" }, el("a", { href: `/api/assets/${encodeURIComponent(name)}`, download: name, title: "Download" }, name)),
    el("td", { class: "num nowrap", title: `${asset.size} bytes` }, formatBytes(asset.size)),
    el("td", { class: "mono small hide-narrow" }, sha
      ? el("button", {
        type: "button", class: "link sha", title: `${sha} (click to copy)`,
        onclick: async () => notify(await copyText(sha) ? "Checksum copied." : sha, { kind: "info" }),
        // The accessible name starts with the visible text (WCAG "label in name").
      }, `${sha.slice(0, 12)}…`, el("span", { class: "visually-hidden" }, ` copy the SHA-256 of ${name}`))
      : "—"),
    el("td", { class: "nowrap" }, timeElement(asset.uploaded_at)),
    el("td", { class: "right" }, el("button", {
      type: "button", class: "button small danger", "aria-label": `Delete ${name}`, onclick: () => remove(name),
    }, "Delete")));
}

async function remove(name) {
  document.getElementById("confirm-delete-name").textContent = name;
  if (await ask(dialog) !== "delete") return;
  const result = await api("DELETE", `/api/assets/${encodeURIComponent(name)}`);
  if (!result.ok) {
    notify(`Not deleted: ${result.error}`, { kind: "error" });
    return;
  }
  notify(`Deleted ${name}.`);
  load();
}

async function load() {
  const result = await api("GET", "/api/assets");
  loading.hidden = true;
  if (!result.ok) {
    unavailable.textContent = isMissingRoute(result)
      ? "This server does not handle firmware uploads yet."
      : `Firmware is not available: ${result.error}`;
    unavailable.hidden = false;
    wrap.hidden = true;
    return;
  }
  const assets = Array.isArray(result.data) ? result.data : result.data.assets || [];
  count.textContent = String(assets.length);
  rows.replaceChildren(...assets.map(assetRow));
  wrap.hidden = assets.length === 0;
  empty.hidden = assets.length > 0;
}

startPage();
load();
