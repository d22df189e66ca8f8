// The chat: earlier messages loaded over REST, live ones from /ws frames,
// and sending. Messages are shown once each, in `seq` order, whichever way
// they arrive.

import { api, el } from "/assets/js/api.js";
import { $, sessionId, view } from "/assets/js/viewer/state.js";

const HISTORY_LIMIT = 50;

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

/** Adds or updates a message, keeping the list in `seq` order. */
export function showMessage(message) {
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

export async function loadHistory() {
  try {
    const page = await api("GET", `/sessions/${sessionId}/messages?limit=${HISTORY_LIMIT}`, {
      token: await view.identity.token(),
    });
    for (const message of page.items) showMessage(message);
    // Tell /ws what we already have, so a resume replays only what is newer.
    const newest = page.items[0]?.seq;
    if (newest) view.rt?.seen(sessionId, newest);
  } catch (e) {
    setChatStatus(`Could not load earlier messages: ${e.detail || e.message}`);
  }
}

/** The line under the chat form: connection trouble, history errors. */
export function setChatStatus(text) {
  $("chat-status").textContent = text;
}

export function setChatEnabled(enabled) {
  $("chat-input").disabled = !enabled;
  $("chat-send").disabled = !enabled;
}

export async function sendChat(event) {
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
