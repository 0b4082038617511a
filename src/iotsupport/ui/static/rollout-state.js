// What the releases and rollout pages share: a rollout's state in words.

import { el } from "./common.js";

const STATE_LABELS = {
  running: "Running", waiting_for_approval: "Waiting for approval", paused: "Paused",
  completed: "Completed", cancelled: "Cancelled",
};

export function stateBadge(state, pausedReason) {
  const label = pausedReason === "error_threshold" ? "Paused: error threshold" : (STATE_LABELS[state] || state);
  return el("span", { class: `badge rollout-${state}` }, label);
}
