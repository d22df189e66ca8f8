// The session itself: its title, state and viewer count as the server
// reports them, fetched over REST until /ws carries them, and its end.

import { api, ApiError } from "/assets/js/api.js";
import { setChatEnabled, setChatStatus } from "/assets/js/viewer/chat.js";
import { renderPairing } from "/assets/js/viewer/pairing.js";
import { applyTimer, renderRecipe, stopCountdown } from "/assets/js/viewer/recipe.js";
import { $, sessionId, view } from "/assets/js/viewer/state.js";
import { setVideoState, stopVideo } from "/assets/js/viewer/video.js";

function renderSession(session) {
  view.session = session;
  document.title = `${session.title} · Simmer`;
  $("title").textContent = session.title;
  $("host").textContent = `with ${session.host.display_name}`;
  renderRecipe(session.recipe);
  setViewerCount(session.viewer_count);
  setSessionState(session.state);
  applyTimer(session.timer);
}

export function setSessionState(state) {
  const before = $("session-state").dataset.state;
  // Frames (a join snapshot, `session`) tell the state too: keep one truth.
  if (view.session) view.session.state = state;
  $("session-state").textContent = state;
  $("session-state").dataset.state = state;
  if (state === "ended") endSession();
  else if (state !== "live") setVideoState("waiting");
  // Just live, nothing known yet about its video: say so, not "not live".
  else if (before !== "live") setVideoState("connecting");
  else setVideoState(); // as it was (what the video does is learned elsewhere)
}

export function setViewerCount(count) {
  if (typeof count === "number") $("viewer-count").textContent = String(count);
}

export async function refreshSession() {
  try {
    renderSession(await api("GET", `/sessions/${sessionId}`));
  } catch (e) {
    // 400: the path is not a session id at all.
    if (e instanceof ApiError && [400, 404].includes(e.status)) showFatal("There is no such session.");
  }
}

/** Nothing to show: says why, in place of the title, and stops everything. */
export function showFatal(message) {
  view.ended = true;
  $("title").textContent = message;
  stopVideo();
}

/**
 * Runs once, however the end is learned (REST state, join snapshot, frame):
 * nothing live is shown any more (video, viewers, a running countdown) and
 * nothing restarts (/ws, polling, video retries).
 */
export function endSession() {
  if (view.ended) return;
  view.ended = true;
  $("session-state").textContent = "ended";
  $("session-state").dataset.state = "ended";
  $("ended-banner").hidden = false;
  $("join-panel").hidden = true;
  $("watching").hidden = true;
  stopVideo({ serverGone: true });
  setVideoState("ended");
  stopCountdown();
  setChatEnabled(false);
  setChatStatus("This session has ended: the chat is closed.");
  renderPairing();
  view.rt?.close();
}
