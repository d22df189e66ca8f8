// The pages through a release on one machine, in headless Chromium: the
// host's dashboard publishing video, a guest on the viewer page and the
// watch simulator follow a live session with a running timer; then a new
// simmer takes the port over (SIMMER_REUSE_PORT: scripts/browser.sh starts
// the first one with it, this script the successor). The old process tells
// every page to reconnect and to set its video up again; the pages come back
// on the new process by themselves, without a reload: chat resumes with
// nothing lost or doubled, the watch shows the same step, the video plays
// again, and the host publishes again.
// Runs inside a private network namespace (scripts/browser.sh e2e-upgrade.mjs).
import { spawn } from "node:child_process";
import { openSync, writeFileSync } from "node:fs";
import { launchChromium } from "./chromium.mjs";

const BASE = process.argv[2];
const API = `${BASE}/api/v1`;
const { SIMMER_BIN, SIMMER_WORK, SIMMER_BIND } = process.env;
let passed = 0, failed = 0;
function check(name, ok, detail = "") {
  if (ok) { passed++; console.log(`ok   ${name}`); } else { failed++; console.log(`FAIL ${name} ${detail}`); }
}
async function call(method, path, body, token) {
  const resp = await fetch(API + path, { method,
    headers: { ...(body ? { "content-type": "application/json" } : {}), ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: body ? JSON.stringify(body) : undefined });
  const text = await resp.text();
  if (!resp.ok) throw new Error(`${method} ${path}: ${resp.status} ${text}`);
  return text ? JSON.parse(text) : null;
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function waitFor(name, fn, timeout = 10000) {
  const end = Date.now() + timeout; let last;
  while (Date.now() < end) { try { last = await fn(); if (last) { check(name, true); return last; } } catch (e) { last = e.message; } await sleep(100); }
  check(name, false, String(last)); return null;
}
/** Frames decoded by the page's current WHEP connection. */
const framesDecoded = (page) => page.evaluate(async () => {
  const pc = window.simmerViewer.pc; if (!pc) return 0;
  let n = 0; (await pc.getStats()).forEach((s) => { if (s.type === "inbound-rtp" && s.kind === "video") n = s.framesDecoded || 0; });
  return n;
});
// Every page records its sockets and the types of the frames they got.
const trackSockets = () => {
  const Real = window.WebSocket;
  window.sockets = []; window.frameTypes = [];
  window.WebSocket = class extends Real {
    constructor(...a) {
      super(...a); window.sockets.push(this);
      this.addEventListener("message", (e) => { try { window.frameTypes.push(JSON.parse(e.data).type); } catch { /* not JSON */ } });
    }
  };
};

const host = await call("POST", "/auth/register", { username: "h" + Math.random().toString(36).slice(2, 10), password: "host-password", display_name: "Chef" });
const recipe = await call("POST", "/recipes", { title: "Stock", steps: [
  { text: "Simmer the bones", duration_s: 600, label: "Stir" }, { text: "Strain" } ] }, host.access_token);
const session = await call("POST", "/sessions", { recipe_id: recipe.id, title: "Stock day", allow_guests: true }, host.access_token);

const SHOTS = process.env.SIMMER_SCREENSHOTS || "/tmp";
const browser = await launchChromium();
const pages = [];
const errors = [];
async function newPage(label) {
  const page = await (await browser.newContext()).newPage();
  pages.push({ label, page });
  page.on("pageerror", (e) => errors.push(`${label}: ${e.message}`));
  await page.addInitScript(trackSockets);
  return page;
}
const text = (page, id) => page.locator(`[data-testid="${id}"]`).textContent();
let successor = null;

try {
  // The host goes live from the dashboard (it publishes on its own).
  const dash = await newPage("dashboard");
  await dash.goto(`${BASE}/healthz`);
  await dash.evaluate((pair) => localStorage.setItem("simmer.auth", JSON.stringify(pair)), host);
  await dash.goto(`${BASE}/#/sessions/${session.id}`);
  await dash.locator('[data-testid="go-live"]').click();
  await waitFor("the host publishes", async () => (await text(dash, "live-state")) === "publishing", 20000);
  await call("POST", `/sessions/${session.id}/timer`, { action: "start" }, host.access_token);

  // A guest watches and chats.
  const guest = await newPage("guest");
  await guest.goto(`${BASE}/s/${session.id}`);
  await guest.fill('[data-testid="guest-name"]', "Stock Fan");
  await guest.click('[data-testid="guest-join"]');
  await waitFor("the guest can chat", () => guest.locator('[data-testid="chat-input"]').isEnabled(), 15000);
  await waitFor("the guest's video plays", async () => (await framesDecoded(guest)) > 10, 20000);
  await guest.fill('[data-testid="chat-input"]', "before the upgrade");
  await guest.click('[data-testid="chat-send"]');
  await waitFor("own message shown", async () => (await text(guest, "chat-list")).includes("before the upgrade"));

  // A watch follows the timer.
  const watch = await newPage("watch");
  await watch.goto(`${BASE}/watch`);
  const code = await waitFor("watch shows a code", async () => { const c = (await text(watch, "watch-code")).trim(); return /^[A-Z0-9]{6}$/.test(c) && c; });
  await call("POST", "/watch/pairings/claim", { code, session_id: session.id }, host.access_token);
  await waitFor("watch follows", async () => (await text(watch, "watch-state")) === "following" && (await text(watch, "watch-step")) === "Stir", 10000);

  const messagesBefore = await guest.locator('[data-testid="chat-list"] li').count();
  const oldPc = await guest.evaluate(() => (window.oldPc = window.simmerViewer.pc) !== null);
  check("the guest plays on a connection", oldPc);
  check("the host publishes on a connection", await dash.evaluate(() => (window.oldHostPc = window.simmerHost.pc) != null));

  // The upgrade: a new process on the same port and data directory.
  const log = openSync(`${SIMMER_WORK}/successor.log`, "a");
  successor = spawn(SIMMER_BIN, ["serve"], {
    env: { ...process.env, SIMMER_BIND, SIMMER_DATA_DIR: SIMMER_WORK, SIMMER_REUSE_PORT: "true", RUST_LOG: "warn" },
    stdio: ["ignore", log, log],
  });
  writeFileSync(`${SIMMER_WORK}/successor.pid`, String(successor.pid));

  for (const [label, page] of [["guest", guest], ["watch", watch], ["dashboard", dash]]) {
    await waitFor(`${label}: told to go`, () => page.evaluate(() => window.frameTypes.includes(location.pathname === "/watch" ? "bye" : "reconnect")), 20000);
  }
  await waitFor("guest: back on a new socket", () => guest.evaluate(() => window.sockets.length >= 2 && window.sockets.at(-1).readyState === 1), 20000);
  await waitFor("the new process answers", async () => (await fetch(`${BASE}/readyz`)).ok, 20000);

  // Chat goes on: nothing lost, nothing twice.
  await call("POST", `/sessions/${session.id}/messages`, { text: "after the upgrade" }, host.access_token);
  await waitFor("a message after the upgrade is shown", async () => (await text(guest, "chat-list")).includes("after the upgrade"), 15000);
  check("nothing lost or doubled", (await guest.locator('[data-testid="chat-list"] li').count()) === messagesBefore + 1,
    await text(guest, "chat-list"));
  await guest.fill('[data-testid="chat-input"]', "still here");
  await guest.click('[data-testid="chat-send"]');
  await waitFor("the guest chats again", async () => (await text(guest, "chat-list")).includes("still here"));

  // The watch follows the same step, on a new feed.
  await waitFor("watch follows again", async () => (await watch.evaluate(() => window.sockets.length)) >= 2
    && (await text(watch, "watch-state")) === "following" && (await text(watch, "watch-step")) === "Stir", 20000);
  check("watch countdown shown", /^\d+:\d\d$/.test(await text(watch, "watch-countdown")));

  // Video: the host publishes again, the guest plays on a new connection.
  await waitFor("the host publishes again, on a new connection", async () => (await text(dash, "live-state")) === "publishing"
    && (await dash.evaluate(() => window.simmerHost.pc !== window.oldHostPc && window.simmerHost.pc?.connectionState === "connected")), 30000);
  await waitFor("the guest's video plays again", async () => (await guest.evaluate(() => window.simmerViewer.pc !== window.oldPc))
    && (await framesDecoded(guest)) > 10, 30000);
} catch (e) {
  check("upgrade e2e run", false, e.stack || e);
}
if (failed) {
  for (const { label, page } of pages) {
    await page.screenshot({ path: `${SHOTS}/upgrade-e2e-failed-${label}.png`, fullPage: true }).catch(() => {});
  }
  console.log(`screenshots in ${SHOTS}`);
  for (const e of errors) console.log("page error:", e);
}
await browser.close();
successor?.kill("SIGTERM");
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
