// The relay's numbers for this session, polled every 2 s while it is live
// (and cleared once it ended: old numbers would read as current).

import { el } from "../api.js";
import { call, errorText } from "./ui.js";

const POLL_MS = 2000;

const FIELDS = [
  ["publisher", "Publisher", (s) => s.publisher.replace("_", " ")],
  ["bitrate_in", "Bitrate in", (s) => `${Math.round(s.bitrate_in / 1000)} kbit/s`],
  ["packets_lost_in", "Packets lost in", (s) => String(s.packets_lost_in ?? 0)],
  ["packets_lost_out", "Packets lost out", (s) => String(s.packets_lost_out ?? 0)],
  ["subscribers", "Viewers playing video", (s) => String(s.subscribers)],
  ["codecs", "Codecs", (s) => s.codecs.join(", ") || "—"],
];

export function healthPanel(sessionId) {
  const values = {};
  const rows = FIELDS.map(([key, name]) => {
    values[key] = el("dd", { "data-testid": `media-${key.replaceAll("_", "-")}` }, "—");
    return [el("dt", {}, name), values[key]];
  });
  const status = el("p", { class: "muted", "data-testid": "media-health-status" });
  let timeout = null;
  let round = 0; // bumped by start/stop, so an answer from a stopped loop schedules nothing

  async function poll(mine) {
    try {
      const stats = await call("GET", `/sessions/${sessionId}/media`);
      if (mine !== round) return;
      for (const [key, , format] of FIELDS) values[key].textContent = format(stats);
      status.textContent = `Updated ${new Date().toLocaleTimeString()}`;
    } catch (err) {
      if (mine !== round) return;
      status.textContent = `Media numbers unavailable: ${errorText(err)}`;
    }
    // Scheduled after the answer, so a slow server never gets overlapping polls.
    timeout = setTimeout(() => poll(mine), POLL_MS);
  }

  return {
    node: el(
      "section",
      { class: "card health", "data-testid": "media-health", "aria-labelledby": "health-heading" },
      el("h2", { id: "health-heading" }, "Media health"),
      el("dl", {}, rows.flat()),
      status,
    ),
    start() {
      if (timeout !== null) return;
      timeout = 0;
      poll(++round);
    },
    stop() {
      round += 1;
      clearTimeout(timeout);
      timeout = null;
    },
    /** No numbers any more (stop first), and `note` saying why. */
    clear(note) {
      for (const value of Object.values(values)) value.textContent = "—";
      status.textContent = note;
    },
  };
}
