// Bulk change in the devices list: a merge patch over the selected devices,
// previewed with diffs, applied with the preview's ETags, undone from the confirmation.

import { api, el, notify } from "./common.js";
import { parseUnified, renderDiff } from "./diff.js";
import { renderSchemaErrors } from "./schema.js";

const $ = (id) => document.getElementById(id);

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
  let previewed = null; // {ids, patch, answer}

  function reset() {
    previewed = null;
    applyButton.disabled = true;
    summary.textContent = "";
    results.replaceChildren();
  }

  function open() {
    $("bulk-target").textContent = plural(selected().length, "device");
    panel.hidden = false;
    reset();
    patchBox.focus();
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
        change.valid === false ? el("span", { class: "badge schema-bad" }, "would fail its schema") : null));
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

  async function preview() {
    const patch = patchText();
    if (patch === null) return;
    const ids = selected();
    reset();
    const result = await api("POST", "/api/configs/bulk", { body: { select: { ids }, patch, dry_run: true } });
    if (!result.ok) { notify(`No preview: ${result.error}`, { kind: "error" }); return; }
    const answer = result.data;
    previewed = { ids, patch, answer };
    const unchanged = answer.count - answer.changed;
    summary.textContent = `${plural(answer.changed, "device")} would change, ${unchanged} unchanged`
      + (answer.invalid ? `; ${answer.invalid} would not meet their schema, so the change cannot be applied.` : ".");
    summary.classList.toggle("bad", answer.invalid > 0);
    results.replaceChildren(...answer.changes.filter((change) => !change.unchanged || change.valid === false).map(changeCard));
    applyButton.disabled = answer.changed === 0 || answer.invalid > 0;
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
    const body = { select: { ids: previewed.ids }, patch: previewed.patch, dry_run: false, expect };
    const result = await api("POST", "/api/configs/bulk", { body });
    if (!result.ok) {
      const stale = result.status === 412 ? ` (${listOfConfigs(result.data.details.configs)})` : "";
      notify(`Not applied: ${result.error}${stale}`, { kind: "error" });
      return;
    }
    const { change_set: changeSet, changed: ids } = result.data;
    reset();
    panel.hidden = true;
    notify(`Changed ${plural(ids.length, "device")} (change set ${changeSet}).`, {
      kind: "info", focus: true, action: { label: "Undo", run: () => undo(changeSet) },
    });
    await changed();
  }

  $("bulk-open").addEventListener("click", open);
  $("bulk-close").addEventListener("click", () => { panel.hidden = true; reset(); });
  $("bulk-preview").addEventListener("click", preview);
  applyButton.addEventListener("click", applyIt);
  patchBox.addEventListener("input", reset);
  return { reset, close: () => { panel.hidden = true; reset(); } };
}
