// The recipe panel: the steps, the current one, and its countdown. The
// server's `timer` (from REST, the join snapshot or `timer` frames) decides
// everything; the page only ticks the countdown between frames.

import { el, formatCountdown } from "/assets/js/api.js";
import { clock } from "/assets/js/viewer/clock.js";
import { $ } from "/assets/js/viewer/state.js";

const COUNTDOWN_TICK_MS = 250;

const TIMER_LABELS = {
  idle: "Not started",
  running: "Cooking",
  paused: "Paused",
  finished: "All steps done",
};

let steps = []; // the recipe's steps, for timers that name only an index
let timer = null; // the latest timer from the server
let announced = ""; // what the live region last said, so it is said once
let ticker = null; // the countdown's interval
let over = false; // the session ended: the countdown stands still

function stepTitle(step) {
  return step.label ? `${step.label}: ${step.text}` : step.text;
}

export function renderRecipe(recipe) {
  steps = recipe.steps;
  $("recipe-title").textContent = recipe.title;
  $("steps").replaceChildren(
    ...recipe.steps.map((step) =>
      el(
        "li",
        { "data-index": step.index },
        stepTitle(step),
        step.duration_s
          ? el("span", { class: "muted" }, ` (${formatCountdown(step.duration_s * 1000)})`)
          : null,
      ),
    ),
  );
}

export function applyTimer(next) {
  if (!next) return;
  clock.observe(next.server_time_ms);
  timer = next;
  const text = timer.step?.text || steps[timer.step_index]?.text || "";
  for (const item of $("steps").children) {
    const current = Number(item.dataset.index) === timer.step_index;
    item.classList.toggle("current", current);
    if (current) item.setAttribute("aria-current", "step");
    else item.removeAttribute("aria-current");
  }
  const label = over ? "Session ended" : TIMER_LABELS[timer.state] || timer.state;
  $("timer-state").textContent = `${label} · step ${timer.step_index + 1} of ${timer.step_count}`;
  $("current-step").textContent = text;
  const announcement = `${label}. Step ${timer.step_index + 1}: ${text}`;
  if (announcement !== announced) {
    announced = announcement;
    $("timer-announce").textContent = announcement;
  }
  renderCountdown();
}

/** The countdown is always derived from the deadline, never decremented. */
function renderCountdown() {
  let shown = "–"; // a manual step, or nothing yet
  if (timer?.state === "running" && timer.deadline_ms != null) {
    shown = formatCountdown(timer.deadline_ms - clock.now());
  } else if (timer?.remaining_ms != null) {
    shown = formatCountdown(timer.remaining_ms);
  }
  if ($("countdown").textContent !== shown) $("countdown").textContent = shown;
}

export function startCountdown() {
  ticker = setInterval(renderCountdown, COUNTDOWN_TICK_MS);
}

/**
 * The session ended: the countdown stops where it was (the server pauses
 * the timer there; its final state may still arrive and is shown as is).
 */
export function stopCountdown() {
  over = true;
  clearInterval(ticker);
  if (timer?.state === "running" && timer.deadline_ms != null) {
    const remaining = Math.max(0, timer.deadline_ms - clock.now());
    timer = { ...timer, state: "paused", deadline_ms: null, remaining_ms: remaining };
  }
  applyTimer(timer);
}
