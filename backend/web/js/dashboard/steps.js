// The recipe editor's step rows: text, duration, label; add, move, delete.
// Rows are the source of truth (read back on save), so moving a row keeps
// whatever the user typed in it.

import { el } from "../api.js";
import { formatDuration, parseDuration } from "./duration.js";
import { field } from "./ui.js";

/** A list of step rows; `read()` returns the steps for the API. */
export function stepEditor(initialSteps) {
  const list = el("ol", { class: "steps", "data-testid": "step-list" });

  function renumber() {
    const rows = [...list.children];
    rows.forEach((row, index) => {
      const name = `Step ${index + 1}`;
      const up = row.querySelector('[data-testid="step-up"]');
      const down = row.querySelector('[data-testid="step-down"]');
      const remove = row.querySelector('[data-testid="step-delete"]');
      row.querySelector(".step-number").textContent = name;
      up.disabled = index === 0;
      down.disabled = index === rows.length - 1;
      remove.disabled = rows.length === 1; // a recipe needs at least one step
      up.setAttribute("aria-label", `Move ${name} up`);
      down.setAttribute("aria-label", `Move ${name} down`);
      remove.setAttribute("aria-label", `Delete ${name}`);
    });
  }

  // After a move the pressed button may become disabled (first/last row):
  // keep keyboard focus inside the moved row.
  function refocus(row, button) {
    (button.disabled ? row.querySelector("textarea") : button).focus();
  }

  function row(step = {}) {
    const text = el("textarea", { "data-testid": "step-text", rows: 2, required: true, maxlength: 2000 });
    text.value = step.text || "";
    const duration = el("input", {
      "data-testid": "step-duration",
      inputmode: "numeric",
      placeholder: "m:ss",
      value: formatDuration(step.duration_s),
    });
    const label = el("input", { "data-testid": "step-label", maxlength: 60, value: step.label || "" });
    const node = el("li", { class: "step card" });
    function move(delta, button) {
      const sibling = delta < 0 ? node.previousElementSibling : node.nextElementSibling;
      if (!sibling) return;
      list.insertBefore(node, delta < 0 ? sibling : sibling.nextElementSibling);
      renumber();
      refocus(node, button);
    }
    const up = el("button", { type: "button", class: "secondary", "data-testid": "step-up" }, "Move up");
    const down = el("button", { type: "button", class: "secondary", "data-testid": "step-down" }, "Move down");
    const remove = el("button", { type: "button", class: "secondary danger", "data-testid": "step-delete" }, "Delete step");
    up.addEventListener("click", () => move(-1, up));
    down.addEventListener("click", () => move(1, down));
    remove.addEventListener("click", () => {
      const next = node.nextElementSibling || node.previousElementSibling;
      node.remove();
      renumber();
      next?.querySelector("textarea").focus();
    });
    node.append(
      el("h3", { class: "step-number" }),
      field("What to do", text),
      el(
        "div",
        { class: "step-meta" },
        field("Duration (optional)", duration, "Seconds (90) or minutes:seconds (1:30); empty: the host moves on"),
        field("Label (optional)", label, "A short name for small screens"),
      ),
      el("div", { class: "row" }, up, down, remove),
    );
    return node;
  }

  function add(step) {
    const node = row(step);
    list.append(node);
    renumber();
    return node;
  }

  /** The steps as the API wants them; throws (and marks the field) on a bad duration. */
  function read() {
    return [...list.children].map((node, index) => {
      const duration = node.querySelector('[data-testid="step-duration"]');
      const label = node.querySelector('[data-testid="step-label"]').value.trim();
      duration.removeAttribute("aria-invalid");
      const step = { text: node.querySelector('[data-testid="step-text"]').value.trim() };
      try {
        const seconds = parseDuration(duration.value);
        if (seconds !== null) step.duration_s = seconds;
      } catch (err) {
        duration.setAttribute("aria-invalid", "true");
        duration.focus();
        throw new Error(`Step ${index + 1}: ${err.message}`);
      }
      if (label) step.label = label;
      return step;
    });
  }

  const steps = initialSteps.length ? initialSteps : [{}];
  steps.forEach((step) => add(step));
  const addButton = el("button", { type: "button", class: "secondary", "data-testid": "add-step" }, "Add step");
  addButton.addEventListener("click", () => add().querySelector("textarea").focus());
  return { node: el("div", {}, list, addButton), read };
}
