// Following the session over /ws: connecting with the viewer's identity,
// joining (and re-joining after a reconnect), and routing each frame to the
// part of the page it is about. Until the join succeeds (signed out, not
// live yet, connection lost) the session is polled over REST instead, and a
// visitor who has not joined watches a live session's video meanwhile.

import { Realtime } from "/assets/js/api.js";
import { loadHistory, setChatEnabled, setChatStatus, showMessage } from "/assets/js/viewer/chat.js";
import { clock } from "/assets/js/viewer/clock.js";
import { forgetGuest, renderIdentity } from "/assets/js/viewer/identity.js";
import { applyTimer } from "/assets/js/viewer/recipe.js";
import {
  endSession,
  refreshSession,
  setSessionState,
  setViewerCount,
  showFatal,
} from "/assets/js/viewer/session.js";
import { sessionId, view } from "/assets/js/viewer/state.js";
import { onMedia, refreshMediaState, startVideo, watchWithoutJoining } from "/assets/js/viewer/video.js";

const SESSION_POLL_MS = 5000; // while we cannot follow /ws (signed out, not live yet)

let joined = false;
let joining = false; // a join request is in flight: do not send another
let polling = false; // a poll is scheduled: do not schedule another

/** A new viewer (or none): shows who it is and, if any, connects as them. */
export function setIdentity(identity) {
  if (!identity) {
    view.rt?.close();
    view.rt = null;
  }
  view.identity = identity;
  renderIdentity();
  if (identity) connectRealtime();
}

export function connectRealtime() {
  const rt = new Realtime(view.identity.token);
  view.rt = rt;
  // One connection can follow several sessions; this page shows only one.
  const mine = (handler) => (frame) => {
    if (frame.session_id === sessionId) handler(frame);
  };
  rt.on("hello", (f) => clock.observe(f.server_time_ms))
    // A connection closed on purpose (ended, signed out) says nothing more.
    .on("connection", (f) => rt === view.rt && onConnection(f))
    .on("chat.message", mine(showMessage))
    .on("chat.deleted", mine((f) => showMessage({ seq: f.seq, deleted: true, text: "" })))
    .on("presence", mine((f) => setViewerCount(f.viewer_count)))
    .on("timer", mine(applyTimer))
    .on("media", mine((f) => onMedia(f.state)))
    .on("session.ended", mine(() => {
      endSession();
      refreshSession(); // the timer as the end left it
    }))
    .on("rejoined", mine((f) => onSnapshot(f.body, { resumed: true })))
    .on("rejoin_failed", mine(() => refreshSession()));
  tryJoin();
}

function onConnection(frame) {
  if (view.ended) return;
  if (frame.state === "unauthorized") return signedOut();
  setChatStatus(frame.state === "open" ? "" : "Reconnecting…");
  if (frame.state === "open" && !joined) tryJoin();
}

async function tryJoin() {
  if (joined || joining || view.ended || !view.rt) return;
  joining = true;
  try {
    const snapshot = await view.rt.join(sessionId);
    joined = true;
    onSnapshot(snapshot, { resumed: false });
    loadHistory();
    startVideo();
  } catch (e) {
    onJoinRefused(e);
  } finally {
    joining = false;
  }
}

/** The pass expired (or the sign-in was refused): offer to join again. */
function signedOut() {
  joined = false;
  forgetGuest();
  setIdentity(null);
  setChatEnabled(false);
  setChatStatus("Your pass has expired: sign in or join again.");
  pollSession();
}

function onJoinRefused(error) {
  if (error.code === "forbidden" && view.identity?.kind === "guest") {
    // A guest token of another session (or a stale one): ask for a new one.
    forgetGuest();
    view.rt.close();
    setIdentity(null);
  } else if (error.code === "not_found") {
    showFatal("There is no such session.");
  }
  // `conflict` (not live yet) and lost connections: the session poll and
  // the reconnect both try again.
  setChatEnabled(false);
  pollSession();
}

/** The join reply: the session as it is now (also after a resume). */
function onSnapshot(snapshot, { resumed }) {
  setViewerCount(snapshot.viewer_count);
  applyTimer(snapshot.timer);
  if (snapshot.state) setSessionState(snapshot.state);
  setChatEnabled(!view.ended);
  // Media frames sent while we were away are lost: ask how things stand.
  if (resumed) refreshMediaState();
}

/**
 * Until /ws carries the session, poll it so state and timer stay current;
 * a visitor without an identity watches meanwhile. The first round is now.
 */
export function pollSession({ now = false } = {}) {
  if (polling) return;
  polling = true;
  setTimeout(async () => {
    polling = false;
    if (view.ended || joined) return;
    if (!now) await refreshSession();
    if (view.session?.state === "live") {
      if (view.rt) tryJoin();
      else watchWithoutJoining();
    }
    pollSession();
  }, now ? 0 : SESSION_POLL_MS);
}
