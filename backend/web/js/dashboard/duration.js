// Step durations as people type them: "90" (seconds) or "1:30" (m:ss).

const MAX_SECONDS = 24 * 60 * 60; // the API's limit for one step

/**
 * Seconds for `text`, or null for an empty field (a manual step).
 * Throws an Error with a readable message for anything else.
 */
export function parseDuration(text) {
  const value = text.trim();
  if (value === "") return null;
  const match = /^(?:(\d+):([0-5]?\d)|(\d+))$/.exec(value);
  if (!match) throw new Error(`"${value}" is not a duration: use seconds (90) or minutes:seconds (1:30)`);
  const seconds = match[3] !== undefined ? Number(match[3]) : Number(match[1]) * 60 + Number(match[2]);
  if (seconds < 1 || seconds > MAX_SECONDS) throw new Error("a step lasts from 1 second to 24 hours");
  return seconds;
}

/** "m:ss" for a stored duration, "" for a manual step. */
export function formatDuration(seconds) {
  if (seconds === null || seconds === undefined) return "";
  return `${Math.floor(seconds / 60)}:${String(seconds % 60).padStart(2, "0")}`;
}
