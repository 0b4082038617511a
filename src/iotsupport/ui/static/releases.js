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
      release.signed ? null : el("span", { class: "badge", title: "Uploaded by an admin without a signature" }, "unsigned"),
      release.symbols ? el("span", { class: "badge", title: "Its app ELF is uploaded: crashes on it are symbolized" }, "symbols") : null),
    el("td", { class: "hide-narrow" }, release.project_name, el("span", { class: "muted small" }, ` ${release.idf_version}`)),
    el("td", { class: "num nowrap", title: `${release.size} bytes` }, formatBytes(release.size)),
    el("td", { class: "mono small hide-narrow" }, shaButton(release.sha256, release.version)),
    el("td", { class: "hide-narrow nowrap small" }, `${release.build_date} ${release.build_time}`),
    el("td", { class: "num" }, String(release.running_count)),
    el("td", { class: "nowrap hide-narrow" }, timeElement(release.created_at)),
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
  $("upload").setAttribute("aria-busy", "true"); // not disabled: the keyboard stays on it
  let response;
  try {
    response = await fetch(`${base}/releases`, { method: "POST", body: form, credentials: "same-origin", headers: { Accept: "application/json" } });
  } catch {
    notify("The server did not answer. Try again.", { kind: "error" });
    return;
  } finally {
    $("upload").removeAttribute("aria-busy");
  }
  if (response.status === 401) { location.assign(loginUrl()); return; }
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    notify(`Not uploaded: ${data?.error || `HTTP ${response.status}`}`, { kind: "error" });
    return;
  }
  notify(`Uploaded release ${data.version} (${data.chip}).`);
  picked = null; // a rollout now defaults to the new release
  $("upload-form").reset();
  $("upload").focus(); // the page reloads its lists: the keyboard stays where it was
  load();
}

let releaseList = []; // newest first
let picked = null; // the release the admin chose; none: the newest

/** How many devices each stage adds, as the server counts them (stages.py). */
function stageSizes(stages, total) {
  let reached = 0;
  return stages.map((stage, index) => {
    const wanted = typeof stage === "number" ? stage : Math.ceil(Math.round(parseFloat(stage) * total * 1e6) / 1e6 / 100);
    const now = index === stages.length - 1 ? total : Math.max(reached, Math.min(total, wanted));
    const added = now - reached;
    reached = now;
    return added;
  });
}

function plural(count, word) {
  return `${count} ${word}${count === 1 ? "" : "s"}`;
}

/** The confirmation: the release, the devices of each stage, and what they run now. */
async function confirmStart(version, stages) {
  const model = await api("GET", base);
  const total = model.ok ? model.data.config_count : null;
  $("confirm-start-version").textContent = version;
  const newest = releaseList[0]?.version;
  $("confirm-start-older").hidden = version === newest;
  $("confirm-start-newest").textContent = newest || "";
  if (total === null) {
    $("confirm-start-stages").replaceChildren(el("li", {}, "The number of devices could not be read."));
  } else {
    $("confirm-start-stages").replaceChildren(...stageSizes(stages, total).map((count, index) =>
      el("li", {}, `Stage ${index + 1}: ${plural(count, "device")}`)));
  }
  const running = releaseList.filter((release) => release.running_count > 0)
    .map((release) => `${release.running_count} on ${release.version}`);
  const known = releaseList.reduce((sum, release) => sum + release.running_count, 0);
  if (total !== null && total > known) running.push(`${total - known} on another or no reported version`);
  $("confirm-start-running").textContent = total === null ? "" : `${plural(total, "device")} of ${code} now: ${running.join(", ") || "none"}.`;
  return await ask($("confirm-start")) === "start";
}

async function start(event) {
  event.preventDefault();
  const stages = parseStages($("stages").value);
  if (!stages) { notify('Stages are numbers of devices or shares, e.g. "1, 10%, 100%".', { kind: "error" }); return; }
  const threshold = $("threshold").value.trim();
  const version = $("version").value;
  if (!await confirmStart(version, stages)) { $("start").focus(); return; }
  const body = { version, stages, error_threshold: threshold || null, approve_each_stage: $("approve").checked, unverified_reports: $("unverified").checked };
  const result = await api("POST", `${base}/rollouts`, { body });
  if (!result.ok) { notify(`Not started: ${result.error}`, { kind: "error" }); return; }
  location.assign(`/models/${encodeURIComponent(code)}/rollouts/${result.data.id}`);
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
  releaseList = list;
  $("chip").textContent = releases.data.chip ? `Chip: ${releases.data.chip}.` : "Chip: not set yet (the first release sets it).";
  $("count").textContent = String(list.length);
  $("rows").replaceChildren(...list.map(releaseRow));
  $("table-wrap").hidden = list.length === 0;
  $("empty").hidden = list.length > 0;
  // Newest first; the newest is chosen unless the admin picked another that still exists.
  $("version").replaceChildren(...list.map((release, index) =>
    el("option", { value: release.version }, index === 0 ? `${release.version} (newest)` : release.version)));
  if (!list.some((release) => release.version === picked)) picked = null;
  if (list.length) $("version").value = picked ?? list[0].version;
  $("start-panel").hidden = list.length === 0;
  const items = rollouts.ok ? rollouts.data.rollouts : [];
  $("rollouts").replaceChildren(...items.map(rolloutItem));
  $("no-rollouts").hidden = items.length > 0;
}

$("version").addEventListener("change", () => { picked = $("version").value; });
$("upload-form").addEventListener("submit", upload);
$("start-form").addEventListener("submit", start);
startPage();
load();
