// The change sets: every bulk change (who, when, what, how many), each with its undo.

import { api, el, notify, startPage, timeElement } from "./common.js";

const $ = (id) => document.getElementById(id);
const PAGE = 100;
let oldest = null;
let shown = 0;

function plural(count, word) {
  return `${count} ${word}${count === 1 ? "" : "s"}`;
}

function row(changeSet) {
  const undoCell = el("td", { class: "right" });
  const state = () => {
    if (changeSet.undone_at) {
      undoCell.replaceChildren(el("span", { class: "muted small" }, "undone by ", changeSet.undone_by, " ", timeElement(changeSet.undone_at)));
    } else {
      undoCell.replaceChildren(el("button", {
        type: "button", class: "button small", "aria-label": `Undo change set ${changeSet.id}`, onclick: () => undo(changeSet, false, state),
      }, "Undo"));
    }
  };
  state();
  return el("tr", { id: `change-set-${changeSet.id}` },
    el("td", { class: "nowrap" }, timeElement(changeSet.created_at)),
    el("td", {}, changeSet.created_by),
    el("td", {}, el("code", { class: "patch" }, JSON.stringify(changeSet.patch))),
    el("td", { class: "num" }, String(changeSet.count)),
    undoCell);
}

async function undo(changeSet, skipChanged, redraw) {
  const result = await api("POST", `/api/change-sets/${changeSet.id}/undo`, { body: { skip_changed: skipChanged } });
  if (result.ok) {
    const skipped = result.data.skipped.length ? `; ${plural(result.data.skipped.length, "device")} left as they are (changed since)` : "";
    notify(`Undone: ${plural(result.data.undone.length, "device")} back as before${skipped}.`);
    changeSet.undone_at = new Date().toISOString();
    changeSet.undone_by = "you";
    redraw();
    $(`change-set-${changeSet.id}`).querySelector("td.right").setAttribute("tabindex", "-1");
    $(`change-set-${changeSet.id}`).querySelector("td.right").focus(); // the button is gone: stay on its row
    return;
  }
  if (result.data?.code === "changed_since") {
    const names = result.data.details.configs.map((config) => config.mac_address || `#${config.id}`).join(", ");
    notify(`Not undone: ${names} changed since.`, {
      kind: "error", action: { label: "Undo the others", run: () => undo(changeSet, true, redraw) },
    });
    return;
  }
  notify(`Not undone: ${result.error}`, { kind: "error" });
}

async function load() {
  const query = oldest ? `?limit=${PAGE}&before=${oldest}` : `?limit=${PAGE}`;
  const result = await api("GET", `/api/change-sets${query}`);
  $("loading").hidden = true;
  if (!result.ok) {
    $("load-error").textContent = `Could not load the change sets: ${result.error}`;
    $("load-error").hidden = false;
    return;
  }
  const list = result.data.change_sets;
  $("rows").append(...list.map(row));
  shown += list.length;
  if (list.length) oldest = list[list.length - 1].id;
  $("count").textContent = String(shown);
  $("table-wrap").hidden = shown === 0;
  $("empty").hidden = shown > 0;
  $("more").hidden = list.length < PAGE;
}

$("more").addEventListener("click", load);
startPage();
load();
