// The live session list at /live: title, host, recipe and viewer count of
// every live session, newest first, a page at a time; refreshed every 10 s.

import { api, el } from "/assets/js/api.js";

const list = document.querySelector('[data-testid="live-list"]');
const status = document.querySelector('[data-testid="live-status"]');
const more = document.querySelector('[data-testid="live-more"]');
const PAGE = 24;
let cursor = null;

function card(session) {
  const viewers = session.viewer_count === 1 ? "1 viewer" : `${session.viewer_count} viewers`;
  return el(
    "li",
    {},
    el(
      "a",
      { class: "card", href: `/s/${session.id}`, "data-testid": "live-session" },
      el("h2", {}, session.title),
      el("p", { class: "muted" }, `${session.recipe.title} · with ${session.host.display_name}`),
      el("p", { class: "viewers", "data-testid": "live-viewers" }, viewers),
    ),
  );
}

/** Loads a page; `fresh` starts over (the refresh), else appends the next. */
async function load(fresh) {
  const query = new URLSearchParams({ state: "live", limit: String(PAGE) });
  if (!fresh && cursor) query.set("cursor", cursor);
  try {
    const page = await api("GET", `/sessions?${query}`);
    if (fresh) list.replaceChildren();
    list.append(...page.items.map(card));
    cursor = page.next_cursor;
    more.hidden = !cursor;
    const count = list.children.length;
    status.textContent = count === 0 ? "Nobody is cooking live right now." : "";
  } catch (e) {
    status.textContent = `Could not load the live sessions: ${e.message}`;
  }
}

more.addEventListener("click", () => load(false));
load(true);
// Only the first page is refreshed, so a reader paging down is not reset.
setInterval(() => {
  if (!cursor || list.children.length <= PAGE) load(true);
}, 10000);
