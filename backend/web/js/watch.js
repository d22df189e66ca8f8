// The watch simulator (/watch): behaves as a smartwatch app would. It pairs
// with a 6-character code, then follows its session's timer feed
// (/watch/ws, or /watch/events when WebSockets fail) and renders the current
// step and the countdown from the absolute deadline. See docs/watch.md.

import { api, formatCountdown } from "./api.js";

const STORAGE_KEY = "simmer.watch";
const DEVICE_NAME = "Browser watch";
const RENDER_EVERY_MS = 200;
const ALERT_MS = 2000;
const PING_ROUND_EVERY_MS = 3 * 60000; // refresh the clock offset now and then
const PINGS_PER_ROUND = 5;
const PING_SPACING_MS = 300;
const BACKOFF_MIN_MS = 1000;
const BACKOFF_MAX_MS = 30000;

const $ = (id) => document.getElementById(id);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const face = { timer: null, alertTimer: null };

// ---- Stored device token -------------------------------------------------

function storedDevice() {
  try {
    return JSON.parse(localStorage.getItem(STORAGE_KEY));
  } catch {
    return null;
  }
}

function forgetDevice() {
  localStorage.removeItem(STORAGE_KEY);
}

// ---- What the face shows ---------------------------------------------------

/** "pairing" | "following" | "ended" | "offline" */
function setState(state) {
  $("state").textContent = state;
  $("face").dataset.state = state;
  $("pairing-view").hidden = state !== "pairing";
  $("following-view").hidden = state === "pairing";
  $("unpair").hidden = state === "pairing";
  if (state !== "pairing") $("new-code").hidden = true;
  render();
}

function currentState() {
  return $("state").textContent;
}

const STATUS = {
  idle: "Waiting for the host",
  paused: "Paused",
  finished: "Done!",
  running: "",
};

function render() {
  const timer = face.timer;
  const state = currentState();
  if (state === "pairing") return;
  let status = timer ? STATUS[timer.state] ?? timer.state : "Connecting…";
  if (state === "offline") status = "Reconnecting…";
  if (state === "ended") status = "Session ended";
  setText("status-line", status);
  if (!timer) return;
  setText("step-no", `Step ${timer.step_index + 1}/${timer.step_count}`);
  // The feed cuts step text to keep frames small: the label is made for this.
  setText("step", timer.step?.label || timer.step?.text || `Step ${timer.step_index + 1}`);
  setText("countdown", countdownText(timer));
}

/** Derived from the deadline every time, never by counting down. */
function countdownText(timer) {
  if (timer.state === "running" && timer.deadline_ms != null) {
    return formatCountdown(timer.deadline_ms - clock.now());
  }
  if (timer.remaining_ms != null) return formatCountdown(timer.remaining_ms);
  return "–"; // a manual step: the host moves on
}

function setText(id, text) {
  if ($(id).textContent !== text) $(id).textContent = text;
}

function flashAlert() {
  $("face").classList.add("alert");
  navigator.vibrate?.(400);
  clearTimeout(face.alertTimer);
  face.alertTimer = setTimeout(() => $("face").classList.remove("alert"), ALERT_MS);
}

// ---- Clock offset (server clock minus ours) ------------------------------

// NTP style: a pong's rtt bounds the error of its sample, so the sample with
// the lowest rtt of the current round wins. Before the first pong (and over
// SSE, which has no ping), a frame's server_time_ms minus its arrival time is
// a rough offset, short by the one-way delay: the largest is the best.
const clock = {
  offset: 0,
  best: null, // {rtt, offset} of this round's pongs
  rough: null,
  observe(serverTimeMs) {
    if (this.best || typeof serverTimeMs !== "number") return;
    const sample = serverTimeMs - Date.now();
    if (this.rough === null || sample > this.rough) this.rough = sample;
    this.offset = this.rough;
  },
  pong({ client_time_ms, server_time_ms }) {
    const rtt = Date.now() - client_time_ms;
    if (rtt < 0) return;
    if (!this.best || rtt < this.best.rtt) {
      this.best = { rtt, offset: server_time_ms - (client_time_ms + rtt / 2) };
      this.offset = this.best.offset;
    }
  },
  newRound() {
    this.best = null; // keep the offset; this round's best pong replaces it
  },
  now() {
    return Date.now() + this.offset;
  },
};

// ---- Pairing -----------------------------------------------------------------

let pairingRun = 0; // a newer pairing supersedes an older poll loop

async function pair() {
  const run = ++pairingRun;
  closeFeed();
  face.timer = null;
  setState("pairing");
  $("new-code").hidden = true;
  setText("code", "······");
  try {
    const pairing = await api("POST", "/watch/pairings", { body: { device_name: DEVICE_NAME } });
    if (run !== pairingRun) return;
    setText("code", pairing.code);
    setText("pairing-hint", "Enter it on the session page");
    await pollPairing(pairing, run);
  } catch (e) {
    if (run !== pairingRun) return;
    setText("pairing-hint", e.detail || "Cannot reach Simmer");
    $("new-code").hidden = false;
  }
}

async function pollPairing(pairing, run) {
  const every = pairing.poll_interval_ms || 2000;
  while (run === pairingRun) {
    await sleep(every);
    if (run !== pairingRun) return;
    const status = await pollOnce(pairing);
    if (status?.status === "claimed") {
      // Each poll issues a new token and voids the last: stop at the first.
      localStorage.setItem(STORAGE_KEY, JSON.stringify({
        device_token: status.device_token,
        device_id: status.device_id,
        session_id: status.session_id,
      }));
      follow();
      return;
    }
    if (status?.status === "expired") {
      setText("pairing-hint", "That code expired: here is a new one");
      pair();
      return;
    }
  }
}

/** One poll; null when it could not be read (offline): just poll again. */
async function pollOnce(pairing) {
  try {
    const resp = await fetch(`/api/v1/watch/pairings/${pairing.pairing_id}`, {
      headers: { "X-Poll-Secret": pairing.poll_secret },
    });
    if (resp.status === 404) return { status: "expired" }; // forgotten by the server
    return resp.ok ? await resp.json() : null;
  } catch {
    return null;
  }
}

// ---- The feed ------------------------------------------------------------------

const feed = { socket: null, source: null, backoff: BACKOFF_MIN_MS, retry: null, pinger: null };

function follow() {
  setState("offline");
  connect();
}

function closeFeed() {
  clearTimeout(feed.retry);
  clearInterval(feed.pinger);
  const { socket, source } = feed;
  feed.socket = null; // handlers check these, so closing here is not a loss
  feed.source = null;
  socket?.close();
  source?.close();
}

function feedUrl(path) {
  const token = encodeURIComponent(storedDevice()?.device_token || "");
  return `${path}?token=${token}`;
}

function connect() {
  closeFeed();
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}${feedUrl("/watch/ws")}`);
  feed.socket = socket;
  let opened = false;
  socket.onopen = () => {
    opened = true;
    onFeedOpen();
    startPinging(socket);
  };
  socket.onmessage = (event) => receive(JSON.parse(event.data));
  socket.onclose = () => {
    if (feed.socket !== socket) return;
    feed.socket = null;
    clearInterval(feed.pinger);
    // A socket that never opened may be a proxy without WebSockets: try SSE.
    if (opened) lost(true);
    else connectSse();
  };
}

function connectSse() {
  const source = new EventSource(feedUrl("/watch/events"));
  feed.source = source;
  let opened = false;
  source.onopen = () => {
    opened = true;
    onFeedOpen();
  };
  source.onmessage = (event) => receive(JSON.parse(event.data));
  source.onerror = () => {
    if (feed.source !== source) return;
    // Our own backoff (and token check) rather than EventSource's retry.
    source.close();
    feed.source = null;
    lost(opened);
  };
}

function onFeedOpen() {
  feed.backoff = BACKOFF_MIN_MS;
  clock.rough = null; // a new path may have another delay
  if (currentState() === "offline") setState("following");
}

function startPinging(socket) {
  const round = async () => {
    clock.newRound();
    for (let i = 0; i < PINGS_PER_ROUND && socket.readyState === WebSocket.OPEN; i++) {
      socket.send(JSON.stringify({ type: "ping", client_time_ms: Date.now() }));
      await sleep(PING_SPACING_MS);
    }
  };
  round();
  feed.pinger = setInterval(round, PING_ROUND_EVERY_MS);
}

/** The feed dropped: reconnect with backoff, or pair again if the token is dead. */
async function lost(wasOpen) {
  setState("offline");
  if (!wasOpen && (await tokenRefused())) {
    forgetDevice();
    pair();
    return;
  }
  const wait = feed.backoff * (0.75 + Math.random() / 2); // jitter: watches do not return in a herd
  feed.backoff = Math.min(feed.backoff * 2, BACKOFF_MAX_MS);
  clearTimeout(feed.retry);
  feed.retry = setTimeout(connect, wait);
}

/** Neither transport says why it failed: a plain request shows a 401. */
async function tokenRefused() {
  const abort = new AbortController();
  try {
    const resp = await fetch(feedUrl("/watch/events"), { signal: abort.signal });
    return resp.status === 401;
  } catch {
    return false;
  } finally {
    abort.abort(); // only the status was wanted, not the stream
  }
}

function receive(frame) {
  clock.observe(frame.server_time_ms);
  switch (frame.type) {
    case "snapshot":
    case "timer":
      face.timer = frame; // a full timer: fields left out are null
      if (currentState() === "offline") setState("following");
      break;
    case "tick":
      if (face.timer) {
        const { step_index, deadline_ms, remaining_ms } = frame;
        Object.assign(face.timer, { state: "running", step_index, deadline_ms, remaining_ms });
      }
      break;
    case "alert":
      flashAlert();
      break;
    case "pong":
      clock.pong(frame);
      break;
    case "bye":
      onBye(frame.reason, frame.after_ms);
      break;
    default:
      break; // newer frames this page does not know
  }
  render();
}

function onBye(reason, afterMs) {
  if (reason === "unavailable") {
    // The close that follows reconnects: after the node's hint when it
    // gave one (a drain spreads its watches), else with the usual backoff.
    if (afterMs !== undefined) feed.backoff = afterMs;
    return;
  }
  closeFeed();
  if (reason === "revoked") {
    forgetDevice();
    pair();
  } else {
    setState("ended"); // session_ended, session_gone: nothing more will come
  }
}

// ---- Start ------------------------------------------------------------------------

$("new-code").addEventListener("click", pair);
$("unpair").addEventListener("click", () => {
  forgetDevice();
  pair();
});
setInterval(render, RENDER_EVERY_MS);

if (storedDevice()?.device_token) follow();
else pair();
