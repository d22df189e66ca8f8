// Who is watching: the signed-in user, or a guest with a token for this
// session only. Without either, the page offers to sign in or join as a
// guest, and shows the session without chat or video.

import { api, auth } from "/assets/js/api.js";
import { setPairingAllowed } from "/assets/js/viewer/pairing.js";
import { $, sessionId, view } from "/assets/js/viewer/state.js";

const GUEST_MIN_LIFETIME_MS = 60000; // a token this close to expiry is not reused

function guestKey() {
  return `simmer.guest.${sessionId}`;
}

/** A guest token kept for this session until it expires (there is no refresh). */
function storedGuest() {
  try {
    const guest = JSON.parse(localStorage.getItem(guestKey()));
    if (guest && guest.expires_at_ms > Date.now() + GUEST_MIN_LIFETIME_MS) return guest;
  } catch {
    // unreadable: ask again
  }
  localStorage.removeItem(guestKey());
  return null;
}

/** Drops the stored guest token (the server refused it). */
export function forgetGuest() {
  localStorage.removeItem(guestKey());
}

/** The stored guest pass's token while it lasts (re-read at each connect). */
async function guestToken() {
  return storedGuest()?.access_token ?? null;
}

export async function resolveIdentity() {
  const signedIn = auth.current();
  if (signedIn && (await auth.token())) {
    const name = signedIn.user?.display_name || signedIn.user?.username || "you";
    return { kind: "user", name, token: () => auth.token() };
  }
  const guest = storedGuest();
  if (guest) return { kind: "guest", name: guest.name, token: guestToken };
  return null;
}

export function renderIdentity() {
  const identity = view.identity;
  $("who").textContent = identity
    ? identity.kind === "user" ? `Signed in as ${identity.name}` : `Guest: ${identity.name}`
    : "";
  $("sign-in").hidden = Boolean(identity);
  $("join-panel").hidden = Boolean(identity) || view.ended;
  $("guest-form").hidden = !view.session?.allow_guests;
  setPairingAllowed(identity?.kind === "user");
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
    const grant = await api("POST", `/sessions/${sessionId}/guest-tokens`, {
      body: { display_name: name },
    });
    const guest = {
      name,
      access_token: grant.access_token,
      expires_at_ms: Date.now() + grant.expires_in * 1000,
    };
    localStorage.setItem(guestKey(), JSON.stringify(guest));
    onJoined({ kind: "guest", name, token: guestToken });
  } catch (e) {
    $("guest-error").textContent =
      e.status === 403 ? "This session does not allow guests." : e.detail || e.message;
  }
}
