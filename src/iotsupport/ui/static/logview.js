// A log view: lines newest first, filters, older pages, and following (a long poll:
// `after=<latest>&wait=` answers as soon as newer lines exist).

import { api, el } from "./common.js";

const LEVELS = { E: "Error", W: "Warning", I: "Info", D: "Debug", V: "Verbose" };
const WAIT_SECONDS = 25;
const MAX_SHOWN = 2000;
// The server strips ANSI escapes; this keeps a raw one from ever showing regardless.
const ANSI = /\u001b(?:\[[0-?]*[ -/]*[@-~]|[@-Z\\-_])/g;
const exact = new Intl.DateTimeFormat(undefined, {
  year: "numeric", month: "2-digit", day: "2-digit",
  hour: "2-digit", minute: "2-digit", second: "2-digit", fractionalSecondDigits: 3,
});

function when(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : exact.format(date);
}

function lineNode(line, fleet) {
  const level = LEVELS[line.level] || line.level;
  const parts = [
    el("span", { class: "log-time", title: line.received_at }, when(line.received_at)),
    el("span", { class: `log-level level-${line.level}`, title: level }, line.level,
      el("span", { class: "visually-hidden" }, ` (${level})`)),
  ];
  if (fleet) {
    parts.push(el("a", { class: "log-device mono", href: `/devices/${line.device.id}` },
      line.device.name || line.device.mac));
  }
  if (line.uptime_ms !== null) parts.push(el("span", { class: "log-uptime mono", title: "Device uptime (ms)" }, `(${line.uptime_ms})`));
  if (line.tag) parts.push(el("span", { class: "log-tag mono" }, `${line.tag}:`));
  parts.push(el("span", { class: "log-message mono" }, line.message.replace(ANSI, "")));
  if (!line.verified) parts.push(el("span", { class: "log-unverified", title: "No credential proved who sent it" }, "unverified"));
  return el("li", { class: `log-line level-${line.level}`, "data-id": line.id }, ...parts);
}

export function setupLogView(section) {
  if (!section) return null;
  const $ = (id) => section.querySelector(`#${id}`);
  const base = section.dataset.logsBase;
  const fleet = section.dataset.logsFleet === "yes";
  const list = $("log-lines");
  const status = $("log-status");
  const followButton = $("log-follow");
  const filters = { level: $("log-level"), q: $("log-search"), tag: $("log-tag"), model: $("log-model") };
  let latest = null;
  let cursor = null;
  let following = true;
  let generation = 0;  // a reload makes older follows stale
  let controller = null;

  function query(extra = {}) {
    const params = new URLSearchParams();
    for (const [name, input] of Object.entries(filters)) {
      if (input && input.value.trim()) params.set(name, input.value.trim());
    }
    for (const [name, value] of Object.entries(extra)) params.set(name, value);
    return params;
  }

  function setDownloads() {
    for (const format of ["text", "ndjson"]) {
      const params = query({ format, limit: 10000 });
      $(`log-download-${format}`).href = `${base}?${params}`;
    }
  }

  function showDropped(dropped) {
    const note = $("log-dropped");
    note.hidden = !dropped;
    if (dropped) {
      note.textContent = `This device sent ${dropped.count} lines that were not kept (over LOG_MAX_LINES_PER_MINUTE or a full queue), the last at ${when(dropped.last_dropped_at)}.`;
    }
  }

  function render(lines, { atTop }) {
    const nodes = lines.map((line) => lineNode(line, fleet));
    if (atTop) list.prepend(...nodes); else list.append(...nodes);
    while (list.children.length > MAX_SHOWN) list.lastElementChild.remove();
    $("log-empty").hidden = list.children.length > 0;
  }

  async function reload() {
    generation += 1;
    controller?.abort();
    list.replaceChildren();
    setDownloads();
    status.textContent = "Loading…";
    const result = await api("GET", `${base}?${query({ limit: 200 })}`);
    if (!result.ok) { status.textContent = result.error; return; }
    latest = result.data.latest;
    cursor = result.data.cursor;
    render(result.data.lines, { atTop: false });
    showDropped(result.data.dropped);
    $("log-older").hidden = cursor === null;
    status.textContent = following ? "Following: new lines appear at the top." : "Paused.";
    if (following) follow(generation);
  }

  async function follow(mine) {
    while (following && mine === generation) {
      controller = new AbortController();
      let response;
      try {
        const params = query({ after: latest, wait: WAIT_SECONDS, limit: 500 });
        response = await fetch(`${base}?${params}`, {
          headers: { Accept: "application/json" }, credentials: "same-origin", signal: controller.signal,
        });
      } catch {
        if (mine !== generation || !following) return;
        status.textContent = "The server did not answer; trying again…";
        await new Promise((resolve) => setTimeout(resolve, 5000));
        continue;
      }
      if (mine !== generation || !following) return;
      if (response.status === 401) { location.reload(); return; }
      if (!response.ok) { status.textContent = `Following stopped (${response.status}).`; return; }
      const page = await response.json();
      latest = page.latest;
      render(page.lines, { atTop: true });
      status.textContent = "Following: new lines appear at the top.";
    }
  }

  followButton.addEventListener("click", () => {
    following = !following;
    followButton.setAttribute("aria-pressed", String(following));
    followButton.textContent = following ? "Pause" : "Follow";
    if (following) { reload(); } else { controller?.abort(); generation += 1; status.textContent = "Paused."; }
  });
  $("log-older").addEventListener("click", async () => {
    const result = await api("GET", `${base}?${query({ limit: 200, cursor })}`);
    if (!result.ok) { status.textContent = result.error; return; }
    cursor = result.data.cursor;
    render(result.data.lines, { atTop: false });
    $("log-older").hidden = cursor === null;
  });
  let typing = 0;
  for (const input of Object.values(filters)) {
    if (!input) continue;
    input.addEventListener(input.tagName === "SELECT" ? "change" : "input", () => {
      clearTimeout(typing);
      typing = setTimeout(reload, 300);
    });
  }
  $("log-filters").addEventListener("submit", (event) => { event.preventDefault(); reload(); });
  reload();
  return { reload };
}
