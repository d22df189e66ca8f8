// Publishing the host's stream over WHIP, and keeping it published: when the
// peer connection fails or stays disconnected, or the relay asks for it
// (`media {state: "reconnect"}`), the old resource is deleted and a new
// offer is sent, with exponential backoff between failed attempts.

import { auth, whip } from "../api.js";

const FIRST_RETRY_MS = 1000;
const MAX_RETRY_MS = 15000;
// Chromium reports "disconnected" on short network hiccups and often recovers
// by itself; the relay only gives up after 10 s of silence, so wait a little
// before replacing a connection that might come back.
const DISCONNECTED_GRACE_MS = 2000;
// Refusals that another attempt cannot fix: not the host, no such session.
const FATAL_STATUS = new Set([403, 404]);

// Tests read the current peer connection here.
window.simmerHost = { pc: null };

/**
 * `getStream()` gives the MediaStream to publish at each attempt;
 * `onState(state)` hears "connecting" | "publishing" | "reconnecting" |
 * "stopped"; `onError(err)` hears why an attempt failed.
 */
export class Publisher {
  constructor(sessionId, { getStream, onState, onError }) {
    this.sessionId = sessionId;
    this.getStream = getStream;
    this.onState = onState;
    this.onError = onError;
    this.active = false;
    this.resource = null; // what whip() returned: {pc, resource, stop()}
    this.failures = 0;
    this.attempts = 0;
    this.timer = null;
  }

  /** Starts publishing (and keeps at it until `stop()`). */
  start() {
    if (this.active) return;
    this.active = true;
    this.failures = 0;
    this.publish("connecting");
  }

  /** Replaces the publication now: the relay restarted. */
  republish() {
    if (!this.active) return;
    this.failures = 0;
    this.publish("reconnecting");
  }

  /** `serverGone`: the server already dropped the publication (session ended). */
  async stop({ serverGone = false } = {}) {
    this.active = false;
    this.attempts += 1; // an offer in flight is dropped when it returns
    clearTimeout(this.timer);
    const old = this.resource;
    this.resource = null;
    this.onState("stopped");
    if (serverGone) old?.pc.close();
    else await old?.stop();
  }

  /**
   * The page is going away: ask the relay to drop the publication now, or a
   * reloaded page's next offer is refused (409) until the relay notices the
   * silence. `keepalive` lets the request outlive the page.
   */
  abandon() {
    const url = this.resource?.resource;
    const token = auth.current()?.access_token;
    if (!url || !token) return;
    fetch(url, { method: "DELETE", keepalive: true, headers: { Authorization: `Bearer ${token}` } }).catch(() => {});
  }

  /** A device switch: send the new track on the running connection. */
  async replaceTrack(kind, track) {
    const transceiver = this.resource?.pc.getTransceivers().find((t) => t.receiver.track.kind === kind);
    await transceiver?.sender.replaceTrack(track);
  }

  async publish(state) {
    clearTimeout(this.timer);
    // Only the newest attempt may keep its connection (a republish can start
    // while an earlier offer is still in flight).
    const attempt = ++this.attempts;
    this.onState(state);
    const old = this.resource;
    this.resource = null;
    await old?.stop(); // frees the relay's publisher slot before the new offer
    try {
      const stream = this.getStream();
      if (!stream) throw new Error("no camera or microphone to publish");
      const published = await whip(this.sessionId, await auth.token(), stream);
      if (!this.active || attempt !== this.attempts) {
        await published.stop(); // stopped or replaced while the offer was in flight
        return;
      }
      this.resource = published;
      window.simmerHost.pc = published.pc;
      this.watch(published.pc);
    } catch (err) {
      if (attempt !== this.attempts) return;
      this.onError(err);
      if (FATAL_STATUS.has(err.status)) this.stop();
      else this.retryLater();
    }
  }

  watch(pc) {
    let grace = null;
    const changed = () => {
      if (pc !== this.resource?.pc) return; // an older connection being closed
      clearTimeout(grace);
      switch (pc.connectionState) {
        case "connected":
          this.failures = 0;
          this.onState("publishing");
          break;
        case "disconnected":
          grace = setTimeout(() => pc.connectionState === "disconnected" && this.retryLater(), DISCONNECTED_GRACE_MS);
          break;
        case "failed":
        case "closed": // not by us: stop() and publish() forget a connection before closing it
          this.retryLater();
          break;
      }
    };
    pc.addEventListener("connectionstatechange", changed);
    changed(); // it may have connected before the listener was added
  }

  retryLater() {
    if (!this.active) return;
    const delay = Math.min(FIRST_RETRY_MS * 2 ** this.failures, MAX_RETRY_MS);
    this.failures += 1;
    this.onState("reconnecting");
    clearTimeout(this.timer);
    // Jitter, so hosts cut off by the same outage do not all return at once.
    this.timer = setTimeout(() => this.publish("reconnecting"), delay * (0.75 + Math.random() / 2));
  }
}
