// Who is watching: the signed-in user, or a guest with a token for this
// session only. Without either, the page offers to sign in or join as a
// guest; meanwhile a visitor may still watch the video of a session that
// lets guests in, on a watch pass (below).

import { api, auth } from "/assets/js/api.js";
import { signInHref } from "/assets/js/return-to.js";
import { renderPairing } from "/assets/js/viewer/pairing.js";
import { $, sessionId, view } from "/assets/js/viewer/state.js";

const GUEST_MIN_LIFETIME_MS = 60000; // a token this close to expiry is not reused
// The name a watch pass carries. Nobody sees it: the pass never joins /ws.
const WATCH_PASS_NAME = "Viewer";

function guestKey() {
  return `simmer.guest.${sessionId}`;
}

function watchPassKey() {
  return `simmer.watch-pass.${sessionId}`;
}

/** A guest token kept under `key` until it expires (there is no refresh). */
function storedPass(key) {
  try {
    const pass = JSON.parse(localStorage.getItem(key));
    if (pass && pass.expires_at_ms > Date.now() + GUEST_MIN_LIFETIME_MS) return pass;
  } catch {
    // unreadable: ask again
  }
  localStorage.removeItem(key);
  return null;
}

/** Asks for a guest token under `name` and keeps it under `key`. */
async function requestPass(key, name) {
  const grant = await api("POST", `/sessions/${sessionId}/guest-tokens`, {
    body: { display_name: name },
  });
  const pass = {
    name,
    access_token: grant.access_token,
    expires_at_ms: Date.now() + grant.expires_in * 1000,
  };
  localStorage.setItem(key, JSON.stringify(pass));
  return pass;
}

/** Drops the stored guest token (the server refused it). */
export function forgetGuest() {
  localStorage.removeItem(guestKey());
}

/** The stored guest pass's token while it lasts (re-read at each connect). */
async function guestToken() {
  return storedPass(guestKey())?.access_token ?? null;
}

let passRequest = null; // a watch pass being asked for: callers share it

/**
 * A token for watching without joining: a guest token asked for without a
 * word to the visitor (only when the session lets guests in), used for the
 * video and its state only. It never joins /ws, so the visitor is not in
 * the chat (nor in its viewer count) until they sign in or join. Kept like
 * a guest's, so a reload does not ask for another.
 */
export async function watchPassToken() {
  const stored = storedPass(watchPassKey());
  if (stored) return stored.access_token;
  passRequest ??= requestPass(watchPassKey(), WATCH_PASS_NAME).finally(() => (passRequest = null));
  return (await passRequest).access_token;
}

/** Drops the watch pass (the server refused it). */
export function forgetWatchPass() {
  localStorage.removeItem(watchPassKey());
}

export async function resolveIdentity() {
  const signedIn = auth.current();
  if (signedIn && (await auth.token())) {
    const name = signedIn.user?.display_name || signedIn.user?.username || "you";
    return { kind: "user", name, token: () => auth.token() };
  }
  const guest = storedPass(guestKey());
  if (guest) return { kind: "guest", name: guest.name, token: guestToken };
  return null;
}

export function renderIdentity() {
  const identity = view.identity;
  const guests = Boolean(view.session?.allow_guests);
  $("who").textContent = identity
    ? identity.kind === "user" ? `Signed in as ${identity.name}` : `Guest: ${identity.name}`
    : "";
  // Guests may still sign in (to pair a watch); the sign-in comes back here.
  $("sign-in").hidden = identity?.kind === "user";
  $("sign-in").href = signInHref();
  $("join-sign-in").href = signInHref();
  $("join-panel").hidden = Boolean(identity) || view.ended;
  $("join-why").textContent = guests
    ? "Sign in to chat, or join as a guest."
    : "This session is for signed-in viewers: sign in to watch and chat.";
  $("guest-form").hidden = !guests;
  renderPairing();
}

/**
 * The guest form's submit: asks for a guest token and hands the new identity
 * to `onJoined` (the entry passes the function that connects with it).
 */
export async function joinAsGuest(event, onJoined) {
  event.preventDefault();
  const name = $("guest-name").value.trim();
  if (!name) return;
  $("guest-error").textContent = "";
  try {
    await requestPass(guestKey(), name);
    onJoined({ kind: "guest", name, token: guestToken });
  } catch (e) {
    $("guest-error").textContent =
      e.status === 403 ? "This session does not allow guests." : e.detail || e.message;
  }
}
