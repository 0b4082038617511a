// A model's firmware: its releases (upload, delete), its rollouts, and starting one.

import { api, ask, copyText, el, formatBytes, loginUrl, notify, startPage, timeElement } from "./common.js";
import { stateBadge } from "./rollout-state.js";

const code = document.body.dataset.code;
const base = `/api/models/${encodeURIComponent(code)}`;
const $ = (id) => document.getElementById(id);
/** "1, 10%, 100%" → [1, "10%", "100%"]; null when a part is neither. */
function parseStages(text) {
  const parts = text.split(/[,\s]+/).filter(Boolean);
  const stages = parts.map((part) => (/^\d+$/.test(part) ? Number(part) : /^\d+(\.\d+)?%$/.test(part) ? part : null));
  return stages.length && !stages.includes(null) ? stages : null;
}

function shaButton(sha, what) {
  return el("button", {
    type: "button", class: "link sha", title: `${sha} (click to copy)`,
    onclick: async () => notify(await copyText(sha) ? "Checksum copied." : sha, { kind: "info" }),
    // The name starts with the visible text, as a speech-input user would say it.
  }, `${sha.slice(0, 12)}…`, el("span", { class: "visually-hidden" }, ` copy the SHA-256 of ${what}`));
}

function releaseRow(release) {
  const image = release.image_url;
  return el("tr", {},
    el("td", { class: "mono" }, el("a", { href: image, download: `${code}-${release.version}.bin`, title: "Download" }, release.version),
      release.signed ? null : el("span", { class: "badge", title: "Uploaded by an admin without a signature" }, "unsigned")),
    el("td", { class: "hide-narrow" }, release.project_name, el("span", { class: "muted small" }, ` ${release.idf_version}`)),
    el("td", { class: "num nowrap", title: `${release.size} bytes` }, formatBytes(release.size)),
    el("td", { class: "mono small hide-narrow" }, shaButton(release.sha256, release.version)),
    el("td", { class: "hide-narrow nowrap small" }, `${release.build_date} ${release.build_time}`),
    el("td", { class: "num" }, String(release.running_count)),
    el("td", { class: "num nowrap hide-narrow", "data-health": release.version }, el("span", { class: "muted" }, "…")),
    el("td", { class: "nowrap" }, timeElement(release.created_at)),
    el("td", { class: "right" }, el("button", {
      type: "button", class: "button small danger", "aria-label": `Delete release ${release.version}`, onclick: () => remove(release.version),
    }, "Delete")));
}

function rolloutItem(rollout) {
  const { updated, failed, total } = rollout.counts;
  return el("li", {},
    el("a", { href: `/models/${encodeURIComponent(code)}/rollouts/${rollout.id}` }, `Rollout ${rollout.id}`),
    " of ", el("span", { class: "mono" }, rollout.version), " ", stateBadge(rollout.state, rollout.paused_reason),
    el("span", { class: "muted small" }, ` stage ${rollout.current_stage} of ${rollout.stage_count}; ${updated} of ${total} updated${failed ? `, ${failed} failed` : ""}; `),
    timeElement(rollout.created_at));
}

async function remove(version) {
  $("confirm-delete-name").textContent = version;
  if (await ask($("confirm-delete")) !== "delete") return;
  const result = await api("DELETE", `${base}/releases/${encodeURIComponent(version)}`);
  if (!result.ok) { notify(`Not deleted: ${result.error}`, { kind: "error" }); return; }
  notify(`Deleted release ${version}.`);
  load();
}

async function upload(event) {
  event.preventDefault();
  const file = $("image").files[0];
  if (!file) { notify("Choose an image file first.", { kind: "error" }); return; }
  const form = new FormData();
  form.append("file", file);
  $("upload").disabled = true;
  let response;
  try {
    response = await fetch(`${base}/releases`, { method: "POST", body: form, credentials: "same-origin", headers: { Accept: "application/json" } });
  } catch {
    notify("The server did not answer. Try again.", { kind: "error" });
    return;
  } finally {
    $("upload").disabled = false;
  }
  if (response.status === 401) { location.assign(loginUrl()); return; }
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    notify(`Not uploaded: ${data?.error || `HTTP ${response.status}`}`, { kind: "error" });
    return;
  }
  notify(`Uploaded release ${data.version} (${data.chip}).`);
  $("upload-form").reset();
  load();
}

async function start(event) {
  event.preventDefault();
  const stages = parseStages($("stages").value);
  if (!stages) { notify('Stages are numbers of devices or shares, e.g. "1, 10%, 100%".', { kind: "error" }); return; }
  const threshold = $("threshold").value.trim();
  const body = { version: $("version").value, stages, error_threshold: threshold || null, approve_each_stage: $("approve").checked, unverified_reports: $("unverified").checked };
  const result = await api("POST", `${base}/rollouts`, { body });
  if (!result.ok) { notify(`Not started: ${result.error}`, { kind: "error" }); return; }
  location.assign(`/models/${encodeURIComponent(code)}/rollouts/${result.data.id}`);
}

/** Release health (last 30 days) next to the release before it, in each row's cell. */
async function loadHealth(list) {
  const pct = (stats) => (stats && stats.crash_free_devices_pct !== null ? `${stats.crash_free_devices_pct}%` : "—");
  for (const release of list.slice(0, 10)) {
    const cell = document.querySelector(`[data-health="${CSS.escape(release.version)}"]`);
    const result = await api("GET", `${base}/releases/${encodeURIComponent(release.version)}/health`);
    if (!cell || !result.ok) continue;
    const { release: now, previous } = result.data;
    const resets = now.unexpected_resets_per_device_day;
    cell.title = `${now.devices} devices, ${now.crashed_devices} crashed; unexpected resets per device-day: ${resets ?? "—"}; median min free heap: ${now.median_min_free_heap ?? "—"}`;
    cell.replaceChildren(pct(now), previous ? el("span", { class: "muted small" }, ` (${previous.version}: ${pct(previous)})`) : "");
  }
}

async function load() {
  const [releases, rollouts] = await Promise.all([api("GET", `${base}/releases`), api("GET", `${base}/rollouts`)]);
  $("loading").hidden = true;
  if (!releases.ok) {
    $("load-error").textContent = `Could not load the releases: ${releases.error}`;
    $("load-error").hidden = false;
    return;
  }
  const list = releases.data.releases;
  $("chip").textContent = releases.data.chip ? `Chip: ${releases.data.chip}.` : "Chip: not set yet (the first release sets it).";
  $("count").textContent = String(list.length);
  $("rows").replaceChildren(...list.map(releaseRow));
  loadHealth(list);
  $("table-wrap").hidden = list.length === 0;
  $("empty").hidden = list.length > 0;
  const chosen = $("version").value;
  $("version").replaceChildren(...list.map((release) => el("option", { value: release.version }, release.version)));
  if (list.some((release) => release.version === chosen)) $("version").value = chosen;
  $("start-panel").hidden = list.length === 0;
  const items = rollouts.ok ? rollouts.data.rollouts : [];
  $("rollouts").replaceChildren(...items.map(rolloutItem));
  $("no-rollouts").hidden = items.length > 0;
}

$("upload-form").addEventListener("submit", upload);
$("start-form").addEventListener("submit", start);
startPage();
load();
