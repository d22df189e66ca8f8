// "Pair a watch": claims the code a watch shows, so that watch follows this
// session. The claim is made with the signed-in user's token (the watch
// belongs to an account), so guests cannot pair.

import { api, auth } from "/assets/js/api.js";
import { $, sessionId } from "/assets/js/viewer/state.js";

export function setPairingAllowed(allowed) {
  $("pair-code").disabled = !allowed;
  $("pair-submit").disabled = !allowed;
  if (!allowed) $("pair-result").textContent = "Sign in with an account to pair a watch.";
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
