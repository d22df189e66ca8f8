// The live room (#/sessions/{id}): preview and devices, going live over
// WHIP, the viewer link and count, media health, chat with moderation, the
// recipe timer, and ending the session (after a confirmation: it cannot be
// undone). Once ended, nothing live is shown any more.

import { Realtime, auth, el } from "../api.js";
import { chatPanel } from "./chat.js";
import { devicePanel } from "./devices.js";
import { healthPanel } from "./health.js";
import { rememberSession } from "./my-sessions.js";
import { Publisher } from "./publisher.js";
import { timerPanel } from "./timer.js";
import { busy, call, errorBox, report } from "./ui.js";

const JOIN_RETRY_MS = 1000;
const END_QUESTION =
  "End this session for everyone? The video stops, the chat closes, and it cannot be started again.";

function viewerLink(sessionId) {
  const url = `${location.origin}/s/${sessionId}`;
  const copy = el("button", { type: "button", class: "secondary small" }, "Copy link");
  copy.addEventListener("click", async () => {
    await navigator.clipboard?.writeText(url);
    copy.textContent = "Copied";
  });
  return el(
    "p",
    { class: "viewer-link" },
    "Viewers watch at ",
    el("a", { href: url, target: "_blank", rel: "noopener", "data-testid": "viewer-link" }, url),
    " ",
    copy,
  );
}

/** Builds the room for a session the user hosts; returns its cleanup. */
function room(container, session, me) {
  const id = session.id;
  let state = session.state; // scheduled | live | ended
  let publishing = "stopped"; // the Publisher's last state
  let realtime = null;
  let disposed = false;

  const liveState = el("strong", { "data-testid": "live-state" });
  const viewerCount = el("strong", { "data-testid": "viewer-count" }, String(session.viewer_count));
  const connection = el("span", { class: "muted", "data-testid": "connection" });
  const goLive = el("button", { type: "button", "data-testid": "go-live" }, "Go live");
  const end = el("button", { type: "button", class: "danger", "data-testid": "end-session" }, "End session");
  const error = errorBox("room-error");
  const endedBanner = el("p", { class: "ended-banner", role: "status", "data-testid": "ended-banner" });
  const mediaControls = el("div", {});

  const devices = devicePanel({
    onTrack: (kind, track) => publisher.replaceTrack(kind, track),
    onError: (err) => report(error, err),
  });
  const publisher = new Publisher(id, {
    getStream: devices.stream,
    onState: (next) => {
      publishing = next;
      if (next === "publishing") report(error, null); // earlier failed attempts are over
      refresh();
    },
    onError: (err) => report(error, err),
  });
  mediaControls.append(devices.node, el("div", { class: "row room-actions" }, goLive, end));
  const health = healthPanel(id);
  const timer = timerPanel(id);
  timer.render(session.timer);
  const chat = chatPanel(id, sendFrame, me);

  /** Sends over /ws; without a socket, fails the way a dropped one does. */
  function sendFrame(frame) {
    if (realtime) return realtime.request(frame);
    return Promise.reject(Object.assign(new Error("not connected"), { code: "disconnected" }));
  }

  /** Shows the state in the header and enables what applies to it. */
  function refresh() {
    let shown = state; // scheduled | ended, or while live what the publisher does
    if (state === "live") shown = publishing === "stopped" ? "not publishing" : publishing;
    liveState.textContent = shown;
    liveState.className = `badge state-${shown.replace(" ", "-")}`;
    goLive.disabled = state === "ended" || publishing !== "stopped";
    end.disabled = state !== "live";
    mediaControls.hidden = state === "ended"; // nothing to film any more
    timer.setLive(state === "live");
    endedBanner.textContent = state === "ended" ? "This session has ended" : "";
    endedBanner.hidden = state !== "ended";
    if (state === "ended") {
      viewerCount.textContent = "—"; // nobody watches an ended session
      connection.textContent = "";
    }
  }

  function applySnapshot(snapshot) {
    if (state === "ended") return;
    viewerCount.textContent = String(snapshot.viewer_count);
    timer.render(snapshot.timer);
    if (snapshot.state === "ended") ended();
  }

  function ours(handler) {
    return (frame) => frame.session_id === id && handler(frame);
  }

  function connect() {
    const socket = new Realtime(() => auth.token());
    realtime = socket;
    socket
      .on("connection", (frame) => {
        if (socket !== realtime) return; // closed on purpose: ended, or left the room
        // Signed out meanwhile (a refused refresh): the route shows sign-in
        // and comes back here afterwards.
        if (frame.state === "unauthorized") location.reload();
        else connection.textContent = frame.state === "open" ? "" : "Reconnecting to chat…";
      })
      .on("chat.message", ours((message) => chat.add(message)))
      .on("chat.deleted", ours((frame) => chat.markDeleted(frame.seq)))
      .on("presence", ours((frame) => state !== "ended" && (viewerCount.textContent = String(frame.viewer_count))))
      .on("timer", ours((frame) => timer.render(frame)))
      .on("media", ours((frame) => frame.state === "reconnect" && publisher.republish()))
      .on("session.ended", ours(() => ended()))
      // After a reconnect the client re-joins by itself; its snapshot catches
      // up on what frames were missed (the chat replays by `last_seq`).
      .on("rejoined", ours((frame) => applySnapshot(frame.body)))
      // A re-join is refused once the session ended while we were away.
      .on("rejoin_failed", ours(() => resync()));
    join();
  }

  async function join() {
    try {
      const snapshot = await realtime.join(id);
      applySnapshot(snapshot);
      await chat.loadHistory(snapshot.last_seq);
    } catch (err) {
      // Not connected yet (or the socket dropped): try again once it is back.
      if (err.code === "disconnected" && !disposed && state === "live") setTimeout(join, JOIN_RETRY_MS);
      else report(error, err);
    }
  }

  function becameLive() {
    if (realtime) return;
    connect();
    health.start();
    refresh();
  }

  /** Adopts the session's state from the server (another tab may have moved it). */
  async function resync() {
    const fresh = await call("GET", `/sessions/${id}`).catch(() => null);
    if (!fresh || disposed) return;
    if (fresh.state === "live" && state === "scheduled") {
      state = "live";
      becameLive();
    } else if (fresh.state === "ended") {
      ended();
    }
  }

  /** However the end is learned (the button, a frame, a refused re-join). */
  function ended() {
    const first = state !== "ended";
    state = "ended";
    const socket = realtime;
    realtime = null; // first, so its closing is not taken for a lost connection
    socket?.close();
    publisher.stop({ serverGone: true }); // no DELETE: the relay let it go
    devices.close();
    health.stop();
    health.clear("The session has ended.");
    chat.close();
    timer.end();
    refresh();
    // The timer as the end left it (the server pauses it there).
    if (first && !disposed) {
      call("GET", `/sessions/${id}/timer`).then((final) => !disposed && timer.render(final), () => {});
    }
  }

  goLive.addEventListener("click", async () => {
    report(error, null);
    try {
      if (!devices.stream()) await devices.open();
      if (!devices.stream()) return; // the device error is already shown
      if (state === "scheduled") {
        await busy(goLive, () => call("POST", `/sessions/${id}/start`));
        state = "live";
        becameLive();
      }
      publisher.start();
    } catch (err) {
      report(error, err);
      if (err.status === 409) resync();
    }
  });

  end.addEventListener("click", async () => {
    report(error, null);
    if (!window.confirm(END_QUESTION)) return;
    try {
      await busy(end, () => call("POST", `/sessions/${id}/end`));
      ended();
    } catch (err) {
      report(error, err);
      if (err.status === 409) resync();
    }
  });

  container.append(
    el("p", {}, el("a", { href: "#/" }, "← Dashboard")),
    el("h1", {}, session.title),
    el(
      "div",
      { class: "room-status row" },
      el("span", {}, "State: ", liveState),
      el("span", {}, "Viewers: ", viewerCount),
      connection,
    ),
    viewerLink(id),
    endedBanner,
    error,
    el(
      "div",
      { class: "room" },
      el("div", { class: "room-media" }, mediaControls, health.node),
      el("div", { class: "room-side" }, timer.node, chat.node),
    ),
  );

  const leaving = () => publisher.abandon();
  window.addEventListener("pagehide", leaving);

  refresh();
  if (state !== "ended") devices.open();
  if (state === "live") becameLive();
  else if (state === "ended") {
    chat.close();
    timer.end();
    health.clear("The session has ended.");
    chat.loadHistory(); // no join after the end: the chat as it was left
  }

  return () => {
    disposed = true;
    window.removeEventListener("pagehide", leaving);
    publisher.stop();
    devices.close();
    health.stop();
    timer.dispose();
    realtime?.close();
  };
}

/** The room page; returns its cleanup (or nothing if it never opened). */
export async function roomView(container, sessionId, isCurrent) {
  const error = errorBox("room-load-error");
  container.append(error);
  let session;
  try {
    session = await call("GET", `/sessions/${sessionId}`);
  } catch (err) {
    report(error, err);
    return undefined;
  }
  if (!isCurrent()) return undefined; // the user navigated away meanwhile
  const me = auth.current().user;
  if (session.host.id !== me.id) {
    report(error, new Error("Only the host runs this session."));
    container.append(viewerLink(session.id));
    return undefined;
  }
  rememberSession(session.id);
  return room(container, session, me);
}
