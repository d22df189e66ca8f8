// "Pair a watch": claims the code a watch shows, so that watch follows this
// session. The claim is made with the signed-in user's token (a watch
// belongs to an account; the server refuses guest tokens with 403), so
// guests and visitors are told to sign in, next to the disabled button.

import { api, auth, el } from "/assets/js/api.js";
import { signInHref } from "/assets/js/return-to.js";
import { $, sessionId, view } from "/assets/js/viewer/state.js";

/** Enables pairing for a signed-in user; says why not to anyone else. */
export function renderPairing() {
  const allowed = view.identity?.kind === "user" && !view.ended;
  $("pair-code").disabled = !allowed;
  $("pair-submit").disabled = !allowed;
  const hint = $("pair-hint");
  hint.hidden = allowed;
  if (allowed) return;
  if (view.ended) {
    hint.replaceChildren("This session has ended: there is nothing for a watch to follow.");
  } else {
    hint.replaceChildren(
      el("a", { href: signInHref(), "data-testid": "pair-sign-in" }, "Sign in to pair a watch"),
      ": a watch belongs to an account, so guests cannot pair one.",
    );
  }
}

export async function pairWatch(event) {
  event.preventDefault();
  const code = $("pair-code").value.trim();
  if (!code) return;
  const result = $("pair-result");
  result.className = "";
  result.textContent = "Pairing…";
  try {
    await api("POST", "/watch/pairings/claim", {
      body: { code, session_id: sessionId },
      token: await auth.token(),
    });
    result.className = "ok";
    result.textContent = "Paired: the watch now follows this session.";
    $("pair-code").value = "";
  } catch (e) {
    result.className = "error";
    result.textContent = e.detail || e.message;
  }
}
