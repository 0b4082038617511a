// Line diffs: computed here (Myers' O(ND) algorithm) or taken from the API's unified diff.

import { el } from "./common.js";
import { checkContent, formatJson } from "./json.js";

/** Pretty-print valid JSON so that a formatting-only change is not shown as a change. */
export function prettyJson(text) {
  return checkContent(text).ok ? formatJson(text) : text;
}

/** [{kind: " " | "-" | "+", text}] turning lines of `before` into lines of `after`. */
export function lineDiff(before, after) {
  const a = before.replace(/\n$/, "").split("\n");
  const b = after.replace(/\n$/, "").split("\n");
  const max = a.length + b.length;
  if (max > 6000) {
    // Too big to compare line by line in the page; show it as replaced.
    return [...a.map((text) => ({ kind: "-", text })), ...b.map((text) => ({ kind: "+", text }))];
  }
  const frontier = new Map([[1, 0]]);
  const trace = [];
  for (let d = 0; d <= max; d += 1) {
    trace.push(new Map(frontier));
    for (let k = -d; k <= d; k += 2) {
      const down = k === -d || (k !== d && (frontier.get(k - 1) ?? -1) < (frontier.get(k + 1) ?? -1));
      let x = down ? frontier.get(k + 1) ?? 0 : (frontier.get(k - 1) ?? 0) + 1;
      let y = x - k;
      while (x < a.length && y < b.length && a[x] === b[y]) { x += 1; y += 1; }
      frontier.set(k, x);
      if (x >= a.length && y >= b.length) return backtrack(trace, a, b, x, y, d);
    }
  }
  return [];
}

function backtrack(trace, a, b, x, y, d) {
  const ops = [];
  for (let step = d; step > 0; step -= 1) {
    const frontier = trace[step];
    const k = x - y;
    const down = k === -step || (k !== step && (frontier.get(k - 1) ?? -1) < (frontier.get(k + 1) ?? -1));
    const prevK = down ? k + 1 : k - 1;
    const prevX = frontier.get(prevK) ?? 0;
    const prevY = prevX - prevK;
    while (x > prevX && y > prevY) { x -= 1; y -= 1; ops.push({ kind: " ", text: a[x] }); }
    if (down) { y -= 1; ops.push({ kind: "+", text: b[y] }); } else { x -= 1; ops.push({ kind: "-", text: a[x] }); }
  }
  while (x > 0 && y > 0) { x -= 1; y -= 1; ops.push({ kind: " ", text: a[x] }); }
  return ops.reverse();
}

/** The lines of a unified diff text as diff operations (headers become hunk markers). */
export function parseUnified(text) {
  const ops = [];
  for (const line of text.replace(/\n$/, "").split("\n")) {
    if (line.startsWith("---") || line.startsWith("+++")) continue;
    if (line.startsWith("@@")) ops.push({ kind: "@", text: line });
    else if (line[0] === "+" || line[0] === "-" || line[0] === " ") ops.push({ kind: line[0], text: line.slice(1) });
    else if (line) ops.push({ kind: " ", text: line });
  }
  return ops;
}

const CONTEXT = 3;

/** Show `ops` in `container`: changed lines with a few lines of context around them. */
export function renderDiff(container, ops, { emptyText = "No differences." } = {}) {
  container.replaceChildren();
  if (!ops.some((op) => op.kind === "+" || op.kind === "-")) {
    container.append(el("p", { class: "muted diff-empty" }, emptyText));
    return;
  }
  const keep = ops.map(() => false);
  ops.forEach((op, index) => {
    if (op.kind === " ") return;
    for (let near = Math.max(0, index - CONTEXT); near <= Math.min(ops.length - 1, index + CONTEXT); near += 1) keep[near] = true;
  });
  const pre = el("pre", { class: "diff-lines", tabindex: "0" }); // scrolls: reachable by keyboard
  let skipped = false;
  ops.forEach((op, index) => {
    if (!keep[index]) { skipped = true; return; }
    if (skipped) { pre.append(el("span", { class: "line gap" }, "⋯")); skipped = false; }
    const kind = { "+": "add", "-": "del", "@": "hunk", " ": "same" }[op.kind];
    const sign = op.kind === "@" ? "" : op.kind;
    pre.append(el("span", { class: `line ${kind}` }, el("span", { class: "sign", "aria-hidden": "true" }, sign), op.text));
  });
  if (skipped) pre.append(el("span", { class: "line gap" }, "⋯"));
  const added = ops.filter((op) => op.kind === "+").length;
  const removed = ops.filter((op) => op.kind === "-").length;
  container.append(el("p", { class: "diff-summary" },
    el("span", { class: "add-count" }, `+${added}`), " ",
    el("span", { class: "del-count" }, `−${removed}`), ` line${added + removed === 1 ? "" : "s"}`), pre);
}
