// What the releases and rollout pages share: a rollout's state in words.

import { el } from "./common.js";

const STATE_LABELS = {
  running: "Running", waiting_for_approval: "Waiting for approval", paused: "Paused",
  completed: "Completed", cancelled: "Cancelled",
};

const PAUSE_LABELS = {
  error_threshold: "Paused: error threshold", crash_rate: "Paused: crash rate",
  worse_than_previous: "Paused: less crash-free than the release before",
};

export function stateBadge(state, pausedReason) {
  const label = PAUSE_LABELS[pausedReason] || STATE_LABELS[state] || state;
  return el("span", { class: `badge rollout-${state}` }, label);
}
