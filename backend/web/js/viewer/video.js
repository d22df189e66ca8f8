// The live video: playing the host's stream over WHEP, showing whether the
// host is live and sending video, and starting again (with backoff) when
// playback fails or the relay asks for it. A visitor who has not joined
// plays on a watch pass (identity.js) while the session lets guests in.

import { api, whep } from "/assets/js/api.js";
import { forgetWatchPass, watchPassToken } from "/assets/js/viewer/identity.js";
import { $, sessionId, view } from "/assets/js/viewer/state.js";

const VIDEO_RETRY_MAX_MS = 15000;

// Tests read the current peer connection from here (getStats()).
window.simmerViewer = { pc: null };

// `generation` changes on every stop, so a negotiation or retry that was
// started before it can tell that it has been superseded. `wanted`: a
// start is under way (negotiating, or a retry scheduled) or playing.
const player = { current: null, generation: 0, retryTimer: null, retryMs: 1000, wanted: false };

// The video states (shown after "Video:"), and what the player says in each.
// `waiting` depends on the session: not live yet, or live without video.
let shown = "loading";

function playerMessage(state) {
  switch (state) {
    case "loading":
      return "Loading…";
    case "ended":
      return "This session has ended";
    case "live":
      return "The host is live"; // the overlay is hidden: the video says it
    case "connecting":
      return "The host is live: starting the video…";
    case "sign in to watch":
      return "The host is live: sign in to watch (this session does not let guests in)";
    default:
      return view.session?.state === "live"
        ? "The host is live, but their video is off right now"
        : "The host is not live yet";
  }
}

/** Shows a video state; without one, shows the current one again. */
export function setVideoState(state = shown) {
  shown = state;
  $("video-state").textContent = state;
  $("player-overlay").hidden = state === "live";
  $("player-message").textContent = playerMessage(state);
  updateUnmute();
}

/** The token to play with: the viewer's own, or else a watch pass. */
async function videoToken() {
  return view.identity ? view.identity.token() : watchPassToken();
}

/** A `media` frame: the host's publisher state. */
export function onMedia(state) {
  if (view.ended) return;
  if (state === "publishing") setVideoState("live");
  else setVideoState("waiting");
  // The relay restarted: our WHEP session is gone with it.
  if (state === "reconnect") startVideo();
}

export async function refreshMediaState() {
  try {
    const stats = await api("GET", `/sessions/${sessionId}/media`, { token: await videoToken() });
    if (!view.ended) setVideoState(stats.publisher === "publishing" ? "live" : "waiting");
  } catch {
    // Not fatal: media frames (or the next poll) keep the state current.
  }
}

/**
 * For a visitor who has not joined, on every session poll (no /ws frames
 * tell them anything): plays a live session that lets guests in, and keeps
 * the state of its video current; says to sign in when guests may not watch.
 */
export function watchWithoutJoining() {
  if (view.ended || view.identity || view.session?.state !== "live") return;
  if (!view.session.allow_guests) {
    stopVideo();
    setVideoState("sign in to watch");
  } else if (player.wanted) {
    refreshMediaState();
  } else {
    startVideo();
  }
}

/** `serverGone`: the server already dropped the resource (session ended). */
export function stopVideo({ serverGone = false } = {}) {
  clearTimeout(player.retryTimer);
  player.generation++;
  player.wanted = false;
  if (serverGone) player.current?.pc.close();
  else player.current?.stop();
  player.current = null;
  window.simmerViewer.pc = null;
  $("video").srcObject = null;
}

export async function startVideo() {
  stopVideo();
  if (view.ended) return;
  player.wanted = true;
  const generation = player.generation;
  const watchPass = !view.identity;
  try {
    const playing = await whep(sessionId, await videoToken());
    if (generation !== player.generation) {
      playing.stop(); // superseded (ended, or a newer start) while negotiating
      return;
    }
    player.current = playing;
    player.retryMs = 1000;
    window.simmerViewer.pc = playing.pc;
    watchPeer(playing, generation);
    $("video").srcObject = playing.stream;
    $("video").play().catch(() => {}); // autoplay of muted video may still be refused
    refreshMediaState();
  } catch (e) {
    if (generation !== player.generation) return;
    if (watchPass && e.status === 403) {
      // The host turned guests away: the pass is no good any more.
      forgetWatchPass();
      stopVideo();
      setVideoState("sign in to watch");
    } else {
      retryVideo(e);
    }
  }
}

function watchPeer(playing, generation) {
  playing.pc.addEventListener("connectionstatechange", () => {
    if (generation !== player.generation) return;
    if (playing.pc.connectionState === "failed") retryVideo();
  });
  // Media reaching us is proof enough that the host is live, even if its
  // `media` frame raced with our state query.
  for (const track of playing.stream.getVideoTracks()) {
    track.addEventListener("unmute", () => {
      if (generation === player.generation && !view.ended) setVideoState("live");
    });
  }
}

function retryVideo(error) {
  if (view.ended) return;
  if (error?.status === 503) $("player-message").textContent = "The room is full; retrying…";
  clearTimeout(player.retryTimer);
  player.retryTimer = setTimeout(startVideo, player.retryMs);
  player.retryMs = Math.min(player.retryMs * 2, VIDEO_RETRY_MAX_MS);
}

// The video starts muted (browsers refuse autoplay with sound), so the page
// offers a button until the viewer turns the sound on.
export function updateUnmute() {
  const video = $("video");
  $("unmute").hidden = !video.muted || view.ended || shown !== "live";
}

export function unmute() {
  const video = $("video");
  video.muted = false;
  video.play().catch(() => {});
  updateUnmute();
}
