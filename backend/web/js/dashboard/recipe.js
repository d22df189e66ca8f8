// A recipe's page (#/recipes/new, #/recipes/{id}): the editor, and for a
// saved recipe the form that starts a session with it.

import { el } from "../api.js";
import { rememberSession } from "./my-sessions.js";
import { stepEditor } from "./steps.js";
import { busy, call, errorBox, field, report } from "./ui.js";

/** The recipe as the API wants it, read from the form's controls. */
function readRecipe(controls, steps) {
  const recipe = { title: controls.title.value.trim(), steps: steps.read() };
  const description = controls.description.value.trim();
  if (description) recipe.description = description;
  if (controls.servings.value) recipe.servings = Number(controls.servings.value);
  return recipe;
}

function editor(recipe) {
  const title = el("input", { "data-testid": "recipe-title", required: true, maxlength: 200, value: recipe?.title || "" });
  const description = el("textarea", { "data-testid": "recipe-description", rows: 3, maxlength: 5000 });
  description.value = recipe?.description || "";
  const servings = el("input", {
    "data-testid": "recipe-servings",
    type: "number",
    min: 1,
    max: 100,
    value: recipe?.servings ?? "",
  });
  const steps = stepEditor(recipe?.steps || []);
  const save = el("button", { type: "submit", "data-testid": "recipe-save" }, "Save recipe");
  const status = el("span", { class: "muted", role: "status", "data-testid": "recipe-status" });
  const error = errorBox("recipe-error");

  const form = el(
    "form",
    { class: "card recipe-form", "aria-labelledby": "recipe-heading", novalidate: true },
    field("Title", title),
    field("Description (optional)", description),
    field("Servings (optional)", servings),
    el("h2", {}, "Steps"),
    steps.node,
    error,
    el("div", { class: "row form-actions" }, save, status),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    report(error, null);
    status.textContent = "";
    try {
      const body = readRecipe({ title, description, servings }, steps);
      const saved = await busy(save, () =>
        recipe ? call("PUT", `/recipes/${recipe.id}`, body) : call("POST", "/recipes", body),
      );
      if (recipe) status.textContent = "Saved.";
      else location.hash = `#/recipes/${saved.id}`;
    } catch (err) {
      report(error, err);
    }
  });
  return form;
}

function deleteButton(recipe) {
  const button = el("button", { type: "button", class: "secondary danger", "data-testid": "recipe-delete" }, "Delete recipe");
  const error = errorBox("recipe-delete-error");
  button.addEventListener("click", async () => {
    report(error, null);
    try {
      await busy(button, () => call("DELETE", `/recipes/${recipe.id}`));
      location.hash = "#/";
    } catch (err) {
      report(error, err);
    }
  });
  return el("div", {}, button, error);
}

function newSessionForm(recipe) {
  const title = el("input", { "data-testid": "session-title", required: true, maxlength: 200, value: recipe.title });
  const guests = el("input", { type: "checkbox", "data-testid": "session-allow-guests", checked: true });
  const create = el("button", { type: "submit", "data-testid": "session-create" }, "Create session");
  const error = errorBox("session-error");
  const form = el(
    "form",
    { class: "session-form" },
    field("Session title", title),
    el("label", { class: "checkbox" }, guests, " Viewers without an account may watch and chat"),
    error,
    create,
  );
  form.hidden = true;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    report(error, null);
    try {
      const body = { recipe_id: recipe.id, title: title.value.trim(), allow_guests: guests.checked };
      const session = await busy(create, () => call("POST", "/sessions", body));
      rememberSession(session.id);
      location.hash = `#/sessions/${session.id}`;
    } catch (err) {
      report(error, err);
    }
  });

  const open = el("button", { type: "button", "data-testid": "new-session", "aria-expanded": "false" }, "New session");
  open.addEventListener("click", () => {
    form.hidden = !form.hidden;
    open.setAttribute("aria-expanded", String(!form.hidden));
    if (!form.hidden) title.focus();
  });
  return el(
    "section",
    { class: "card", "aria-labelledby": "cook-heading" },
    el("h2", { id: "cook-heading" }, "Cook it live"),
    open,
    form,
  );
}

/** `id` is null for a new recipe. */
export async function recipeView(container, id) {
  const heading = el("h1", { id: "recipe-heading" }, id ? "Edit recipe" : "New recipe");
  container.append(el("p", {}, el("a", { href: "#/" }, "← My recipes")), heading);
  if (!id) {
    container.append(editor(null));
    return;
  }
  const error = errorBox("recipe-load-error");
  container.append(error);
  try {
    const recipe = await call("GET", `/recipes/${id}`);
    container.append(newSessionForm(recipe), editor(recipe), deleteButton(recipe));
  } catch (err) {
    report(error, err);
  }
}
