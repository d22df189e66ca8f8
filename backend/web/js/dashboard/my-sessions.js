// The host's sessions. The API lists sessions by state only (no "mine"
// filter), so the dashboard remembers the ids it created, per user, in
// localStorage, and adds the user's live sessions found in the public list
// (sessions created on another device show up once they are live).

import { auth } from "../api.js";
import { call } from "./ui.js";

const KEEP = 50; // the newest ids remembered per user

function storageKey() {
  return `simmer.host.sessions.${auth.current()?.user?.id}`;
}

function storedIds() {
  try {
    return JSON.parse(localStorage.getItem(storageKey())) || [];
  } catch {
    return [];
  }
}

/** Remembers a session the user just created. */
export function rememberSession(id) {
  const ids = [id, ...storedIds().filter((other) => other !== id)].slice(0, KEEP);
  localStorage.setItem(storageKey(), JSON.stringify(ids));
}

/** The user's sessions, newest first; ids that no longer resolve are skipped. */
export async function mySessions() {
  const me = auth.current()?.user?.id;
  const [stored, live] = await Promise.all([
    Promise.all(storedIds().map((id) => call("GET", `/sessions/${id}`).catch(() => null))),
    call("GET", "/sessions?state=live&limit=100").then((page) => page.items, () => []),
  ]);
  const byId = new Map();
  for (const session of [...stored, ...live]) {
    if (session && session.host.id === me) byId.set(session.id, session);
  }
  return [...byId.values()].sort((a, b) => b.created_at.localeCompare(a.created_at));
}
