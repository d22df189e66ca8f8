// The recipe timer: the current step, a countdown rendered locally from the
// absolute deadline, and the host's controls (sent over REST, which answers
// with the new timer; every /ws member also gets it as a `timer` frame).

import { el, formatCountdown } from "../api.js";
import { call, errorBox, report } from "./ui.js";

const TICK_MS = 250;

// testid → the request body and whether it applies to a timer.
const CONTROLS = [
  ["timer-start", "Start", { action: "start" }, (t) => t.state === "idle"],
  ["timer-pause", "Pause", { action: "pause" }, (t) => t.state === "running"],
  ["timer-resume", "Resume", { action: "resume" }, (t) => t.state === "paused"],
  ["timer-previous", "Previous step", { action: "previous" }, (t) => t.step_index > 0],
  ["timer-next", "Next step", { action: "next" }, (t) => t.state !== "finished"],
  ["timer-minus30", "−30 s", { action: "add_time", seconds: -30 }, hasCountdown],
  ["timer-plus30", "+30 s", { action: "add_time", seconds: 30 }, hasCountdown],
];

function hasCountdown(timer) {
  return timer.state !== "finished" && timer.step?.duration_s != null;
}

function stepText(timer) {
  if (timer.state === "finished") return "All steps done";
  if (!timer.step) return "This recipe has no steps";
  const label = timer.step.label ? `${timer.step.label}: ` : "";
  return `Step ${timer.step_index + 1} of ${timer.step_count} — ${label}${timer.step.text}`;
}

export function timerPanel(sessionId) {
  const step = el("p", { class: "current-step", "data-testid": "current-step" }, "—");
  const state = el("span", { class: "badge", "data-testid": "timer-state" });
  const countdown = el("p", { class: "countdown", role: "timer", "data-testid": "countdown" }, "—");
  const error = errorBox("timer-error");
  const buttons = CONTROLS.map(([testid, text, body, applies]) => {
    const button = el("button", { type: "button", class: "secondary", "data-testid": testid, disabled: true }, text);
    button.addEventListener("click", () => control(body));
    return { button, applies };
  });
  let timer = null;
  let offset = 0; // server clock minus ours
  let live = false;
  let sending = false;
  let over = false; // the session ended: the countdown stands still

  function refreshButtons() {
    for (const { button, applies } of buttons) button.disabled = !live || sending || !timer || !applies(timer);
  }

  function remainingMs() {
    if (timer.state === "running" && timer.deadline_ms != null) return timer.deadline_ms - (Date.now() + offset);
    return timer.remaining_ms;
  }

  function tick() {
    if (!timer) return;
    const remaining = remainingMs();
    countdown.textContent = remaining == null ? "—" : formatCountdown(remaining);
  }

  /** Shows a timer snapshot (REST answer, join snapshot or `timer` frame). */
  function render(next) {
    // Frames and REST answers can cross: never go back to an older snapshot.
    if (timer && next.server_time_ms < timer.server_time_ms) return;
    timer = next;
    offset = next.server_time_ms - Date.now();
    step.textContent = stepText(next);
    state.textContent = over ? "ended" : next.state;
    refreshButtons();
    tick();
  }

  async function control(body) {
    report(error, null);
    sending = true;
    refreshButtons();
    try {
      render(await call("POST", `/sessions/${sessionId}/timer`, body));
    } catch (err) {
      report(error, err);
    } finally {
      sending = false;
      refreshButtons();
    }
  }

  let interval = setInterval(tick, TICK_MS);
  const node = el(
    "section",
    { class: "card timer", "aria-labelledby": "timer-heading" },
    el("h2", { id: "timer-heading" }, "Recipe timer"),
    // The step and state are announced; the ticking countdown is not (role=timer).
    el("div", { class: "timer-status", "aria-live": "polite" }, state, step),
    countdown,
    el("div", { class: "row timer-controls" }, buttons.map((b) => b.button)),
    error,
  );
  return {
    node,
    render,
    /** Controls apply only while the session is live. */
    setLive(value) {
      live = value;
      refreshButtons();
    },
    /** The session ended: the countdown stops where it was. */
    end() {
      over = true;
      live = false;
      clearInterval(interval);
      interval = null;
      if (timer?.state === "running" && timer.deadline_ms != null) {
        timer = { ...timer, state: "paused", deadline_ms: null, remaining_ms: Math.max(0, remainingMs()) };
      }
      if (timer) render(timer);
    },
    dispose: () => clearInterval(interval),
  };
}
