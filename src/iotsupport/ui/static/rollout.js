// One rollout: per stage a progress bar and the devices behind it, refreshed every few
// seconds while it is active; pause, resume, cancel, approve.

import { api, ask, el, notify, startPage, timeElement } from "./common.js";
import { stateBadge } from "./rollout-state.js";

const id = document.body.dataset.rollout;
const $ = (id_) => document.getElementById(id_);
const REFRESH_MS = 3000;
const ACTIVE = ["running", "waiting_for_approval", "paused"];
const SEGMENTS = ["updated", "downloading", "failed", "crashed", "pending"];
const REASONS = { old_version: "reported the old version after downloading", sha256_mismatch: "reported another SHA-256", timeout: "no report in time" };
const open = new Set();  // stages whose device list is shown
let timer = null;

function bar(counts) {
  const node = el("div", { class: "stage-bar", role: "img", "aria-label": SEGMENTS.map((s) => `${counts[s]} ${s}`).join(", ") });
  for (const segment of SEGMENTS) {
    if (!counts[segment]) continue;
    const part = el("span", { class: `seg ${segment}`, title: `${counts[segment]} ${segment}` });
    part.style.flexGrow = String(counts[segment]);  // CSSOM: allowed by the page's CSP
    node.append(part);
  }
  return node;
}

function deviceRow(device) {
  const reported = device.reported_version
    ? [el("span", { class: "mono" }, device.reported_version), device.unknown_firmware ? el("span", { class: "badge", title: "No release of this model has this version" }, "unknown firmware") : null]
    : [el("span", { class: "muted" }, "—")];
  return el("tr", {},
    el("td", { class: "mono" }, el("a", { href: `/devices/${device.config_id}` }, device.mac_address)),
    el("td", {}, el("span", { class: `badge device-${device.state}` }, device.state), device.reason ? el("span", { class: "muted small" }, ` ${REASONS[device.reason] || device.reason}`) : null),
    el("td", {}, ...reported),
    el("td", { class: "hide-narrow" }, timeElement(device.reported_at)));
}

function stageItem(stage) {
  const { updated, downloading, failed, crashed, total } = stage.counts;
  const details = el("details", { class: "stage-devices", "data-stage": String(stage.number) },
    el("summary", {}, `${total} device${total === 1 ? "" : "s"}`));
  if (open.has(stage.number)) {
    details.open = true;
    details.append(deviceTable(stage.devices));
  }
  details.addEventListener("toggle", () => {
    if (details.open) { open.add(stage.number); if (details.children.length === 1) details.append(deviceTable(stage.devices)); }
    else open.delete(stage.number);
  });
  const target = typeof stage.target === "number" ? `${stage.target} device${stage.target === 1 ? "" : "s"}` : stage.target;
  return el("li", { class: `stage stage-${stage.state}` },
    el("div", { class: "stage-head" },
      el("strong", {}, `Stage ${stage.number}`), el("span", { class: "muted" }, ` up to ${target}`),
      el("span", { class: "stage-state" }, stage.state === "waiting" ? "not started" : stage.state),
      el("span", { class: "stage-counts" }, `${updated}/${total} updated${downloading ? `, ${downloading} downloading` : ""}${failed ? `, ${failed} failed` : ""}${crashed ? `, ${crashed} crashed` : ""}`)),
    bar(stage.counts),
    details);
}

function deviceTable(devices) {
  return el("table", { class: "stage-table" },
    el("thead", {}, el("tr", {}, ...["Device", "State", "Reports", "Last report"].map((h, i) => el("th", { scope: "col", class: i === 3 ? "hide-narrow" : null }, h)))),
    el("tbody", {}, ...devices.map(deviceRow)));
}

function render(rollout) {
  $("version").textContent = rollout.version;
  $("state").replaceWith(Object.assign(stateBadge(rollout.state, rollout.paused_reason), { id: "state" }));
  const { updated, failed, crashed, total } = rollout.counts;
  const threshold = rollout.error_threshold ? `pauses at ${rollout.error_threshold} failed` : "no error threshold";
  const unverified = rollout.unverified_reports ? "unverified reports counted" : "unverified reports ignored";
  $("summary").textContent = `Stage ${rollout.current_stage} of ${rollout.stage_count}; ${updated} of ${total} devices updated${failed ? `, ${failed} failed` : ""}${crashed ? `, ${crashed} crashed` : ""}; ${threshold}${rollout.approve_each_stage ? "; each stage waits for approval" : ""}; ${unverified}. Started by ${rollout.created_by}.`;
  $("paused-detail").textContent = rollout.paused_detail || "";
  $("paused-detail").hidden = !rollout.paused_detail;
  const active = ACTIVE.includes(rollout.state);
  $("actions").hidden = !active;
  $("pause").hidden = !["running", "waiting_for_approval"].includes(rollout.state);
  $("resume").hidden = rollout.state !== "paused";
  $("approve").hidden = rollout.state !== "waiting_for_approval";
  $("cancel").hidden = !active;
  $("stages").replaceChildren(...rollout.stages.map(stageItem));
  return active;
}

async function load() {
  clearTimeout(timer);
  const result = await api("GET", `/api/rollouts/${id}`);
  if (!result.ok) {
    $("load-error").textContent = `Could not load the rollout: ${result.error}`;
    $("load-error").hidden = false;
    timer = setTimeout(load, REFRESH_MS * 2);
    return;
  }
  $("load-error").hidden = true;
  if (render(result.data)) timer = setTimeout(load, REFRESH_MS);
}

async function act(action, done) {
  const result = await api("POST", `/api/rollouts/${id}/${action}`);
  if (!result.ok) { notify(`Not done: ${result.error}`, { kind: "error" }); load(); return; }
  notify(done);
  clearTimeout(timer);
  if (render(result.data)) timer = setTimeout(load, REFRESH_MS);
}

$("pause").addEventListener("click", () => act("pause", "Paused: no further stage starts."));
$("resume").addEventListener("click", () => act("resume", "Resumed."));
$("approve").addEventListener("click", () => act("approve", "Approved: the next stage has started."));
$("cancel").addEventListener("click", async () => {
  if (await ask($("confirm-cancel")) === "cancel-rollout") act("cancel", "Cancelled.");
});
startPage();
load();
