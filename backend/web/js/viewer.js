// The viewer page (/s/{session_id}): live video over WHEP, the chat over /ws,
// the recipe with its countdown, and pairing a watch. The server is the
// source of truth for everything shown; the page only renders its frames.
//
// Each part lives in its own module under viewer/; this entry wires the
// page's controls to them and decides, once the session is known, how to
// follow it: over /ws for a signed-in user or a guest, by polling (and
// watching the video, if guests may) for a visitor who has not joined.

import { loadHistory, sendChat } from "/assets/js/viewer/chat.js";
import { joinAsGuest, renderIdentity, resolveIdentity } from "/assets/js/viewer/identity.js";
import { pairWatch } from "/assets/js/viewer/pairing.js";
import { connectRealtime, pollSession, setIdentity } from "/assets/js/viewer/realtime.js";
import { startCountdown } from "/assets/js/viewer/recipe.js";
import { refreshSession } from "/assets/js/viewer/session.js";
import { $, view } from "/assets/js/viewer/state.js";
import { unmute, updateUnmute } from "/assets/js/viewer/video.js";

async function main() {
  $("guest-form").addEventListener("submit", (event) => joinAsGuest(event, setIdentity));
  $("chat-form").addEventListener("submit", sendChat);
  $("pair-form").addEventListener("submit", pairWatch);
  $("unmute").addEventListener("click", unmute);
  $("video").addEventListener("volumechange", updateUnmute);
  startCountdown();

  await refreshSession();
  if (!view.session) return;
  view.identity = await resolveIdentity();
  renderIdentity();
  if (view.ended) {
    if (view.identity) loadHistory(); // what was said stays readable
  } else if (view.identity) {
    connectRealtime();
  } else {
    pollSession({ now: true }); // a live session's video plays without joining
  }
}

main();
