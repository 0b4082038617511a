// Models: every device model with how many devices use it and how many fail its schema.

import { api, el, notify, startPage, timeElement } from "./common.js";

const rows = document.getElementById("rows");

async function load() {
  const result = await api("GET", "/api/models");
  document.getElementById("loading").hidden = true;
  if (!result.ok) {
    notify(`Could not load the models: ${result.error}`, { kind: "error" });
    return;
  }
  const models = result.data.models;
  document.getElementById("count").textContent = String(models.length);
  document.getElementById("table-wrap").hidden = models.length === 0;
  document.getElementById("empty").hidden = models.length > 0;
  rows.replaceChildren(...models.map((model) => el("tr", {},
    el("td", { class: "mono" }, el("a", { href: `/models/${encodeURIComponent(model.code)}` }, model.code)),
    el("td", {}, model.name, model.description ? el("span", { class: "muted small" }, ` — ${model.description}`) : null),
    el("td", { class: "num" }, el("a", { href: `/?model=${encodeURIComponent(model.code)}` }, String(model.config_count))),
    el("td", { class: "num" }, model.invalid_count
      ? el("span", { class: "badge schema-bad" }, `${model.invalid_count} not meeting it`)
      : el("span", { class: "muted" }, "0")),
    el("td", { class: "num hide-narrow" }, String(model.version)),
    el("td", { class: "hide-narrow" }, timeElement(model.updated_at)))));
}

startPage();
load();
