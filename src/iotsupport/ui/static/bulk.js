// Bulk change in the devices list: a merge patch over the selected devices,
// previewed with diffs, applied with the preview's ETags, undone from the confirmation.

import { api, el, notify } from "./common.js";
import { parseUnified, renderDiff } from "./diff.js";
import { fillModelPicker, renderSchemaErrors } from "./schema.js";

const $ = (id) => document.getElementById(id);
const KEEP = "keep"; // the model picker's "each keeps its model"

function plural(count, word) {
  return `${count} ${word}${count === 1 ? "" : "s"}`;
}

function listOfConfigs(configs) {
  return configs.map((config) => config.mac_address || `#${config.id}`).join(", ");
}

/** Wire the bulk panel. `selected()` gives the picked config ids; `changed(ids)` reloads
 * (and puts the keyboard on the first of `ids`). */
export function setupBulk({ selected, changed }) {
  const panel = $("bulk");
  const patchBox = $("patch");
  const applyButton = $("bulk-apply");
  const summary = $("bulk-summary");
  const results = $("bulk-results");
  const skipBox = $("bulk-skip");
  const skipRow = $("bulk-skip-row");
  const modelBox = $("bulk-model");
  let previewed = null; // {ids, patch, model, answer}
  let modelsLoaded = false;

  /** The body's "model": absent (keep), a code, or null (no model). */
  function modelPart() {
    if (modelBox.value === KEEP) return {};
    return { model: modelBox.value || null };
  }

  function reset() {
    previewed = null;
    applyButton.disabled = true;
    skipRow.hidden = true;
    skipBox.checked = false;
    summary.textContent = "";
    results.replaceChildren();
  }

  async function open() {
    $("bulk-target").textContent = plural(selected().length, "device");
    panel.hidden = false;
    reset();
    patchBox.focus();
    if (!modelsLoaded) {
      modelsLoaded = true;
      await fillModelPicker(modelBox, null, { noneLabel: "No model (free-form)" });
      modelBox.prepend(el("option", { value: KEEP }, "Keep each device's model"));
      modelBox.value = KEEP;
    }
  }

  function patchText() {
    const text = patchBox.value;
    try {
      const value = JSON.parse(text);
      if (value === null || typeof value !== "object" || Array.isArray(value)) throw new Error("the patch must be a JSON object");
    } catch (error) {
      notify(`The patch is not a JSON object: ${error.message}`, { kind: "error" });
      return null;
    }
    return text;
  }

  function changeCard(change) {
    const card = el("article", { class: `bulk-change${change.valid === false ? " invalid" : ""}` },
      el("h3", {}, el("a", { href: `/devices/${change.id}`, class: "mono" }, change.mac_address), " ",
        change.device_name ? el("span", { class: "muted" }, change.device_name) : null, " ",
        change.valid === false ? el("span", { class: "badge schema-bad" }, "would fail its schema") : null, " ",
        change.model_after !== change.model
          ? el("span", { class: "badge" }, `model: ${change.model || "none"} → ${change.model_after || "none"}`) : null));
    if (change.errors.length) {
      const box = el("div", { class: "schema-errors" });
      renderSchemaErrors(box, change.errors);
      card.append(box);
    }
    if (change.diff_omitted) {
      card.append(el("p", { class: "muted" }, "Diff left out: this preview's diffs reached their size limit."));
    } else {
      const diff = el("div", { class: "diff" });
      renderDiff(diff, parseUnified(change.diff));
      card.append(diff);
    }
    return card;
  }

  function group(title, changes, open) {
    if (!changes.length) return null;
    const details = el("details", { class: "bulk-group", open },
      el("summary", { class: "bulk-group-title" }, `${title} (${changes.length})`));
    details.append(...changes.map(changeCard));
    return details;
  }

  async function preview() {
    const patch = patchText();
    if (patch === null) return;
    const ids = selected();
    reset();
    const model = modelPart();
    const result = await api("POST", "/api/configs/bulk", { body: { select: { ids }, patch, ...model, dry_run: true } });
    if (!result.ok) { notify(`No preview: ${result.error}`, { kind: "error" }); return; }
    const answer = result.data;
    previewed = { ids, patch, model, answer };
    const refused = answer.changes.filter((change) => change.valid === false);
    const changing = answer.changes.filter((change) => change.valid !== false && !change.unchanged);
    const unchanged = answer.changes.filter((change) => change.valid !== false && change.unchanged);
    summary.textContent = `${plural(changing.length, "device")} would change, ${unchanged.length} unchanged`
      + (refused.length ? `; ${refused.length} would not meet their schema (listed first).` : ".");
    summary.classList.toggle("bad", refused.length > 0);
    skipBox.checked = false;
    skipRow.hidden = refused.length === 0;
    $("bulk-skip-count").textContent = plural(refused.length, "device");
    // Refused first (they need a decision), then what changes; unchanged folded away.
    results.replaceChildren(...[
      group("Refused: would not meet their schema", refused, true),
      group("Changing", changing, true),
      group("Unchanged", unchanged, false),
    ].filter(Boolean));
    updateApply();
  }

  function updateApply() {
    const answer = previewed?.answer;
    const refused = answer ? answer.invalid : 0;
    const changing = answer ? answer.changes.filter((change) => change.valid !== false && !change.unchanged).length : 0;
    applyButton.disabled = !answer || changing === 0 || (refused > 0 && !skipBox.checked);
  }

  async function undo(changeSet, skipChanged = false) {
    const result = await api("POST", `/api/change-sets/${changeSet}/undo`, { body: { skip_changed: skipChanged } });
    if (result.ok) {
      const skipped = result.data.skipped.length ? `; ${plural(result.data.skipped.length, "device")} left as they are (changed since)` : "";
      notify(`Undone: ${plural(result.data.undone.length, "device")} back as before${skipped}.`);
      await changed(result.data.undone); // the keyboard lands on the first of them
      return;
    }
    if (result.data?.code === "changed_since") {
      notify(`Not undone: ${listOfConfigs(result.data.details.configs)} changed since.`, {
        kind: "error", action: { label: "Undo the others", run: () => undo(changeSet, true) },
      });
      return;
    }
    notify(`Not undone: ${result.error}`, { kind: "error" });
  }

  async function applyIt() {
    if (!previewed) return;
    applyButton.disabled = true;
    const expect = Object.fromEntries(previewed.answer.changes.map((change) => [String(change.id), change.etag]));
    const body = { select: { ids: previewed.ids }, patch: previewed.patch, ...previewed.model, dry_run: false, expect, skip_invalid: skipBox.checked };
    const result = await api("POST", "/api/configs/bulk", { body });
    if (!result.ok) {
      const stale = result.status === 412 ? ` (${listOfConfigs(result.data.details.configs)})` : "";
      notify(`Not applied: ${result.error}${stale}`, { kind: "error" });
      return;
    }
    const { change_set: changeSet, changed: ids, skipped } = result.data;
    reset();
    panel.hidden = true;
    const left = skipped.length ? `; ${plural(skipped.length, "device")} left as they were (would not meet their schema)` : "";
    notify(`Changed ${plural(ids.length, "device")} (change set ${changeSet})${left}.`, {
      kind: "info", focus: true, action: { label: "Undo", run: () => undo(changeSet) },
    });
    await changed();
  }

  $("bulk-open").addEventListener("click", open);
  $("bulk-close").addEventListener("click", () => { panel.hidden = true; reset(); });
  $("bulk-preview").addEventListener("click", preview);
  applyButton.addEventListener("click", applyIt);
  skipBox.addEventListener("change", updateApply);
  patchBox.addEventListener("input", reset);
  modelBox.addEventListener("change", reset);
  return { reset, close: () => { panel.hidden = true; reset(); } };
}
