// Small helpers shared by the dashboard's views: authenticated calls, error
// text, labelled form fields.

import { api, auth, el } from "../api.js";

/** Fired on `window` when the stored sign-in turned out to be gone. */
export const SIGNED_OUT = "simmer:signed-out";

/** `api()` with the signed-in user's (fresh) access token. */
export async function call(method, path, body) {
  try {
    return await api(method, path, { body, token: await auth.token() });
  } catch (err) {
    // auth.token() forgets a sign-in whose refresh was refused (revoked,
    // expired): send the user back to the sign-in page.
    if (err.status === 401 && !auth.current()) window.dispatchEvent(new Event(SIGNED_OUT));
    throw err;
  }
}

/** What to tell the user about a failure: the problem's `detail` if any. */
export function errorText(err) {
  return err?.detail || err?.message || String(err);
}

/** A hidden alert paragraph that `report()` fills next to a form. */
export function errorBox(testid) {
  const box = el("p", { class: "form-error error", role: "alert", "data-testid": testid });
  box.hidden = true;
  return box;
}

/** Shows `err` in `box`, or hides the box when `err` is null. */
export function report(box, err) {
  box.textContent = err ? errorText(err) : "";
  box.hidden = !err;
}

let nextId = 0;

/** A label and its control, tied by a generated id. */
export function field(text, control, hint) {
  control.id ||= `f${++nextId}`;
  const parts = [el("label", { for: control.id }, text), control];
  if (hint) {
    const hintNode = el("small", { class: "muted", id: `${control.id}-hint` }, hint);
    control.setAttribute("aria-describedby", hintNode.id);
    parts.push(hintNode);
  }
  return el("div", { class: "field" }, parts);
}

/** Runs `work` with `button` disabled, so a double click sends one request. */
export async function busy(button, work) {
  button.disabled = true;
  try {
    return await work();
  } finally {
    button.disabled = false;
  }
}
