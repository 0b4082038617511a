// The device page's crashes: its core dumps, decoded, each linked to its crash group.

import { api, el, timeElement } from "./common.js";

const section = document.getElementById("device-crashes");
const rows = document.getElementById("device-crash-rows");
const configId = location.pathname.split("/").pop();

function where(dump) {
  const top = dump.backtrace.find((frame) => frame.function) || dump.backtrace[0];
  if (!top) return dump.state === "pending" ? "not decoded yet" : dump.error || "—";
  return top.function ? `${top.function} (${top.file || "?"}:${top.line ?? "?"})` : `0x${top.address.toString(16)}`;
}

async function load() {
  const result = await api("GET", `/api/configs/${encodeURIComponent(configId)}/coredumps`);
  if (!result.ok || !result.data.coredumps.length) return;
  rows.replaceChildren(...result.data.coredumps.map((dump) => el("tr", {},
    el("td", { class: "nowrap" }, timeElement(dump.received_at), dump.verified ? "" : " (unverified)"),
    el("td", {}, dump.release || "—"),
    el("td", {}, dump.cause_name || "—"),
    el("td", { class: "mono" }, where(dump)),
    el("td", {}, dump.crash_group ? el("a", { href: `/crashes/${dump.crash_group}` }, `#${dump.crash_group}`) : "—"))));
  section.hidden = false;
}

load();
