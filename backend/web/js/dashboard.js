// The host dashboard: a small single-page app with hash routes.
//   #/                 my recipes and sessions
//   #/recipes/new      a new recipe
//   #/recipes/{id}     edit a recipe, start a session with it
//   #/sessions/{id}    the live room
// Signed out, every route shows the sign-in page. With `?next=` (a page
// that sent the user here to sign in), signing in returns there instead.

import { auth, el } from "./api.js";
import { homeView } from "./dashboard/home.js";
import { recipeView } from "./dashboard/recipe.js";
import { roomView } from "./dashboard/room.js";
import { signInView } from "./dashboard/signin.js";
import { SIGNED_OUT } from "./dashboard/ui.js";
import { returnUrl } from "./return-to.js";

const main = document.querySelector("main");
const nav = document.querySelector("header nav");
let cleanup = null; // the current view's teardown (the room stops its media)
let renders = 0; // which render is current, for views that load asynchronously

function header() {
  const pair = auth.current();
  if (!pair) {
    nav.replaceChildren();
    return;
  }
  const signOut = el("button", { type: "button", class: "secondary", "data-testid": "signout" }, "Sign out");
  signOut.addEventListener("click", async () => {
    await auth.logout();
    render();
  });
  nav.replaceChildren(
    el("a", { href: "#/" }, "My recipes"),
    el("span", { class: "muted", "data-testid": "current-user" }, pair.user.display_name || pair.user.username),
    signOut,
  );
}

/** The view for a hash, as [view, ...arguments]. */
function route(hash) {
  const path = hash.replace(/^#/, "") || "/";
  let match;
  if (path === "/recipes/new") return [recipeView, null];
  if ((match = /^\/recipes\/([\w-]+)$/.exec(path))) return [recipeView, match[1]];
  if ((match = /^\/sessions\/([\w-]+)$/.exec(path))) return [roomView, match[1]];
  return [homeView];
}

async function render() {
  const mine = ++renders;
  cleanup?.();
  cleanup = null;
  const next = returnUrl();
  if (auth.current() && next) {
    location.replace(next); // signed in (or already was): back to that page
    return;
  }
  header();
  main.replaceChildren();
  if (!auth.current()) {
    signInView(main, render, { returning: Boolean(next) });
    return;
  }
  const [view, ...args] = route(location.hash);
  const teardown = await view(main, ...args, () => mine === renders);
  if (mine === renders) cleanup = teardown || null;
  else teardown?.(); // navigated away while the view was loading
  // Move focus to the new page's heading, so screen readers announce it.
  const heading = main.querySelector("h1");
  if (heading && mine === renders) {
    heading.tabIndex = -1;
    heading.focus({ preventScroll: true });
  }
}

window.addEventListener("hashchange", render);
window.addEventListener(SIGNED_OUT, render);
render();
