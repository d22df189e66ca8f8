// The dashboard's start page (#/): my recipes and my sessions.

import { el } from "../api.js";
import { mySessions } from "./my-sessions.js";
import { busy, call, errorBox, report } from "./ui.js";

const PAGE = 20;

function recipeItem(recipe) {
  const steps = recipe.steps.length === 1 ? "1 step" : `${recipe.steps.length} steps`;
  return el(
    "li",
    { class: "item", "data-testid": "recipe-item", "data-id": recipe.id },
    el("a", { href: `#/recipes/${recipe.id}` }, recipe.title),
    el("span", { class: "muted" }, ` · ${steps}`),
  );
}

function recipesSection() {
  const list = el("ul", { class: "plain list", "data-testid": "recipe-list", "aria-live": "polite" });
  const more = el("button", { type: "button", class: "secondary", "data-testid": "recipe-more" }, "More recipes");
  const error = errorBox("recipe-list-error");
  let cursor = null;

  async function load() {
    report(error, null);
    const query = new URLSearchParams({ mine: "true", limit: String(PAGE) });
    if (cursor) query.set("cursor", cursor);
    try {
      const page = await busy(more, () => call("GET", `/recipes?${query}`));
      list.append(...page.items.map(recipeItem));
      cursor = page.next_cursor;
      if (!list.children.length) list.append(el("li", { class: "muted" }, "No recipes yet."));
    } catch (err) {
      report(error, err);
    }
    more.hidden = !cursor;
  }
  more.addEventListener("click", load);
  more.hidden = true;
  load();

  return el(
    "section",
    { class: "card", "aria-labelledby": "recipes-heading" },
    el(
      "div",
      { class: "row spread" },
      el("h2", { id: "recipes-heading" }, "My recipes"),
      el("a", { class: "button", href: "#/recipes/new", "data-testid": "new-recipe" }, "New recipe"),
    ),
    list,
    error,
    more,
  );
}

function sessionItem(session) {
  return el(
    "li",
    { class: "item", "data-testid": "session-item", "data-id": session.id },
    el("a", { href: `#/sessions/${session.id}` }, session.title),
    " ",
    el("span", { class: `badge state-${session.state}` }, session.state),
    el("span", { class: "muted" }, ` · ${session.recipe.title}`),
  );
}

function sessionsSection() {
  const list = el("ul", { class: "plain list", "data-testid": "session-list" });
  const error = errorBox("session-list-error");
  mySessions().then(
    (sessions) => {
      if (!sessions.length) list.append(el("li", { class: "muted" }, "Open a recipe to start a session."));
      list.append(...sessions.map(sessionItem));
    },
    (err) => report(error, err),
  );
  return el(
    "section",
    { class: "card", "aria-labelledby": "sessions-heading" },
    el("h2", { id: "sessions-heading" }, "My sessions"),
    list,
    error,
  );
}

export function homeView(container) {
  container.append(el("h1", {}, "Host dashboard"), el("div", { class: "columns" }, recipesSection(), sessionsSection()));
}
