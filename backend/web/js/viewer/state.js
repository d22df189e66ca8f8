// What the viewer page's modules share: the session this page shows, a DOM
// lookup, and the few facts that every part of the page reacts to. State
// that only one part needs (the timer, the join, the player) stays in that
// part's module.

export const sessionId = decodeURIComponent(location.pathname.split("/").filter(Boolean)[1] || "");

export const $ = (id) => document.getElementById(id);

export const view = {
  session: null, // the session as last fetched over REST
  identity: null, // {kind: "user" | "guest", name, token: () => Promise<string|null>}
  rt: null, // the /ws connection, once there is an identity
  ended: false, // final: once set, nothing restarts video, chat or polling
};
