// The session's chat with the host's moderation: delete a message, mute its
// author. Messages are kept in `seq` order and shown once each, whether they
// come from history, a resume replay or live.

import { el } from "../api.js";
import { busy, call, errorBox, field, report } from "./ui.js";

const HISTORY = 50; // messages loaded from before the join

const MUTE_CHOICES = [
  ["300", "5 minutes"],
  ["3600", "1 hour"],
  ["", "the rest of the session"],
];

/** A client_msg_id; crypto.randomUUID needs a secure context, this does not. */
function newMessageId() {
  return [...crypto.getRandomValues(new Uint8Array(16))].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * `sendFrame(frame)` sends over /ws (rejecting with code "disconnected"
 * without a socket); `me` is the host's user (never offered to mute).
 */
export function chatPanel(sessionId, sendFrame, me) {
  // A list that announces new messages (a `log` role would hide the list
  // semantics of its items from assistive technology).
  const list = el("ol", {
    class: "chat-list",
    "aria-live": "polite",
    "aria-label": "Chat messages",
    "data-testid": "chat-list",
  });
  const items = new Map(); // seq -> li
  const input = el("input", { "data-testid": "chat-input", maxlength: 1000, autocomplete: "off" });
  const send = el("button", { type: "submit", "data-testid": "chat-send" }, "Send");
  const muteFor = el(
    "select",
    { "data-testid": "mute-duration" },
    MUTE_CHOICES.map(([value, text]) => el("option", { value }, text)),
  );
  const status = el("p", { class: "muted", role: "status", "data-testid": "chat-status" });
  const error = errorBox("chat-error");
  // The id of a send that failed, kept while its text is unchanged, so that
  // sending again is recognised by the server instead of posting twice.
  let pending = { text: null, id: null };

  async function remove(message, button) {
    report(error, null);
    try {
      await busy(button, () => call("DELETE", `/sessions/${sessionId}/messages/${message.seq}`));
      markDeleted(message.seq);
    } catch (err) {
      report(error, err);
    }
  }

  async function mute(author, button) {
    report(error, null);
    const body = { user_id: author.id };
    if (muteFor.value) body.duration_s = Number(muteFor.value);
    try {
      await busy(button, () => call("POST", `/sessions/${sessionId}/mutes`, body));
      status.textContent = `${author.name} is muted for ${muteFor.selectedOptions[0].textContent}.`;
    } catch (err) {
      report(error, err);
    }
  }

  function item(message) {
    const { author } = message;
    const text = el("span", { class: "chat-text" }, message.text);
    const actions = el("span", { class: "chat-actions" });
    const del = el("button", {
      type: "button",
      class: "secondary small",
      "data-testid": "chat-delete",
      "aria-label": `Delete message ${message.seq} from ${author.name}`,
    }, "Delete");
    del.addEventListener("click", () => remove(message, del));
    actions.append(del);
    if (author.id !== me.id && author.role !== "host") {
      const muteButton = el("button", {
        type: "button",
        class: "secondary small",
        "data-testid": "chat-mute",
        "aria-label": `Mute ${author.name}`,
      }, "Mute");
      muteButton.addEventListener("click", () => mute(author, muteButton));
      actions.append(muteButton);
    }
    return el(
      "li",
      { class: `chat-message role-${author.role}`, "data-seq": message.seq, "data-author": author.id },
      el("strong", { class: "chat-author" }, author.name),
      " ",
      text,
      actions,
    );
  }

  function markDeleted(seq) {
    const node = items.get(seq);
    if (!node || node.classList.contains("deleted")) return;
    node.classList.add("deleted");
    node.querySelector(".chat-text").textContent = "message deleted";
    node.querySelector(".chat-actions").remove();
  }

  /** Adds a message in `seq` order; a `seq` already shown is ignored. */
  function add(message) {
    if (items.has(message.seq)) return;
    const stickToBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
    const node = item(message);
    items.set(message.seq, node);
    const later = [...list.children].find((other) => Number(other.dataset.seq) > message.seq);
    list.insertBefore(node, later || null);
    if (message.deleted) markDeleted(message.seq);
    if (stickToBottom) list.scrollTop = list.scrollHeight;
  }

  /**
   * Loads the latest messages: up to `lastSeq` (the join snapshot's newest;
   * later ones arrive live), or the newest ones when there is no join.
   */
  async function loadHistory(lastSeq) {
    if (lastSeq === null || lastSeq === 0) return; // nothing was said yet
    const query = new URLSearchParams({ limit: String(HISTORY) });
    if (lastSeq !== undefined) query.set("before_seq", String(lastSeq + 1));
    try {
      const page = await call("GET", `/sessions/${sessionId}/messages?${query}`);
      page.items.forEach(add);
    } catch (err) {
      report(error, err);
    }
  }

  async function submit(event) {
    event.preventDefault();
    const text = input.value.trim();
    if (!text) return;
    report(error, null);
    if (pending.text !== text) pending = { text, id: newMessageId() };
    const frame = { type: "chat.send", session_id: sessionId, text, client_msg_id: pending.id };
    try {
      await busy(send, () =>
        sendFrame(frame).catch((err) => {
          // No socket right now: REST posts the same way (same client_msg_id).
          if (err.code !== "disconnected") throw err;
          return call("POST", `/sessions/${sessionId}/messages`, { text, client_msg_id: pending.id });
        }),
      );
      pending = { text: null, id: null };
      input.value = "";
    } catch (err) {
      report(error, err);
    }
    input.focus();
  }

  const form = el(
    "form",
    { class: "chat-form" },
    field("Message", input),
    send,
  );
  form.addEventListener("submit", submit);
  const node = el(
    "section",
    { class: "card chat", "aria-labelledby": "chat-heading" },
    el("h2", { id: "chat-heading" }, "Chat"),
    list,
    form,
    field("Mute for", muteFor),
    status,
    error,
  );
  return {
    node,
    add,
    markDeleted,
    loadHistory,
    /** After the session ends nobody can post. */
    close() {
      input.disabled = true;
      send.disabled = true;
      muteFor.disabled = true;
    },
  };
}
