// A device's credential on its page: issue (shown once, with a copy button), rotate,
// revoke, and download a provisioning bundle (JSON or an NVS partition image).

import {
  api, ask, copyText, el, formatDateTime, loginUrl, notify, saveFile, timeElement,
} from "./common.js";

const dom = Object.fromEntries([
  "credential", "credential-state", "issue-token", "revoke-token", "provisioning", "provision-form",
  "bundle-format", "partition-field", "partition-size", "wifi-ssid", "wifi-password", "download-bundle",
  "token-dialog", "token-value", "copy-token", "confirm-revoke",
].map((id) => [id.replace(/-(.)/g, (_, char) => char.toUpperCase()), document.getElementById(id)]));

/** Shown when the server reports credentials (a `credential` key in the config body). */
export function setupCredential(configId, reload) {
  const base = `/api/configs/${configId}`;

  async function showToken(token, what) {
    dom.tokenValue.value = token;
    notify(`${what} Copy the token now: it is not shown again.`, { kind: "info" });
    await ask(dom.tokenDialog);
    dom.tokenValue.value = "";
  }

  dom.issueToken.addEventListener("click", async () => {
    const rotating = dom.issueToken.dataset.rotate === "true";
    const result = await api("POST", `${base}/credential`);
    if (!result.ok) { notify(`No token issued: ${result.error}`, { kind: "error" }); return; }
    await reload();
    await showToken(result.data.token, rotating
      ? "New token issued; the old one works until the device uses this one."
      : "Token issued.");
  });
  dom.copyToken.addEventListener("click", async () => {
    const copied = await copyText(dom.tokenValue.value, dom.tokenValue);
    notify(copied ? "Token copied." : "Selected the token: press Ctrl+C to copy it.", { kind: "info" });
  });
  dom.revokeToken.addEventListener("click", async () => {
    if (await ask(dom.confirmRevoke) !== "revoke") return;
    const result = await api("DELETE", `${base}/credential`);
    if (!result.ok) { notify(`Not revoked: ${result.error}`, { kind: "error" }); return; }
    notify("Credential revoked: its token no longer works.");
    await reload();
  });
  dom.bundleFormat.addEventListener("change", () => {
    dom.partitionField.hidden = dom.bundleFormat.value !== "nvs";
  });
  dom.provisionForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = { format: dom.bundleFormat.value };
    if (body.format === "nvs") body.partition_size = Number(dom.partitionSize.value.trim());
    if (dom.wifiSsid.value) body.wifi_ssid = dom.wifiSsid.value;
    if (dom.wifiPassword.value) body.wifi_password = dom.wifiPassword.value;
    // Busy, not disabled: a disabled button drops the keyboard to the top of the page.
    dom.downloadBundle.setAttribute("aria-busy", "true");
    try {
      if (await download(`${base}/provisioning`, body)) {
        dom.wifiPassword.value = "";
        notify("Bundle downloaded: it holds a new token for this device.");
        await reload();
      }
    } finally {
      dom.downloadBundle.removeAttribute("aria-busy");
    }
  });
}

/** Render the credential box from a config body; hidden when the server has no credentials. */
export function renderCredential(config) {
  dom.credential.hidden = !("credential" in config);
  if (dom.credential.hidden) return;
  const credential = config.credential;
  const parts = [];
  if (credential) {
    parts.push("Token issued ", timeElement(credential.issued_at));
    parts.push(credential.last_used_at
      ? el("span", {}, "; last used ", timeElement(credential.last_used_at),
        credential.last_used_from ? ` from ${credential.last_used_from}` : "")
      : "; not used yet");
    parts.push(".");
  } else {
    parts.push(el("strong", {}, "No credential: "), "this device is served by its MAC alone.");
  }
  if (config.last_fetched_with_credential === false) {
    parts.push(" ", el("span", { class: "badge no-credential", title: formatDateTime(config.last_fetched_at) },
      "fetched without a credential"));
  }
  dom.credentialState.replaceChildren(...parts);
  dom.issueToken.textContent = credential ? "Rotate token" : "Issue token";
  dom.issueToken.dataset.rotate = credential ? "true" : "false";
  dom.revokeToken.hidden = !credential;
}

function filenameOf(response, fallback) {
  const match = /filename="([^"]+)"/.exec(response.headers.get("Content-Disposition") || "");
  return match ? match[1] : fallback;
}

/** POST `body`, save the answer as a file; true when it worked (errors are notified). */
async function download(path, body) {
  let response;
  try {
    response = await fetch(path, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json, application/octet-stream" },
      body: JSON.stringify(body),
      credentials: "same-origin",
    });
  } catch {
    notify("The server did not answer. Check your connection and try again.", { kind: "error" });
    return false;
  }
  if (response.status === 401) { location.assign(loginUrl()); return false; }
  if (!response.ok) {
    let message = `HTTP ${response.status}`;
    try {
      const data = await response.json();
      const fields = (data.details?.errors || []).map((item) => `${item.field}: ${item.message}`).join("; ");
      message = fields ? `${data.error} (${fields})` : data.error;
    } catch { /* not JSON */ }
    notify(`No bundle: ${message}`, { kind: "error" });
    return false;
  }
  saveFile(await response.blob(), filenameOf(response, "provisioning.bin"));
  return true;
}
