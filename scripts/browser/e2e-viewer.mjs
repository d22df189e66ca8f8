// The viewer page (/s/{id}) and the watch simulator (/watch) end to end in
// headless Chromium, the host driven over the REST API and a Chromium WHIP
// publisher: a guest joins before the session is live, follows the timer,
// chats (and resumes after losing /ws), receives video (and again after the
// host republishes), is muted; a signed-in viewer pairs two watches (one on
// WebSocket, one falling back to SSE); the session ends. Screenshots of every
// page go to $SIMMER_SCREENSHOTS when a check fails.
// Runs inside a private network namespace (scripts/browser.sh e2e-viewer.mjs).
import { launchChromium } from "./chromium.mjs";

const BASE = process.argv[2];
const API = `${BASE}/api/v1`;
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
const host = await call("POST", "/auth/register", { username: "h" + Math.random().toString(36).slice(2, 10), password: "host-password", display_name: "Chef" });
const fan = await call("POST", "/auth/register", { username: "f" + Math.random().toString(36).slice(2, 10), password: "fan-password", display_name: "Fan" });
const recipe = await call("POST", "/recipes", { title: "Pasta", steps: [
  { text: "Boil the water in a big pot", duration_s: 60, label: "Boil" },
  { text: "Cook the pasta", duration_s: 3, label: "Cook" },
  { text: "Serve" } ] }, host.access_token);
const session = await call("POST", "/sessions", { recipe_id: recipe.id, title: "Pasta night", allow_guests: true }, host.access_token);

const SHOTS = process.env.SIMMER_SCREENSHOTS || "/tmp";
const pages = [];
const browser = await launchChromium();
const errors = [];
async function newPage(label) {
  const ctx = await browser.newContext();
  const page = await ctx.newPage();
  pages.push({ label, page });
  page.on("pageerror", (e) => errors.push(`${label}: ${e.message}`));
  page.on("console", (m) => { if (m.type() === "error") errors.push(`${label} console: ${m.text()}`); });
  page.on("response", (r) => { if (r.status() >= 400) errors.push(`${label} ${r.status()} ${r.request().method()} ${r.url()}`); });
  return page;
}
const text = (page, id) => page.locator(`[data-testid="${id}"]`).textContent();

try {
  // A guest opens the page before the session is live.
  const guest = await newPage("guest");
  await guest.addInitScript(() => {
    const Real = window.WebSocket;
    window.sockets = [];
    window.WebSocket = class extends Real { constructor(...a) { super(...a); window.sockets.push(this); } };
  });
  await guest.goto(`${BASE}/s/${session.id}`);
  await waitFor("scheduled session shows state", async () => (await text(guest, "session-state")) === "scheduled");
  await waitFor("guest form visible", () => guest.locator('[data-testid="guest-name"]').isVisible());
  await guest.fill('[data-testid="guest-name"]', "Hungry Guest");
  await guest.click('[data-testid="guest-join"]');
  await waitFor("video waiting", async () => (await text(guest, "video-state")) === "waiting");
  await call("POST", `/sessions/${session.id}/start`, {}, host.access_token);
  await waitFor("guest joins once live (chat enabled)", () => guest.locator('[data-testid="chat-input"]').isEnabled(), 15000);
  await waitFor("pc exposed", () => guest.evaluate(() => window.simmerViewer.pc !== null));

  // Timer.
  await call("POST", `/sessions/${session.id}/timer`, { action: "start" }, host.access_token);
  await waitFor("current step text", async () => (await text(guest, "current-step")).includes("Boil the water"));
  const c1 = await waitFor("countdown running", async () => { const t = await text(guest, "countdown"); return /^0:5\d$|^1:00$/.test(t) && t; });
  await sleep(1500);
  const c2 = await text(guest, "countdown");
  check("countdown ticks down", c2 !== c1, `${c1} -> ${c2}`);

  // Chat.
  await guest.fill('[data-testid="chat-input"]', "hello from guest");
  await guest.click('[data-testid="chat-send"]');
  await waitFor("own message shown", async () => (await text(guest, "chat-list")).includes("hello from guest"));
  await call("POST", `/sessions/${session.id}/messages`, { text: "welcome!" }, host.access_token);
  await waitFor("host message shown", async () => (await text(guest, "chat-list")).includes("welcome!"));
  // Lose /ws: messages and a timer change made meanwhile arrive after the resume, once.
  await guest.evaluate(() => window.sockets.at(-1).close());
  await call("POST", `/sessions/${session.id}/messages`, { text: "while you were away" }, host.access_token);
  await call("POST", `/sessions/${session.id}/timer`, { action: "pause" }, host.access_token);
  await waitFor("missed message replayed", async () => (await text(guest, "chat-list")).includes("while you were away"), 10000);
  check("no duplicates", (await guest.locator('[data-testid="chat-list"] li').count()) === 3);
  await waitFor("timer paused after resume", async () => (await guest.locator("#timer-state").textContent()).startsWith("Paused"));
  await call("POST", `/sessions/${session.id}/timer`, { action: "resume" }, host.access_token);
  await waitFor("timer running again", async () => (await guest.locator("#timer-state").textContent()).startsWith("Cooking"));
  await waitFor("viewer count 1", async () => (await text(guest, "viewer-count")) === "1");

  // Publish from a host page.
  const hostPage = await newPage("host");
  await hostPage.goto(`${BASE}/healthz`);
  async function publish(codec) {
    return hostPage.evaluate(async ({ sid, token, codec }) => {
      const { whip } = await import("/assets/js/api.js");
      const media = await navigator.mediaDevices.getUserMedia({ video: true, audio: true });
      window.pub = await whip(sid, token, media);
      return true;
    }, { sid: session.id, token: host.access_token, codec });
  }
  await publish();
  await waitFor("video live", async () => (await text(guest, "video-state")) === "live", 15000);
  await waitFor("frames decoded", () => guest.evaluate(async () => {
    const stats = await window.simmerViewer.pc.getStats(); let n = 0;
    stats.forEach((s) => { if (s.type === "inbound-rtp" && s.kind === "video") n = s.framesDecoded || 0; });
    return n > 10;
  }), 15000);
  check("unmute button visible", await guest.locator('[data-testid="unmute"]').isVisible());
  await hostPage.evaluate(() => window.pub.stop());
  await waitFor("video waiting after stop", async () => (await text(guest, "video-state")) === "waiting", 15000);
  check("overlay says the host is live without video", (await guest.locator("#player-message").textContent()).includes("their video is off right now"),
    await guest.locator("#player-message").textContent());
  const framesBefore = await guest.evaluate(async () => { const s = await window.simmerViewer.pc.getStats(); let n = 0; s.forEach((x) => { if (x.type === "inbound-rtp" && x.kind === "video") n = x.framesDecoded; }); return n; });
  await publish();
  await waitFor("video live again", async () => (await text(guest, "video-state")) === "live", 15000);
  await waitFor("frames resume on same pc", () => guest.evaluate(async (before) => {
    const s = await window.simmerViewer.pc.getStats(); let n = 0;
    s.forEach((x) => { if (x.type === "inbound-rtp" && x.kind === "video") n = x.framesDecoded; }); return n > before + 10;
  }, framesBefore), 15000);

  // The relay restarts its room: /ws says "reconnect", and the page sets up
  // WHEP again on a new connection, without a reload.
  await guest.evaluate(() => (window.oldPc = window.simmerViewer.pc));
  await guest.evaluate((sid) => window.sockets.at(-1).onmessage({
    data: JSON.stringify({ type: "media", session_id: sid, state: "reconnect" }),
  }), session.id);
  await waitFor("a media reconnect redoes WHEP and frames decode again", () => guest.evaluate(async () => {
    const pc = window.simmerViewer.pc;
    if (!pc || pc === window.oldPc) return false;
    let n = 0;
    (await pc.getStats()).forEach((x) => { if (x.type === "inbound-rtp" && x.kind === "video") n = x.framesDecoded || 0; });
    return n > 10;
  }), 15000);
  check("the old connection is closed", await guest.evaluate(() => window.oldPc.connectionState === "closed"));

  // Mute the guest.
  const hist = await call("GET", `/sessions/${session.id}/messages`, null, host.access_token);
  const guestId = hist.items.find((m) => m.text === "hello from guest").author.id;
  await call("POST", `/sessions/${session.id}/mutes`, { user_id: guestId }, host.access_token);
  await guest.fill('[data-testid="chat-input"]', "am I muted?");
  await guest.click('[data-testid="chat-send"]');
  await waitFor("muted error shown", async () => (await text(guest, "chat-error")).includes("muted"));

  // A signed-in fan pairs the watch.
  const watch = await newPage("watch");
  await watch.addInitScript(() => {
    const Real = window.WebSocket;
    window.sockets = [];
    window.WebSocket = class extends Real { constructor(...a) { super(...a); window.sockets.push(this); } };
  });
  await watch.goto(`${BASE}/watch`);
  const code = await waitFor("watch shows code", async () => { const c = (await text(watch, "watch-code")).trim(); return /^[A-Z0-9]{6}$/.test(c) && c; });
  check("watch state pairing", (await text(watch, "watch-state")) === "pairing");
  const fanPage = await newPage("fan");
  await fanPage.goto(`${BASE}/healthz`);
  await fanPage.evaluate((pair) => localStorage.setItem("simmer.auth", JSON.stringify(pair)), fan);
  await fanPage.goto(`${BASE}/s/${session.id}`);
  await waitFor("fan chat enabled", () => fanPage.locator('[data-testid="chat-input"]').isEnabled());
  await waitFor("fan sees history", async () => (await text(fanPage, "chat-list")).includes("welcome!"));
  await fanPage.fill('[data-testid="pair-code"]', "zzzzzz");
  await fanPage.click('[data-testid="pair-submit"]');
  await waitFor("bad code shows detail", async () => { const t = await text(fanPage, "pair-result"); return t && !t.startsWith("Pairing") && !t.startsWith("Paired") && t; });
  await fanPage.fill('[data-testid="pair-code"]', code.toLowerCase());
  await fanPage.click('[data-testid="pair-submit"]');
  await waitFor("pair success", async () => (await text(fanPage, "pair-result")).startsWith("Paired"));
  await waitFor("watch following", async () => (await text(watch, "watch-state")) === "following", 10000);
  await waitFor("watch step label", async () => (await text(watch, "watch-step")) === "Boil");
  await waitFor("watch countdown", async () => /^\d+:\d\d$/.test(await text(watch, "watch-countdown")));
  check("watch token stored", await watch.evaluate(() => Boolean(JSON.parse(localStorage.getItem("simmer.watch")).device_token)));
  await watch.evaluate(() => window.sockets.at(-1).close());
  await waitFor("watch reconnects", async () => (await watch.evaluate(() => window.sockets.length)) >= 2 && (await text(watch, "watch-state")) === "following", 10000);
  await watch.reload();
  await waitFor("watch follows after reload", async () => (await text(watch, "watch-state")) === "following" && (await text(watch, "watch-step")) === "Boil");
  // Next step has 3 s: expect an alert.
  await call("POST", `/sessions/${session.id}/timer`, { action: "next" }, host.access_token);
  await waitFor("viewer current step moves", async () => (await text(guest, "current-step")).includes("Cook the pasta"));
  await waitFor("watch step Cook", async () => (await text(watch, "watch-step")) === "Cook");
  await waitFor("watch alert flash", () => watch.evaluate(() => document.querySelector('[data-testid="watch-face"]').classList.contains("alert")), 8000);
  await waitFor("viewer countdown 0:00", async () => (await text(guest, "countdown")) === "0:00");
  await waitFor("watch alert ends", () => watch.evaluate(() => !document.querySelector('[data-testid="watch-face"]').classList.contains("alert")), 4000);

  // A watch whose WebSocket cannot connect falls back to SSE.
  const sseWatch = await newPage("sse-watch");
  await sseWatch.addInitScript(() => {
    const Real = window.WebSocket;
    window.WebSocket = class extends Real { constructor(url, p) { super(url.replace("/watch/ws", "/watch/nope"), p); } };
  });
  await sseWatch.goto(`${BASE}/watch`);
  const code2 = await waitFor("sse watch code", async () => { const c = (await text(sseWatch, "watch-code")).trim(); return /^[A-Z0-9]{6}$/.test(c) && c; });
  await fanPage.fill('[data-testid="pair-code"]', code2);
  await fanPage.click('[data-testid="pair-submit"]');
  await waitFor("sse watch following", async () => (await text(sseWatch, "watch-state")) === "following", 15000);
  await waitFor("sse watch step", async () => (await text(sseWatch, "watch-step")) === "Cook");
  await call("POST", `/sessions/${session.id}/timer`, { action: "previous" }, host.access_token);
  await waitFor("sse watch follows timer", async () => (await text(sseWatch, "watch-step")) === "Boil" && /^0:5\d|1:00$/.test(await text(sseWatch, "watch-countdown")));
  // Revoking a watch sends it back to pairing.
  const devices = await call("GET", "/watch/devices", null, fan.access_token);
  const sseDevice = await sseWatch.evaluate(() => JSON.parse(localStorage.getItem("simmer.watch")).device_id);
  await call("DELETE", `/watch/devices/${sseDevice}`, null, fan.access_token);
  await waitFor("revoked watch pairs again", async () => (await text(sseWatch, "watch-state")) === "pairing" && /^[A-Z0-9]{6}$/.test((await text(sseWatch, "watch-code")).trim()), 10000);
  await sseWatch.screenshot({ path: `${SHOTS}/viewer-e2e-watch-pairing.png` });
  check("revoked token forgotten", await sseWatch.evaluate(() => localStorage.getItem("simmer.watch") === null));
  check("new-code button hidden while pairing", !(await sseWatch.locator('[data-testid="watch-new-code"]').isVisible()));
  await call("POST", `/sessions/${session.id}/timer`, { action: "next" }, host.access_token);

  // A guest whose pass expires while the page is open is offered to join
  // again at the next reconnect (instead of retrying a refused token).
  const late = await newPage("late-guest");
  await late.addInitScript(() => {
    const Real = window.WebSocket;
    window.sockets = [];
    window.WebSocket = class extends Real { constructor(...a) { super(...a); window.sockets.push(this); } };
  });
  await late.goto(`${BASE}/s/${session.id}`);
  await late.fill('[data-testid="guest-name"]', "Late Guest");
  await late.click('[data-testid="guest-join"]');
  await waitFor("a second guest joins", () => late.locator('[data-testid="chat-input"]').isEnabled(), 15000);
  await late.evaluate((sid) => {
    const key = `simmer.guest.${sid}`;
    const pass = JSON.parse(localStorage.getItem(key));
    localStorage.setItem(key, JSON.stringify({ ...pass, expires_at_ms: Date.now() - 1000 }));
    window.sockets.at(-1).close();
  }, session.id);
  await waitFor("an expired guest pass brings the guest form back",
    () => late.locator('[data-testid="guest-name"]').isVisible(), 10000);
  check("and the chat is closed to it", !(await late.locator('[data-testid="chat-input"]').isEnabled()));

  // End the session.
  await call("POST", `/sessions/${session.id}/end`, {}, host.access_token);
  await waitFor("viewer ended", async () => (await text(guest, "video-state")) === "ended" && (await text(guest, "session-state")) === "ended");
  check("ended banner", await guest.locator("text=This session has ended").first().isVisible());
  check("pc dropped", await guest.evaluate(() => window.simmerViewer.pc === null));
  await waitFor("watch ended", async () => (await text(watch, "watch-state")) === "ended");
  await guest.reload();
  await waitFor("reload of ended session shows ended", async () => (await text(guest, "video-state")) === "ended");
  await waitFor("history after reload of ended session", async () => (await text(guest, "chat-list")).includes("welcome!"));
  check("watch buttons: only forget", !(await watch.locator('[data-testid="watch-new-code"]').isVisible()) && await watch.locator('[data-testid="watch-unpair"]').isVisible());

  for (const bad of ["00000000-0000-7000-8000-000000000000", "not-a-uuid"]) {
    await guest.goto(`${BASE}/s/${bad}`);
    await waitFor(`unknown session ${bad}`, async () => (await text(guest, "session-title")) === "There is no such session.");
  }
  await guest.goto(`${BASE}/s/${session.id}`);
  await waitFor("back on the ended session", async () => (await text(guest, "video-state")) === "ended");
  await guest.setViewportSize({ width: 375, height: 800 });
  await guest.screenshot({ path: `${SHOTS}/viewer-e2e-phone.png`, fullPage: true });
  await fanPage.setViewportSize({ width: 1200, height: 900 });
  await fanPage.screenshot({ path: `${SHOTS}/viewer-e2e-wide.png`, fullPage: true });
  await watch.screenshot({ path: `${SHOTS}/viewer-e2e-watch.png` });
} catch (e) {
  check("viewer e2e run", false, e.stack || e);
}
if (failed) {
  for (const { label, page } of pages) {
    await page.screenshot({ path: `${SHOTS}/viewer-e2e-failed-${label}.png`, fullPage: true }).catch(() => {});
  }
  console.log(`screenshots in ${SHOTS}`);
}
if (failed) for (const e of errors) console.log("page error:", e);
await browser.close();
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
