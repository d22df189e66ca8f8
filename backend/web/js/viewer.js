// The viewer page (/s/{session_id}): live video over WHEP, the chat over /ws,
// the recipe with its countdown, and pairing a watch. The server is the
// source of truth for everything shown; the page only renders its frames.

import { api, ApiError, auth, Realtime, whep, el, formatCountdown } from "./api.js";

const sessionId = decodeURIComponent(location.pathname.split("/").filter(Boolean)[1] || "");
const $ = (id) => document.getElementById(id);

const SESSION_POLL_MS = 5000; // while we cannot follow /ws (signed out, not live yet)
const VIDEO_RETRY_MAX_MS = 15000;
const CLOCK_SAMPLE_TTL_MS = 60000;

const view = {
  session: null,
  identity: null, // {kind: "user" | "guest", name, token: () => Promise<string|null>}
  rt: null,
  joined: false,
  joining: false,
  polling: false,
  ended: false,
  timer: null,
  announced: "",
};

// Tests read the current peer connection from here (getStats()).
window.simmerViewer = { pc: null };

// ---- Server clock ------------------------------------------------------

// offset = server clock - local clock. A frame's `server_time_ms` minus its
// local arrival time is short by the one-way delay, so the largest recent
// sample is the least delayed one; old samples expire so drift is followed.
const clock = {
  offset: 0,
  at: 0,
  observe(serverTimeMs) {
    if (typeof serverTimeMs !== "number") return;
    const now = Date.now();
    const sample = serverTimeMs - now;
    if (!this.at || sample > this.offset || now - this.at > CLOCK_SAMPLE_TTL_MS) {
      this.offset = sample;
      this.at = now;
    }
  },
  now() {
    return Date.now() + this.offset;
  },
};

// ---- Session, recipe and timer ------------------------------------------

function renderSession(session) {
  view.session = session;
  document.title = `${session.title} · Simmer`;
  $("title").textContent = session.title;
  $("host").textContent = `with ${session.host.display_name}`;
  $("recipe-title").textContent = session.recipe.title;
  $("steps").replaceChildren(
    ...session.recipe.steps.map((step) =>
      el(
        "li",
        { "data-index": step.index },
        stepTitle(step),
        step.duration_s
          ? el("span", { class: "muted" }, ` (${formatCountdown(step.duration_s * 1000)})`)
          : null,
      ),
    ),
  );
  setViewerCount(session.viewer_count);
  setSessionState(session.state);
  applyTimer(session.timer);
}

function stepTitle(step) {
  return step.label ? `${step.label}: ${step.text}` : step.text;
}

function setSessionState(state) {
  $("session-state").textContent = state;
  $("session-state").dataset.state = state;
  if (state === "ended") endSession();
}

function setViewerCount(count) {
  if (typeof count === "number") $("viewer-count").textContent = String(count);
}

const TIMER_LABELS = {
  idle: "Not started",
  running: "Cooking",
  paused: "Paused",
  finished: "All steps done",
};

function applyTimer(timer) {
  if (!timer) return;
  clock.observe(timer.server_time_ms);
  view.timer = timer;
  const steps = view.session?.recipe.steps || [];
  const text = timer.step?.text || steps[timer.step_index]?.text || "";
  for (const item of $("steps").children) {
    const current = Number(item.dataset.index) === timer.step_index;
    item.classList.toggle("current", current);
    if (current) item.setAttribute("aria-current", "step");
    else item.removeAttribute("aria-current");
  }
  const label = TIMER_LABELS[timer.state] || timer.state;
  $("timer-state").textContent = `${label} · step ${timer.step_index + 1} of ${timer.step_count}`;
  $("current-step").textContent = text;
  const announcement = `${label}. Step ${timer.step_index + 1}: ${text}`;
  if (announcement !== view.announced) {
    view.announced = announcement;
    $("timer-announce").textContent = announcement;
  }
  renderCountdown();
}

/** Runs every 250 ms: the countdown is always derived from the deadline. */
function renderCountdown() {
  const timer = view.timer;
  let shown = "–"; // a manual step, or nothing yet
  if (timer?.state === "running" && timer.deadline_ms != null) {
    shown = formatCountdown(timer.deadline_ms - clock.now());
  } else if (timer?.remaining_ms != null) {
    shown = formatCountdown(timer.remaining_ms);
  }
  if ($("countdown").textContent !== shown) $("countdown").textContent = shown;
}

async function refreshSession() {
  try {
    renderSession(await api("GET", `/sessions/${sessionId}`));
  } catch (e) {
    // 400: the path is not a session id at all.
    if (e instanceof ApiError && [400, 404].includes(e.status)) showFatal("There is no such session.");
  }
}

/** Until /ws carries the session, poll it so state and timer stay current. */
function pollSession() {
  if (view.polling) return;
  view.polling = true;
  setTimeout(async () => {
    view.polling = false;
    if (view.ended || view.joined) return;
    await refreshSession();
    if (view.session?.state === "live") tryJoin();
    pollSession();
  }, SESSION_POLL_MS);
}

function showFatal(message) {
  view.ended = true;
  $("title").textContent = message;
  stopVideo();
}

// ---- Who is watching ------------------------------------------------------

function guestKey() {
  return `simmer.guest.${sessionId}`;
}

/** A guest token kept for this session until it expires (there is no refresh). */
function storedGuest() {
  try {
    const guest = JSON.parse(localStorage.getItem(guestKey()));
    if (guest && guest.expires_at_ms > Date.now() + 60000) return guest;
  } catch {
    // unreadable: ask again
  }
  localStorage.removeItem(guestKey());
  return null;
}

async function resolveIdentity() {
  const signedIn = auth.current();
  if (signedIn && (await auth.token())) {
    const name = signedIn.user?.display_name || signedIn.user?.username || "you";
    return { kind: "user", name, token: () => auth.token() };
  }
  const guest = storedGuest();
  if (guest) return { kind: "guest", name: guest.name, token: async () => guest.access_token };
  return null;
}

function renderIdentity() {
  const identity = view.identity;
  $("who").textContent = identity
    ? identity.kind === "user" ? `Signed in as ${identity.name}` : `Guest: ${identity.name}`
    : "";
  $("sign-in").hidden = Boolean(identity);
  $("join-panel").hidden = Boolean(identity) || view.ended;
  $("guest-form").hidden = !view.session?.allow_guests;
  const canPair = identity?.kind === "user";
  $("pair-code").disabled = !canPair;
  $("pair-submit").disabled = !canPair;
  if (!canPair) $("pair-result").textContent = "Sign in with an account to pair a watch.";
}

async function joinAsGuest(event) {
  event.preventDefault();
  const name = $("guest-name").value.trim();
  if (!name) return;
  $("guest-error").textContent = "";
  try {
    const grant = await api("POST", `/sessions/${sessionId}/guest-tokens`, {
      body: { display_name: name },
    });
    const guest = {
      name,
      access_token: grant.access_token,
      expires_at_ms: Date.now() + grant.expires_in * 1000,
    };
    localStorage.setItem(guestKey(), JSON.stringify(guest));
    setIdentity({ kind: "guest", name, token: async () => guest.access_token });
  } catch (e) {
    $("guest-error").textContent =
      e.status === 403 ? "This session does not allow guests." : e.detail || e.message;
  }
}

function setIdentity(identity) {
  view.identity = identity;
  renderIdentity();
  if (identity) connectRealtime();
}

// ---- Realtime (/ws) -------------------------------------------------------

function connectRealtime() {
  const rt = new Realtime(view.identity.token);
  view.rt = rt;
  const mine = (handler) => (frame) => {
    if (frame.session_id === sessionId) handler(frame);
  };
  rt.on("hello", (f) => clock.observe(f.server_time_ms))
    .on("connection", onConnection)
    .on("chat.message", mine(showMessage))
    .on("chat.deleted", mine((f) => showMessage({ seq: f.seq, deleted: true, text: "" })))
    .on("presence", mine((f) => setViewerCount(f.viewer_count)))
    .on("timer", mine(applyTimer))
    .on("media", mine((f) => onMedia(f.state)))
    .on("session.ended", mine(endSession))
    .on("rejoined", mine((f) => onSnapshot(f.body, { resumed: true })))
    .on("rejoin_failed", mine(() => refreshSession()));
  tryJoin();
}

function onConnection(frame) {
  if (view.ended) return;
  $("chat-status").textContent = frame.state === "open" ? "" : "Reconnecting…";
  if (frame.state === "open" && !view.joined) tryJoin();
}

async function tryJoin() {
  if (view.joined || view.joining || view.ended || !view.rt) return;
  view.joining = true;
  try {
    const snapshot = await view.rt.join(sessionId);
    view.joined = true;
    onSnapshot(snapshot, { resumed: false });
    loadHistory();
    startVideo();
  } catch (e) {
    onJoinRefused(e);
  } finally {
    view.joining = false;
  }
}

function onJoinRefused(error) {
  if (error.code === "forbidden" && view.identity?.kind === "guest") {
    // A guest token of another session (or a stale one): ask for a new one.
    localStorage.removeItem(guestKey());
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

// ---- Chat -----------------------------------------------------------------

/** Adds or updates a message, keeping the list in `seq` order. */
function showMessage(message) {
  const list = $("chat-list");
  let item = list.querySelector(`li[data-seq="${message.seq}"]`);
  if (!item) {
    if (!message.author) return; // a deletion of something we never saw
    const nearBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
    item = el(
      "li",
      { "data-seq": message.seq, class: `msg role-${message.author.role}` },
      el("span", { class: "author" }, message.author.name),
      message.author.role === "host" ? el("span", { class: "badge" }, "host") : null,
      el("span", { class: "text" }),
    );
    const later = [...list.children].find((li) => Number(li.dataset.seq) > message.seq);
    list.insertBefore(item, later || null);
    if (nearBottom) list.scrollTop = list.scrollHeight;
  }
  item.classList.toggle("deleted", Boolean(message.deleted));
  item.querySelector(".text").textContent = message.deleted ? "message deleted" : message.text;
}

async function loadHistory() {
  try {
    const page = await api("GET", `/sessions/${sessionId}/messages?limit=50`, {
      token: await view.identity.token(),
    });
    for (const message of page.items) showMessage(message);
    const newest = page.items[0]?.seq;
    if (newest) view.rt?.seen(sessionId, newest);
  } catch (e) {
    $("chat-status").textContent = `Could not load earlier messages: ${e.detail || e.message}`;
  }
}

function setChatEnabled(enabled) {
  $("chat-input").disabled = !enabled;
  $("chat-send").disabled = !enabled;
}

const SEND_ERRORS = {
  forbidden: "You cannot send messages: the host has muted you.",
  rate_limited: "You are sending too fast; wait a moment.",
  unavailable: "The chat is busy; press Send again.",
  disconnected: "Not connected; press Send again once reconnected.",
  not_joined: "Not in the session yet; try again in a moment.",
};

// The last unacknowledged send: pressing Send again with the same text
// reuses its client_msg_id, so a message that did land is not posted twice.
let pendingSend = null;

async function sendChat(event) {
  event.preventDefault();
  const text = $("chat-input").value.trim();
  if (!text || !view.rt) return;
  if (pendingSend?.text !== text) pendingSend = { text, client_msg_id: newId() };
  $("chat-error").textContent = "";
  $("chat-send").disabled = true;
  try {
    await view.rt.request({
      type: "chat.send",
      session_id: sessionId,
      text,
      client_msg_id: pendingSend.client_msg_id,
    });
    pendingSend = null;
    $("chat-input").value = "";
  } catch (e) {
    $("chat-error").textContent = SEND_ERRORS[e.code] || e.message;
  } finally {
    $("chat-send").disabled = view.ended;
    $("chat-input").focus();
  }
}

/** randomUUID needs a secure context; a LAN address over http is not one. */
function newId() {
  if (crypto.randomUUID) return crypto.randomUUID();
  return [...crypto.getRandomValues(new Uint8Array(16))]
    .map((b) => b.toString(16).padStart(2, "0"))
    .join("");
}

// ---- Video (WHEP) -----------------------------------------------------------

const player = { current: null, generation: 0, retryTimer: null, retryMs: 1000 };

function setVideoState(state) {
  $("video-state").textContent = state;
  $("player-overlay").hidden = state === "live";
  $("player-message").textContent =
    state === "ended" ? "This session has ended" : "The host is not live yet";
  updateUnmute();
}

function onMedia(state) {
  if (view.ended) return;
  if (state === "publishing") setVideoState("live");
  else setVideoState("waiting");
  // The relay restarted: our WHEP session is gone with it.
  if (state === "reconnect") startVideo();
}

async function refreshMediaState() {
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
function stopVideo({ serverGone = false } = {}) {
  clearTimeout(player.retryTimer);
  player.generation++;
  if (serverGone) player.current?.pc.close();
  else player.current?.stop();
  player.current = null;
  window.simmerViewer.pc = null;
  $("video").srcObject = null;
}

async function startVideo() {
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

function updateUnmute() {
  const video = $("video");
  $("unmute").hidden = !video.muted || view.ended;
}

function unmute() {
  const video = $("video");
  video.muted = false;
  video.play().catch(() => {});
  updateUnmute();
}

// ---- The end -------------------------------------------------------------------

function endSession() {
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

// ---- Pairing a watch -------------------------------------------------------------

async function pairWatch(event) {
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

// ---- Start ---------------------------------------------------------------------

async function main() {
  $("guest-form").addEventListener("submit", joinAsGuest);
  $("chat-form").addEventListener("submit", sendChat);
  $("pair-form").addEventListener("submit", pairWatch);
  $("unmute").addEventListener("click", unmute);
  $("video").addEventListener("volumechange", updateUnmute);
  setInterval(renderCountdown, 250);

  await refreshSession();
  if (!view.session) return;
  setVideoState(view.ended ? "ended" : "waiting");
  view.identity = await resolveIdentity();
  renderIdentity();
  if (view.ended) {
    if (view.identity) loadHistory(); // what was said stays readable
  } else if (view.identity) {
    connectRealtime();
  } else {
    pollSession();
  }
}

main();
