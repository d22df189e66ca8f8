// The live video: playing the host's stream over WHEP, showing whether the
// host is live, and starting again (with backoff) when playback fails or
// the relay asks for it.

import { api, whep } from "/assets/js/api.js";
import { $, sessionId, view } from "/assets/js/viewer/state.js";

const VIDEO_RETRY_MAX_MS = 15000;

// Tests read the current peer connection from here (getStats()).
window.simmerViewer = { pc: null };

// `generation` changes on every stop, so a negotiation or retry that was
// started before it can tell that it has been superseded.
const player = { current: null, generation: 0, retryTimer: null, retryMs: 1000 };

export function setVideoState(state) {
  $("video-state").textContent = state;
  $("player-overlay").hidden = state === "live";
  $("player-message").textContent =
    state === "ended" ? "This session has ended" : "The host is not live yet";
  updateUnmute();
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
    const stats = await api("GET", `/sessions/${sessionId}/media`, {
      token: await view.identity.token(),
    });
    if (!view.ended) setVideoState(stats.publisher === "publishing" ? "live" : "waiting");
  } catch {
    // Not fatal: media frames keep the state current.
  }
}

/** `serverGone`: the server already dropped the resource (session ended). */
export function stopVideo({ serverGone = false } = {}) {
  clearTimeout(player.retryTimer);
  player.generation++;
  if (serverGone) player.current?.pc.close();
  else player.current?.stop();
  player.current = null;
  window.simmerViewer.pc = null;
  $("video").srcObject = null;
}

export async function startVideo() {
  stopVideo();
  if (view.ended) return;
  const generation = player.generation;
  try {
    const playing = await whep(sessionId, await view.identity.token());
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
    if (generation === player.generation) retryVideo(e);
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
  $("unmute").hidden = !video.muted || view.ended;
}

export function unmute() {
  const video = $("video");
  video.muted = false;
  video.play().catch(() => {});
  updateUnmute();
}
