// Sign in and sign up, shown while no user is stored.

import { auth, el } from "../api.js";
import { busy, errorBox, field, report } from "./ui.js";

function input(testid, attrs) {
  return el("input", { "data-testid": testid, required: true, ...attrs });
}

function signInForm(onSignedIn) {
  const username = input("signin-username", { autocomplete: "username", name: "username" });
  const password = input("signin-password", { type: "password", autocomplete: "current-password" });
  const submit = el("button", { type: "submit", "data-testid": "signin-submit" }, "Sign in");
  const error = errorBox("signin-error");
  const form = el(
    "form",
    { class: "card", "aria-labelledby": "signin-heading", novalidate: true },
    el("h2", { id: "signin-heading" }, "Sign in"),
    field("Username", username),
    field("Password", password),
    error,
    el("p", {}, submit),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    report(error, null);
    try {
      await busy(submit, () => auth.login(username.value.trim(), password.value));
      onSignedIn();
    } catch (err) {
      report(error, err);
    }
  });
  return form;
}

function signUpForm(onSignedIn) {
  const username = input("signup-username", {
    autocomplete: "username",
    minlength: 3,
    maxlength: 32,
    pattern: "[A-Za-z0-9_.\\-]+",
  });
  const password = input("signup-password", {
    type: "password",
    autocomplete: "new-password",
    minlength: 8,
    maxlength: 128,
  });
  const displayName = el("input", { "data-testid": "signup-display-name", autocomplete: "nickname", maxlength: 100 });
  const submit = el("button", { type: "submit", "data-testid": "signup-submit" }, "Create account");
  const error = errorBox("signup-error");
  const form = el(
    "form",
    { class: "card", "aria-labelledby": "signup-heading", novalidate: true },
    el("h2", { id: "signup-heading" }, "New here? Sign up"),
    field("Username", username, "3–32 letters, digits, _ . -"),
    field("Password", password, "At least 8 characters"),
    field("Display name (optional)", displayName),
    error,
    el("p", {}, submit),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    report(error, null);
    try {
      await busy(submit, () =>
        auth.register(username.value.trim(), password.value, displayName.value.trim()),
      );
      onSignedIn();
    } catch (err) {
      report(error, err);
    }
  });
  return form;
}

/**
 * The signed-out page; `onSignedIn` runs once a user is stored. `returning`:
 * another page sent the user here and gets them back afterwards.
 */
export function signInView(container, onSignedIn, { returning = false } = {}) {
  const why = returning
    ? "Sign in or sign up: you go back to the page you came from afterwards."
    : "Sign in to write recipes and cook them live.";
  container.append(
    el("h1", {}, returning ? "Sign in to Simmer" : "Host dashboard"),
    el("p", { class: "muted", "data-testid": "signin-why" }, why),
    el("div", { class: "auth-forms" }, signInForm(onSignedIn), signUpForm(onSignedIn)),
  );
}
