// Shared by every page: API calls, messages, the signed-in user, small helpers.

const LOGIN = "/api/auth/login";
const UNDO_KEY = "iotsupport.undo";

/** Build an element: el("a", {href: "/"}, "text", child). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

const beforeLogin = [];

/** Run `hook` just before a 401 sends the browser to log in (e.g. to keep a draft). */
export function onLeaveForLogin(hook) {
  beforeLogin.push(hook);
}

export function loginUrl() {
  return `${LOGIN}?redirect=${encodeURIComponent(location.pathname + location.search)}`;
}

/** The API's refusal in words: its `error`, plus field messages when it names them. */
function describeError(status, data, text) {
  if (data && typeof data.error === "string") {
    const fields = (data.details && Array.isArray(data.details.errors)) ? data.details.errors : [];
    const extra = fields.slice(0, 5).map((item) => `${item.field ?? (item.path || "/")}: ${item.message}`).join("; ");
    return extra ? `${data.error} (${extra})` : data.error;
  }
  if (status >= 500) return `The server failed (HTTP ${status}). Try again in a moment.`;
  return `The server refused the request (HTTP ${status}).`;
}

/** What the pages know of the server's settings (rendered into <body data-*>). */
export const server = (() => {
  const data = document.body.dataset;
  return {
    mqtt: data.mqtt === "on",
    homeAssistantUrl: data.homeAssistantUrl || null,
    maxRequestBytes: Number(data.maxRequestBytes) || null,
    importMaxBytes: Number(data.importMaxBytes) || null,
    importMaxFiles: Number(data.importMaxFiles) || null,
  };
})();

function noAnswer(error) {
  return { ok: false, status: 0, data: null, text: "", headers: new Headers(), error, timedOut: false };
}

/**
 * Call the API. Resolves to {ok, status, data, text, headers, error, timedOut}; never throws.
 * `body`: an object (sent as JSON) or FormData (multipart). `timeout` (ms): give up then,
 * with `timedOut` set. A 401 sends the browser to the login page and never resolves.
 */
export async function api(method, path, { body, headers = {}, timeout = 0 } = {}) {
  const init = { method, headers: { Accept: "application/json", ...headers }, credentials: "same-origin" };
  if (body instanceof FormData) {
    init.body = body;
  } else if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  const controller = new AbortController();
  init.signal = controller.signal;
  const timer = timeout ? setTimeout(() => controller.abort(), timeout) : 0;
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    clearTimeout(timer);
    if (controller.signal.aborted) {
      const seconds = Math.round(timeout / 1000);
      return { ...noAnswer(`The server did not answer within ${seconds} seconds.`), timedOut: true };
    }
    return noAnswer("The server did not answer. Check your connection and try again.");
  }
  clearTimeout(timer);
  if (response.status === 401) {
    for (const hook of beforeLogin) hook();
    location.assign(loginUrl());
    return new Promise(() => {});
  }
  let text;
  try {
    text = await response.text();
  } catch {
    return noAnswer("The server's answer broke off. Check your connection and try again.");
  }
  let data = null;
  if ((response.headers.get("Content-Type") || "").includes("json") && text) {
    try { data = JSON.parse(text); } catch { data = null; }
  }
  const result = { ok: response.ok, status: response.status, data, text, headers: response.headers, error: null, timedOut: false };
  if (!response.ok) result.error = describeError(response.status, data, text);
  return result;
}

/** True when a 404 means "this server has no such route" rather than "no such thing". */
export function isMissingRoute(result) {
  return result.status === 404 && result.data?.error === "there is nothing at this URL";
}

function dismissible(node, container, timeout) {
  const close = el("button", { type: "button", class: "toast-close", "aria-label": "Dismiss", onclick: () => node.remove() }, "×");
  node.append(close);
  container.append(node);
  if (timeout) setTimeout(() => node.remove(), timeout);
  return node;
}

/**
 * Tell the user how an action went. kind: "ok" | "error" | "info".
 * With `action` ({label, run}) the message stays until used or dismissed; `focus` puts
 * the keyboard on its button (an Undo right where the admin is). A success ("ok") clears
 * the error messages of earlier actions: they are no longer true.
 */
export function notify(message, { kind = "ok", action = null, focus = false } = {}) {
  if (kind === "ok") document.getElementById("alerts").replaceChildren();
  const container = document.getElementById(kind === "error" ? "alerts" : "toasts");
  const node = el("div", { class: `toast ${kind}` }, el("span", { class: "toast-text" }, message));
  if (action) {
    node.append(el("button", {
      type: "button", class: "button small", onclick: async () => { node.remove(); await action.run(); },
    }, action.label));
  }
  const sticky = action || kind === "error";
  dismissible(node, container, sticky ? 0 : 6000);
  if (action && focus) node.querySelector("button.button").focus();
  return node;
}

export function clearNotices() {
  for (const id of ["alerts", "toasts"]) document.getElementById(id).replaceChildren();
}

// --- time and numbers -------------------------------------------------------

const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
const relative = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });

export function formatDateTime(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : dateTime.format(date);
}

export function timeAgo(iso, now = Date.now()) {
  if (!iso) return "";
  const seconds = (new Date(iso).getTime() - now) / 1000;
  if (Number.isNaN(seconds)) return iso;
  const steps = [[60, "second"], [60, "minute"], [24, "hour"], [30, "day"], [12, "month"], [Infinity, "year"]];
  let value = seconds;
  for (const [size, unit] of steps) {
    if (Math.abs(value) < size) return relative.format(Math.round(value), unit);
    value /= size;
  }
  return formatDateTime(iso);
}

/** A <time> showing "3 minutes ago", with the full date on hover. */
export function timeElement(iso) {
  if (!iso) return el("span", { class: "muted" }, "—");
  return el("time", { datetime: iso, title: formatDateTime(iso) }, timeAgo(iso));
}

export function formatBytes(size) {
  if (typeof size !== "number") return "";
  const units = ["B", "KiB", "MiB", "GiB"];
  let value = size;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
  return unit === 0 ? `${value} B` : `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

// --- devices ------------------------------------------------------------------

/** Any spelling of a MAC (separators : - . space or none, any case) → aa:bb:cc:dd:ee:ff, else null. */
export function normalizeMac(raw) {
  const hex = raw.trim().replace(/[\s:.\-]/g, "").toLowerCase();
  if (!/^[0-9a-f]{12}$/.test(hex)) return null;
  return hex.match(/../g).join(":");
}

export function deviceUrl(mac) {
  return `${location.origin}/api/configs/${mac}.json`;
}

/** An entity ID as text, or a link to its history in Home Assistant (HOME_ASSISTANT_URL). */
export function entityLink(entityId) {
  if (!server.homeAssistantUrl) return el("span", {}, entityId);
  const href = `${server.homeAssistantUrl}/history?entity_id=${encodeURIComponent(entityId)}`;
  return el("a", {
    href, class: "entity-link", target: "_blank", rel: "noopener noreferrer",
    title: `${entityId} in Home Assistant (opens a new tab)`,
  }, entityId);
}

const SYNC_LABELS = { in_sync: "In sync", pending: "Pending", never: "Never fetched" };

export function syncBadge(state) {
  if (!state) return el("span", { class: "muted" }, "—");
  return el("span", { class: `badge sync-${state}` }, SYNC_LABELS[state] || state);
}

/**
 * The exact source text of a top-level member of a JSON object text, or null.
 * The API splices a config's content in verbatim; this keeps the admin's formatting.
 */
export function rawMember(text, key) {
  let depth = 0;
  let index = 0;
  let expectKey = false;
  let lastKey = null;
  let start = -1;
  while (index < text.length) {
    const char = text[index];
    if (char === '"') {
      let end = index + 1;
      while (end < text.length && text[end] !== '"') end += text[end] === "\\" ? 2 : 1;
      if (depth === 1 && expectKey) lastKey = JSON.parse(text.slice(index, end + 1));
      index = end + 1;
      continue;
    }
    if (char === "{" || char === "[") {
      depth += 1;
      expectKey = depth === 1;
    } else if (char === "}" || char === "]") {
      if (depth === 1 && start >= 0) return text.slice(start, index);
      depth -= 1;
    } else if (char === ",") {
      if (depth === 1) {
        if (start >= 0) return text.slice(start, index);
        expectKey = true;
      }
    } else if (char === ":" && depth === 1 && expectKey) {
      expectKey = false;
      if (lastKey === key) start = index + 1;
    }
    index += 1;
  }
  return null;
}

// --- dialogs, clipboard -----------------------------------------------------------

/** Open a <dialog> modally; resolves to the value of the button that closed it ("" on Escape). */
export function ask(dialog) {
  return new Promise((resolve) => {
    dialog.returnValue = "";
    dialog.addEventListener("close", () => resolve(dialog.returnValue), { once: true });
    dialog.showModal();
  });
}

export async function copyText(text, input) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    // Plain-http origins have no clipboard API; select the text for Ctrl+C instead.
    if (input) { input.focus(); input.select(); }
    return false;
  }
}

/** Save `blob` as a file named `name` (a download the browser asks no question about). */
export function saveFile(blob, name) {
  const url = URL.createObjectURL(blob);
  const link = el("a", { href: url, download: name, hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

// --- undo after delete (kept across the page change to the list) -----------------

export function rememberDeleted(entry) {
  sessionStorage.setItem(UNDO_KEY, JSON.stringify(entry));
}

export function takeDeleted() {
  const value = sessionStorage.getItem(UNDO_KEY);
  sessionStorage.removeItem(UNDO_KEY);
  try { return value ? JSON.parse(value) : null; } catch { return null; }
}

/** Bring a deleted config back, with its id, its history and a new version. */
export function restoreDeleted(entry) {
  return api("POST", `/api/configs/deleted/${encodeURIComponent(entry.mac)}/restore`);
}

// --- the signed-in user -------------------------------------------------------------

async function logOut() {
  const result = await api("POST", "/api/auth/logout");
  if (!result.ok) { notify(`Could not log out: ${result.error}`, { kind: "error" }); return; }
  // Also end the provider's session when it offers that; it then sends the browser home.
  location.assign(result.data?.end_session_url || "/");
}

/** Show who is signed in (only when login is on); a 404 means this server has no login. */
export async function showUser() {
  const result = await api("GET", "/api/auth/self");
  if (!result.ok || !result.data || result.data.auth_enabled === false) return null;
  const user = result.data;
  const box = document.getElementById("user");
  document.getElementById("user-name").textContent = user.name || user.email || user.subject || "signed in";
  document.getElementById("logout").addEventListener("click", logOut);
  box.hidden = false;
  return user;
}

function showShortcuts() {
  const dialog = document.getElementById("shortcuts");
  if (!dialog.open) ask(dialog);
}

/** Every page: the user box, "/" to jump to the filter, "?" for the keyboard shortcuts,
 * and "3 minutes ago" kept current. */
export function startPage() {
  showUser();
  setInterval(() => {
    for (const node of document.querySelectorAll("time[datetime]")) node.textContent = timeAgo(node.dateTime);
  }, 30000);
  document.getElementById("shortcuts-open").addEventListener("click", showShortcuts);
  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.key !== "/" && event.key !== "?") return;
    const target = event.target;
    if (target.closest("input, textarea, select, [contenteditable], dialog")) return;
    if (event.key === "?") { event.preventDefault(); showShortcuts(); return; }
    const focusable = document.querySelector("[data-slash-focus]");
    if (focusable) { event.preventDefault(); focusable.focus(); }
  });
}

/** Online (green), offline (grey) or unknown (—), with the last contact as its title. */
export function onlineDot(online, lastSeen) {
  if (online === null || online === undefined) return el("span", { class: "muted", title: "nothing known yet" }, "—");
  const words = online ? "online" : "offline";
  return el("span", { class: `online-dot ${words}`, title: lastSeen ? `${words}; last seen ${lastSeen}` : words, role: "img", "aria-label": words });
}

