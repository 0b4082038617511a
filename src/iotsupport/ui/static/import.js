// Import in the devices list: files of the old layout (or zips of them), a preview that
// changes nothing, then the import, each with the per-file report of `import-dir`.

import { api, el, formatBytes, notify, server } from "./common.js";
import { fillModelPicker } from "./schema.js";

const $ = (id) => document.getElementById(id);
const OUTCOMES = { created: "created", updated: "updated", unchanged: "unchanged", skipped: "skipped" };

function plural(count, word) {
  return `${count} ${word}${count === 1 ? "" : "s"}`;
}

/** Wire the import panel; `imported()` reloads the list after a real import. */
export function setupImport({ imported }) {
  const panel = $("import");
  const files = $("import-files");
  const model = $("import-model");
  const run = $("import-run");
  const summary = $("import-summary");
  const report = $("import-report");
  let previewed = false;

  if (server.importMaxBytes) {
    $("import-limits").textContent = `(.json or .zip; at most ${formatBytes(server.importMaxBytes)} and ${server.importMaxFiles.toLocaleString()} files)`;
  }

  function reset() {
    previewed = false;
    run.disabled = true;
    summary.textContent = "";
    summary.classList.remove("bad");
    report.hidden = true;
    $("import-rows").replaceChildren();
  }

  async function open() {
    panel.hidden = false;
    reset();
    await fillModelPicker(model, null);
    files.focus();
  }

  function close() {
    panel.hidden = true;
    reset();
    $("import-open").focus();
  }

  function tooLarge() {
    const total = [...files.files].reduce((sum, file) => sum + file.size, 0);
    if (!server.importMaxBytes || total <= server.importMaxBytes) return null;
    return `The files are ${formatBytes(total)}; the server takes at most ${formatBytes(server.importMaxBytes)} per import (IMPORT_MAX_BYTES).`;
  }

  function show(answer) {
    const { created, updated, unchanged, skipped } = answer;
    const what = `${created} created, ${updated} updated, ${unchanged} unchanged, ${skipped} skipped`;
    summary.textContent = answer.dry_run ? `Preview (nothing changed yet): ${what}.` : `Imported: ${what}.`;
    summary.classList.toggle("bad", skipped > 0);
    $("import-rows").replaceChildren(...answer.results.map((row) => el("tr", { class: `outcome-${row.outcome}` },
      el("td", { class: "mono" }, row.file),
      el("td", {}, el("span", { class: `badge outcome ${row.outcome}` }, OUTCOMES[row.outcome] ?? row.outcome)),
      el("td", {}, row.reason ?? ""))));
    report.hidden = answer.results.length === 0;
    summary.focus();
  }

  async function send(dryRun) {
    if (files.files.length === 0) { notify("Choose the files to import first.", { kind: "error" }); files.focus(); return; }
    const problem = tooLarge();
    if (problem) { notify(`Not imported: ${problem}`, { kind: "error" }); return; }
    const body = new FormData();
    for (const file of files.files) body.append("file", file, file.name);
    body.append("dry_run", dryRun ? "true" : "false");
    if (model.value) body.append("model", model.value);
    summary.textContent = dryRun ? "Checking the files…" : "Importing…";
    const result = await api("POST", "/api/configs/import", { body });
    if (!result.ok) {
      summary.textContent = "";
      notify(`${dryRun ? "No preview" : "Not imported"}: ${result.error}`, { kind: "error" });
      return;
    }
    show(result.data);
    if (dryRun) {
      previewed = true;
      run.disabled = result.data.created + result.data.updated === 0;
      return;
    }
    run.disabled = true;
    notify(`Imported ${plural(result.data.created, "new device")}, updated ${result.data.updated}.`);
    await imported();
  }

  $("import-open").addEventListener("click", open);
  $("import-close").addEventListener("click", close);
  $("import-preview").addEventListener("click", () => send(true));
  $("import-form").addEventListener("submit", (event) => {
    event.preventDefault();
    if (previewed) send(false);
  });
  files.addEventListener("change", reset);
  model.addEventListener("change", reset);
}
