// The host dashboard (/) in detail, in headless Chromium with a fake camera:
// sign-up errors, the recipe editor (durations, reorder, delete, server
// errors, PUT), a session's room (preview, go live over WHIP, viewer count,
// chat delete and mute, every timer control, media health), recovery (a /ws
// blip resumes chat without gaps, a `media reconnect` frame and a lost WHIP
// connection republish, a reload while live), ending, sign out and in.
// A viewer here is a plain /ws client; the viewer page has its own suite.
// Runs inside a private network namespace (scripts/browser.sh e2e-dashboard.mjs).
// Usage: node e2e-dashboard.mjs BASE_URL
import { launchChromium } from "./chromium.mjs";

const BASE = process.argv[2].replace(/\/$/, "");
const SHOTS = process.env.SIMMER_SCREENSHOTS || "/tmp";
let passed = 0;
let failed = 0;
function check(name, ok, detail = "") {
  console.log(`${ok ? "ok  " : "FAIL"} ${name} ${ok ? "" : detail}`);
  if (ok) passed++;
  else failed++;
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function waitFor(fn, ms = 10000) {
  const until = Date.now() + ms;
  let last;
  while (Date.now() < until) {
    try { last = await fn(); if (last) return last; } catch (e) { last = e; }
    await sleep(200);
  }
  return last;
}

const browser = await launchChromium();
const ctx = await browser.newContext({ viewport: { width: 1200, height: 900 } });
const page = await ctx.newPage();
const logs = [];
page.on("console", (m) => logs.push(`[${m.type()}] ${m.text()}`));
page.on("response", (r) => r.status() >= 400 && logs.push(`[http] ${r.status()} ${r.request().method()} ${r.url()} ${Date.now() % 100000}`));
page.on("pageerror", (e) => logs.push(`[pageerror] ${e.message}`));
const t = (id) => page.getByTestId(id);
await page.addInitScript(() => {
  const Native = window.WebSocket;
  window.__sockets = [];
  window.WebSocket = class extends Native {
    constructor(...args) { super(...args); window.__sockets.push(this); }
  };
});

try {
  await page.goto(BASE + "/");
  const user = "host" + Math.random().toString(36).slice(2, 8);
  await t("signup-username").fill(user);
  await t("signup-password").fill("short");
  await t("signup-submit").click();
  await waitFor(() => page.locator('[data-testid="signup-error"]:visible').count());
  check("signup error shown", await t("signup-error").isVisible(), await t("signup-error").textContent());
  console.log("   signup error:", await t("signup-error").textContent());
  await t("signup-password").fill("password123");
  await t("signup-display-name").fill("Chef Host");
  await t("signup-submit").click();
  await t("signout").waitFor();
  check("signed up", true);
  await t("new-recipe").click();
  await t("recipe-title").fill("Pancakes");
  await t("recipe-description").fill("Fluffy");
  await t("step-text").nth(0).fill("Whisk");
  await t("step-duration").nth(0).fill("1:00");
  await t("add-step").click();
  await t("step-text").nth(1).fill("Cook");
  await t("step-duration").nth(1).fill("90");
  await t("step-label").nth(1).fill("Cook");
  await t("add-step").click();
  await t("step-text").nth(2).fill("Serve");
  await t("add-step").click();
  await t("step-text").nth(3).fill("Trash me");
  await t("step-delete").nth(3).click();
  await t("step-up").nth(2).click(); // Serve before Cook
  await t("step-down").nth(1).click(); // Serve back after Cook
  await t("step-duration").nth(0).fill("abc");
  await t("recipe-save").click();
  await page.setViewportSize({ width: 380, height: 800 });
  await page.screenshot({ path: `${SHOTS}/dashboard-editor.png`, fullPage: true });
  await page.setViewportSize({ width: 1200, height: 900 });
  check("bad duration refused", (await t("recipe-error").textContent()).includes("Step 1"), await t("recipe-error").textContent());
  await t("step-duration").nth(0).fill("1:00");
  await t("recipe-title").fill("");
  await t("recipe-save").click();
  await waitFor(() => t("recipe-error").isVisible());
  console.log("   server error:", await t("recipe-error").textContent());
  await t("recipe-title").fill("Pancakes");
  await t("recipe-save").click();
  await page.waitForURL(/#\/recipes\/[0-9a-f-]+$/);
  const recipeId = page.url().split("/").pop();
  const recipe = await page.evaluate(async (id) => (await fetch(`/api/v1/recipes/${id}`)).json(), recipeId);
  check("recipe saved", JSON.stringify(recipe.steps.map((s) => [s.text, s.duration_s ?? null, s.label ?? null])) ===
    JSON.stringify([["Whisk", 60, null], ["Cook", 90, "Cook"], ["Serve", null, null]]), JSON.stringify(recipe.steps));
  check("edit form loaded", (await t("step-duration").nth(1).inputValue()) === "1:30");
  await t("recipe-description").fill("Very fluffy");
  await t("recipe-save").click();
  await waitFor(async () => (await t("recipe-status").textContent()) === "Saved.");
  check("PUT saved", (await t("recipe-status").textContent()) === "Saved.");

  await t("new-session").click();
  await t("session-title").fill("Pancake night");
  await t("session-create").click();
  await page.waitForURL(/#\/sessions\/[0-9a-f-]+$/);
  const sessionId = page.url().split("/").pop();
  check("live-state scheduled", (await t("live-state").textContent()) === "scheduled", await t("live-state").textContent());
  const previewOk = await waitFor(() => page.evaluate(() => document.querySelector('[data-testid="preview"]').videoWidth > 0));
  check("preview plays", previewOk === true);
  check("camera options", (await t("camera-select").locator("option").count()) > 0);
  check("viewer link", (await t("viewer-link").getAttribute("href")).endsWith(`/s/${sessionId}`));

  await t("go-live").click();
  const pub = await waitFor(async () => (await t("live-state").textContent()) === "publishing", 15000);
  check("publishing", pub === true, await t("live-state").textContent());
  check("pc connected", (await page.evaluate(() => window.simmerHost.pc?.connectionState)) === "connected");

  // A viewer over /ws from another page.
  const token = await page.evaluate(() => JSON.parse(localStorage.getItem("simmer.auth")).access_token);
  const viewer = await (await browser.newContext()).newPage();
  await viewer.goto(BASE + "/healthz");
  const vtok = await viewer.evaluate(async () => {
    const r = await fetch("/api/v1/auth/register", { method: "POST", headers: { "content-type": "application/json" },
      body: JSON.stringify({ username: "v" + Math.random().toString(36).slice(2, 8), password: "password123", display_name: "Vera" }) });
    return (await r.json()).access_token;
  });
  await viewer.evaluate(async ([tok, sid]) => {
    window.frames_ = [];
    const ws = window.ws = new WebSocket(`ws://${location.host}/ws?token=${tok}`);
    ws.onmessage = (e) => window.frames_.push(JSON.parse(e.data));
    await new Promise((r) => (ws.onopen = r));
    ws.send(JSON.stringify({ type: "join", session_id: sid, ref: 1 }));
    await new Promise((r) => setTimeout(r, 300));
    ws.send(JSON.stringify({ type: "chat.send", session_id: sid, text: "hello chef", client_msg_id: "m1", ref: 2 }));
    ws.send(JSON.stringify({ type: "chat.send", session_id: sid, text: "second", client_msg_id: "m2", ref: 3 }));
  }, [vtok, sessionId]);
  const count = await waitFor(async () => (await t("viewer-count").textContent()) === "1");
  check("viewer count 1", count === true, await t("viewer-count").textContent());
  await waitFor(async () => (await t("chat-list").locator("li").count()) >= 2);
  check("chat received", (await t("chat-list").textContent()).includes("hello chef"), await t("chat-list").textContent());
  await t("chat-input").fill("welcome!");
  await t("chat-send").click();
  await waitFor(async () => (await t("chat-list").textContent()).includes("welcome!"));
  check("host chat sent", (await t("chat-list").locator("li").count()) === 3, await t("chat-list").textContent());
  await t("chat-delete").first().click();
  const del = await waitFor(() => viewer.evaluate(() => window.frames_.some((f) => f.type === "chat.deleted")));
  check("delete reached viewer", del === true);
  // The host's page hears it on its own socket, not always before the viewer.
  const shown = await waitFor(async () => (await t("chat-list").textContent()).includes("message deleted"));
  check("deleted shown", shown === true, await t("chat-list").textContent());
  await t("chat-mute").first().click();
  await waitFor(async () => (await t("chat-status").textContent()).includes("muted"));
  check("muted status", (await t("chat-status").textContent()).includes("Vera"), await t("chat-status").textContent());
  const muted = await viewer.evaluate(async (sid) => {
    window.ws.send(JSON.stringify({ type: "chat.send", session_id: sid, text: "x", client_msg_id: "m3", ref: 9 }));
    await new Promise((r) => setTimeout(r, 500));
    return window.frames_.find((f) => f.ref === 9);
  }, sessionId);
  check("mute applied", muted?.error?.code === "forbidden", JSON.stringify(muted));

  // Timer
  await t("timer-start").click();
  await waitFor(async () => (await t("current-step").textContent()).startsWith("Step 1 of 3"));
  check("current step", (await t("current-step").textContent()).includes("Whisk"), await t("current-step").textContent());
  const c1 = await t("countdown").textContent();
  await sleep(1300);
  const c2 = await t("countdown").textContent();
  check("countdown ticks", c1 !== c2 && /^\d+:\d\d$/.test(c2), `${c1} ${c2}`);
  await t("timer-plus30").click();
  await waitFor(async () => (await t("countdown").textContent()).startsWith("1:2"));
  check("plus30", (await t("countdown").textContent()).startsWith("1:2"), await t("countdown").textContent());
  await t("timer-minus30").click();
  await waitFor(async () => (await t("countdown").textContent()).startsWith("0:5"));
  check("minus30", (await t("countdown").textContent()).startsWith("0:5"), await t("countdown").textContent());
  await t("timer-pause").click();
  await waitFor(async () => (await t("timer-state").textContent()) === "paused");
  const p1 = await t("countdown").textContent(); await sleep(1200);
  check("paused holds", p1 === (await t("countdown").textContent()));
  await t("timer-resume").click();
  await waitFor(async () => (await t("timer-state").textContent()) === "running");
  await t("timer-next").click();
  await waitFor(async () => (await t("current-step").textContent()).includes("Cook"));
  check("next", (await t("current-step").textContent()).startsWith("Step 2 of 3 — Cook: Cook"), await t("current-step").textContent());
  await t("timer-previous").click();
  await waitFor(async () => (await t("current-step").textContent()).includes("Whisk"));
  check("previous", (await t("current-step").textContent()).includes("Step 1"));
  const vtimer = await viewer.evaluate(() => window.frames_.filter((f) => f.type === "timer").length);
  check("viewer got timer frames", vtimer >= 6, String(vtimer));

  await page.screenshot({ path: `${SHOTS}/dashboard-room.png`, fullPage: true });
  const mics = await t("mic-select").locator("option").count();
  console.log("   mics:", mics, await t("mic-select").textContent());
  if (mics > 1) {
    const value = await t("mic-select").locator("option").nth(1).getAttribute("value");
    await t("mic-select").selectOption(value);
    const swapped = await waitFor(() => page.evaluate(() => {
      const v = document.querySelector('[data-testid="preview"]');
      const track = v.srcObject.getAudioTracks()[0];
      const sender = window.simmerHost.pc.getSenders().find((s) => s.track && s.track.kind === "audio");
      return sender && sender.track === track && v.srcObject.getAudioTracks().length === 1;
    }));
    check("mic switched on the live pc", swapped === true);
    check("mic select shows choice", (await t("mic-select").inputValue()) === value);
  }
  // A /ws blip: messages sent meanwhile arrive once, in order.
  const before = await t("chat-list").locator("li").count();
  await page.evaluate(() => window.__sockets.at(-1).close());
  await viewer.evaluate((sid) => {
    window.ws.send(JSON.stringify({ type: "leave", session_id: sid, ref: 20 }));
  }, sessionId);
  await page.evaluate(async ([tok, sid]) => {
    for (const text of ["blip one", "blip two"]) {
      await fetch(`/api/v1/sessions/${sid}/messages`, { method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${tok}` }, body: JSON.stringify({ text }) });
    }
  }, [token, sessionId]);
  const resumed = await waitFor(async () => (await t("chat-list").locator("li").count()) === before + 2, 8000);
  check("chat resumed after blip", resumed === true, await t("chat-list").textContent());
  await sleep(500);
  const seqs = await t("chat-list").locator("li").evaluateAll((ls) => ls.map((l) => Number(l.dataset.seq)));
  check("no gaps or repeats", seqs.every((s, i) => s === i + 1), JSON.stringify(seqs));
  const viewersBack = await waitFor(async () => (await t("viewer-count").textContent()) === "0");
  check("presence after blip", viewersBack === true, await t("viewer-count").textContent());

  // The relay asks for a new publication.
  const pcBefore = await page.evaluate(() => { window.pcBefore = window.simmerHost.pc; return true; });
  await page.evaluate((sid) => {
    const sock = window.__sockets.at(-1);
    sock.onmessage({ data: JSON.stringify({ type: "media", session_id: sid, state: "reconnect" }) });
  }, sessionId);
  const renewed = await waitFor(async () => (await t("live-state").textContent()) === "publishing" &&
    await page.evaluate(() => window.simmerHost.pc !== window.pcBefore && window.simmerHost.pc.connectionState === "connected"), 15000);
  check("republished on media reconnect", renewed === true, await t("live-state").textContent());
  check("old pc closed", (await page.evaluate(() => window.pcBefore.connectionState)) === "closed");

  // Health
  const h = await waitFor(async () => (await t("media-publisher").textContent()) === "publishing" &&
    parseInt(await t("media-bitrate-in").textContent()) > 0, 8000);
  check("media health", h === true, await t("media-health").textContent());
  console.log("   health:", (await t("media-health").innerText()).replace(/\n/g, " | "));

  // Republish after the pc is lost
  logs.push(`[mark] close pc ${Date.now() % 100000}`);
  const pc1 = await page.evaluate(() => { window.oldPc = window.simmerHost.pc; window.simmerHost.pc.close(); window.simmerHost.pc.dispatchEvent(new Event('connectionstatechange')); return true; });
  const re = await waitFor(async () => (await t("live-state").textContent()) === "reconnecting", 3000);
  check("reconnecting shown", re === true, await t("live-state").textContent());
  const back = await waitFor(async () => (await t("live-state").textContent()) === "publishing" &&
    await page.evaluate(() => window.simmerHost.pc !== window.oldPc && window.simmerHost.pc.connectionState === "connected"), 15000);
  check("republished", back === true, await t("live-state").textContent());

  // Reload while live: chat history back, publish again
  logs.push(`[mark] reload ${Date.now() % 100000}`);
  await page.reload();
  await waitFor(async () => (await t("chat-list").locator("li").count()) === 5);
  check("history after reload", (await t("chat-list").locator("li").count()) === 5, await t("chat-list").textContent());
  check("state after reload", (await t("live-state").textContent()) === "not publishing", await t("live-state").textContent());
  check("timer after reload", (await t("current-step").textContent()).includes("Whisk"));
  await waitFor(() => page.evaluate(() => document.querySelector('[data-testid="preview"]').videoWidth > 0));
  await t("go-live").click();
  const pub2 = await waitFor(async () => (await t("live-state").textContent()) === "publishing", 15000);
  check("publish again", pub2 === true, await t("live-state").textContent());

  // Ending asks first: saying no changes nothing, saying yes ends it.
  const dialogs = [];
  page.once("dialog", (dialog) => { dialogs.push(dialog.message()); dialog.dismiss(); });
  await t("end-session").click();
  await waitFor(() => dialogs.length === 1, 3000);
  await sleep(500);
  check("end asks for confirmation", (dialogs[0] || "").startsWith("End this session"), JSON.stringify(dialogs));
  check("declined: still publishing", (await t("live-state").textContent()) === "publishing", await t("live-state").textContent());
  const stillLive = await page.evaluate(async (id) => (await (await fetch(`/api/v1/sessions/${id}`)).json()).state, sessionId);
  check("declined: the server says live", stillLive === "live", stillLive);
  page.once("dialog", (dialog) => { dialogs.push(dialog.message()); dialog.accept(); });
  await t("end-session").click();
  await waitFor(async () => (await t("live-state").textContent()) === "ended");
  check("ended", (await t("live-state").textContent()) === "ended");
  check("asked again, and accepted", dialogs.length === 2, JSON.stringify(dialogs));
  const st = await page.evaluate(async (id) => (await (await fetch(`/api/v1/sessions/${id}`)).json()).state, sessionId);
  check("server says ended", st === "ended", st);
  check("pc closed", (await page.evaluate(() => window.simmerHost.pc.connectionState)) === "closed");

  await page.goto(BASE + "/#/");
  await waitFor(async () => (await t("session-list").locator("a").count()) > 0);
  check("session listed", (await t("session-list").textContent()).includes("Pancake night"));
  check("recipe listed", (await t("recipe-list").textContent()).includes("Pancakes"));
  await page.setViewportSize({ width: 380, height: 800 });
  await page.goto(BASE + `/#/sessions/${sessionId}`);
  await t("live-state").waitFor();
  await waitFor(async () => (await t("chat-list").locator("li").count()) === 5);
  check("ended history", (await t("chat-list").locator("li").count()) === 5);
  await page.screenshot({ path: `${SHOTS}/dashboard-phone.png`, fullPage: true });
  await page.goto(BASE + `/#/recipes/${recipeId}`);
  await t("recipe-delete").click();
  await page.waitForURL(/#\/$/);
  check("recipe deleted", !(await t("recipe-list").textContent()).includes("Pancakes"));
  await t("signout").click();
  await t("signin-username").waitFor();
  await t("signin-username").fill(user);
  await t("signin-password").fill("password123");
  await t("signin-submit").click();
  await t("signout").waitFor();
  check("sign in again", true);
} catch (e) {
  check("dashboard e2e run", false, e.stack);
} finally {
  if (failed) {
    await page.screenshot({ path: `${SHOTS}/dashboard-e2e-failed.png`, fullPage: true }).catch(() => {});
    console.log(logs.join("\n"));
    console.log(`screenshots in ${SHOTS}`);
  }
  await browser.close();
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
}
