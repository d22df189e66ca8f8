// The session itself: its title, state and viewer count as the server
// reports them, fetched over REST until /ws carries them, and its end.

import { api, ApiError } from "/assets/js/api.js";
import { setChatEnabled } from "/assets/js/viewer/chat.js";
import { applyTimer, renderRecipe } from "/assets/js/viewer/recipe.js";
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
  $("session-state").textContent = state;
  $("session-state").dataset.state = state;
  if (state === "ended") endSession();
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

/** Runs once, however the end is learned (REST state, join snapshot, frame). */
export function endSession() {
  if (view.ended) return;
  view.ended = true;
  $("session-state").textContent = "ended";
  $("session-state").dataset.state = "ended";
  $("ended-banner").hidden = false;
  $("join-panel").hidden = true;
  stopVideo({ serverGone: true });
  setVideoState("ended");
  setChatEnabled(false);
  view.rt?.close();
}
