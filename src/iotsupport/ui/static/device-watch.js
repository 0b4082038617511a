// While a device is edited: notice that someone else saved it (before Save meets the
// conflict), and find out what became of a save whose answer was lost.

import { api, notify, rawMember } from "./common.js";

const WATCH_MS = 10000;

/** Every WATCH_MS while `editing()`, read the config; when its ETag is not `etag()`,
 * say who saved which version, once per version. `compare()` opens the comparison. */
export function watchForOthers({ base, etag, editing, compare }) {
  let told = null;
  async function look() {
    if (!document.hidden && editing()) {
      const result = await api("GET", base);
      const theirs = result.ok ? result.headers.get("ETag") : null;
      if (theirs && theirs !== etag() && theirs !== told) {
        told = theirs;
        const who = result.data.updated_by ? ` by ${result.data.updated_by}` : "";
        notify(`Someone else saved this device meanwhile (version ${result.data.version}${who}). Saving will show their changes first.`, {
          kind: "info", action: { label: "Show their changes", run: compare },
        });
      }
    }
    setTimeout(look, WATCH_MS);
  }
  setTimeout(look, WATCH_MS);
}

/** A save got no answer: did it reach the server? Resolves to the config as the server has
 * it now when it holds exactly `sent` in a version after `before`; else to
 * {saved: false, version}; or {unknown: true} when the server does not answer either. */
export async function checkLostSave(base, sent, before) {
  const status = notify("Not known whether it was saved (the answer was lost): checking…", { kind: "info" });
  const result = await api("GET", base);
  status.remove();
  if (!result.ok) return { unknown: true };
  const text = rawMember(result.text, "content");
  if (result.data.version > before && text === sent) return { saved: true, result };
  return { saved: false, version: result.data.version };
}
