// The whole product in headless Chromium, as people use it: a host signs up
// on the dashboard, writes a recipe, creates a session and goes live with the
// fake camera; a viewer (another browser context) opens the viewer page and
// decodes the video; chat sent from each side shows on the other within a
// second; a watch simulator paired through the viewer page follows the timer
// the host starts, showing the same step and countdown as the viewer page
// (within a second); the host ends the session and every page shows it.
// Screenshots of every page go to $SIMMER_SCREENSHOTS when a check fails,
// and of the dashboard and viewer page when all pass (the README's).
// Runs inside a private network namespace (scripts/browser.sh e2e.mjs).
// Usage: node e2e.mjs BASE_URL
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { launchChromium } from "./chromium.mjs";

// Evaluated through the DevTools protocol, not added as an inline <script>:
// the pages' Content-Security-Policy (rightly) blocks inline scripts, and the
// audit must not need the policy weakened or bypassed.
const AXE = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");

const BASE = process.argv[2].replace(/\/$/, "");
const SHOTS = process.env.SIMMER_SCREENSHOTS || "/tmp";
let passed = 0;
let failed = 0;
function check(name, ok, detail = "") {
  if (ok) passed++;
  else failed++;
  console.log(`${ok ? "ok  " : "FAIL"} ${name} ${ok ? "" : detail}`);
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `fn` until it returns something truthy; returns it (or the last value). */
async function waitFor(fn, ms = 10000, every = 50) {
  const until = Date.now() + ms;
  let last;
  while (Date.now() < until) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    await sleep(every);
  }
  return last;
}

/** Seconds of an "m:ss" countdown. */
function seconds(text) {
  const m = /^(\d+):(\d\d)$/.exec((text || "").trim());
  return m ? Number(m[1]) * 60 + Number(m[2]) : NaN;
}

const browser = await launchChromium();
const pages = [];
const logs = [];
async function open(label) {
  const context = await browser.newContext({ viewport: { width: 1200, height: 900 } });
  const page = await context.newPage();
  page.on("pageerror", (e) => logs.push(`${label}: ${e.message}`));
  page.on("console", (m) => m.type() === "error" && logs.push(`${label} console: ${m.text()}`));
  pages.push({ label, page });
  return page;
}
const id = (page, testId) => page.getByTestId(testId);
const text = async (page, testId) => ((await id(page, testId).first().textContent()) || "").trim();

/** Runs axe-core's WCAG 2 A and AA rules on the page as it is now. */
async function audit(page, what) {
  if (!(await page.evaluate(() => Boolean(window.axe)))) await page.evaluate(AXE);
  const result = await page.evaluate(() =>
    window.axe.run(document, { runOnly: { type: "tag", values: ["wcag2a", "wcag2aa"] } }));
  const serious = result.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  check(`${what}: no serious accessibility violations (axe, WCAG 2 A/AA)`, serious.length === 0,
    serious.map((v) => `${v.id} x${v.nodes.length} at ${v.nodes[0]?.target}`).join("; "));
}

/** Tabs through the page until `testId` has the focus (as a keyboard user). */
async function tabTo(page, testId, presses = 60) {
  for (let i = 0; i < presses; i++) {
    if (await page.evaluate((t) => document.activeElement?.dataset?.testid === t, testId)) return true;
    await page.keyboard.press("Tab");
  }
  return false;
}

/** Video frames the page's peer connection decoded so far. */
function framesDecoded(page, handle) {
  return page.evaluate(async (name) => {
    const pc = window[name]?.pc;
    if (!pc) return 0;
    let frames = 0;
    (await pc.getStats()).forEach((s) => {
      if (s.type === "inbound-rtp" && s.kind === "video") frames = s.framesDecoded || 0;
    });
    return frames;
  }, handle);
}

try {
  // The host: sign up, a recipe, a session, go live.
  const host = await open("host");
  await host.goto(`${BASE}/`);
  await id(host, "signup-username").waitFor();
  await audit(host, "sign-up page");
  const name = "chef" + Math.random().toString(36).slice(2, 10);
  await id(host, "signup-username").fill(name);
  await id(host, "signup-password").fill("host-password-1");
  await id(host, "signup-display-name").fill("Chef Ana");
  await id(host, "signup-submit").click();
  await id(host, "signout").waitFor();
  check("the host signs up on the dashboard", true);

  await id(host, "new-recipe").click();
  await id(host, "recipe-title").fill("Tomato soup");
  await id(host, "step-text").nth(0).fill("Chop the tomatoes");
  await id(host, "step-duration").nth(0).fill("2:00");
  await id(host, "step-label").nth(0).fill("Chop");
  await id(host, "add-step").click();
  await id(host, "step-text").nth(1).fill("Simmer gently");
  await id(host, "step-duration").nth(1).fill("600");
  await id(host, "step-label").nth(1).fill("Simmer");
  await audit(host, "recipe editor");
  await id(host, "recipe-save").click();
  await host.waitForURL(/#\/recipes\/[0-9a-f-]+$/);
  check("the host saves a recipe", true);

  await id(host, "new-session").click();
  await id(host, "session-title").fill("Soup night");
  await id(host, "session-create").click();
  await host.waitForURL(/#\/sessions\/[0-9a-f-]+$/);
  const sessionId = host.url().split("/").pop();
  check("the host creates a session", (await text(host, "live-state")) === "scheduled", await text(host, "live-state"));

  await waitFor(() => host.evaluate(() => document.querySelector('[data-testid="preview"]').videoWidth > 0));
  await id(host, "go-live").click();
  const live = await waitFor(async () => (await text(host, "live-state")) === "publishing", 20000);
  check("the host goes live with the camera (WHIP)", live === true, await text(host, "live-state"));

  // A viewer with an account opens the viewer page.
  const viewer = await open("viewer");
  await viewer.goto(`${BASE}/live`);
  const listed = await waitFor(async () => (await text(viewer, "live-list")).includes("Soup night"));
  check("/live lists the session", listed === true, await text(viewer, "live-list"));
  await audit(viewer, "live sessions page");
  await viewer.evaluate(async () => {
    const { auth } = await import("/assets/js/api.js");
    await auth.register("fan" + Math.random().toString(36).slice(2, 10), "viewer-password-1", "Fan");
  });
  await viewer.goto(`${BASE}/s/${sessionId}`);
  const playing = await waitFor(async () => (await framesDecoded(viewer, "simmerViewer")) > 20, 20000, 200);
  check("the viewer page decodes the host's video (WHEP)", playing === true, String(playing));
  const more = await framesDecoded(viewer, "simmerViewer");
  const growing = await waitFor(async () => (await framesDecoded(viewer, "simmerViewer")) > more + 10, 5000, 200);
  check("its decoded frames keep growing", growing === true);
  const viewers = await waitFor(async () => (await text(host, "viewer-count")) === "1");
  check("the dashboard counts the viewer", viewers === true, await text(host, "viewer-count"));

  // Chat both ways, each within a second.
  await waitFor(() => id(viewer, "chat-input").isEnabled());
  await id(host, "chat-input").fill("Welcome to soup night!");
  let sent = Date.now();
  await id(host, "chat-send").click();
  let shown = await waitFor(async () => (await text(viewer, "chat-list")).includes("Welcome to soup night!"), 5000, 20);
  let took = Date.now() - sent;
  check("the host's message shows on the viewer page within 1 s", shown === true && took <= 1000, `${took} ms`);
  // The viewer uses the keyboard only: Tab to the message box, type, Enter.
  check("the viewer reaches the message box with Tab", await tabTo(viewer, "chat-input"));
  await viewer.keyboard.type("Smells great from here");
  sent = Date.now();
  await viewer.keyboard.press("Enter");
  shown = await waitFor(async () => (await text(host, "chat-list")).includes("Smells great from here"), 5000, 20);
  took = Date.now() - sent;
  check("the viewer's message shows on the dashboard within 1 s", shown === true && took <= 1000, `${took} ms`);

  // A watch, paired through the viewer page.
  const watch = await open("watch");
  await watch.setViewportSize({ width: 320, height: 360 });
  await watch.goto(`${BASE}/watch`);
  const code = await waitFor(async () => {
    const c = await text(watch, "watch-code");
    return /^[A-Z0-9]{6}$/.test(c) && c;
  });
  check("the watch simulator shows a pairing code", typeof code === "string", String(code));
  await id(viewer, "pair-code").fill(code);
  await id(viewer, "pair-submit").click();
  const following = await waitFor(async () => (await text(watch, "watch-state")) === "following");
  check("paired through the viewer page, the watch follows the session", following === true, await text(watch, "watch-state"));

  // The host starts the timer: the same step and countdown everywhere.
  await id(host, "timer-start").click();
  const stepShown = await waitFor(async () =>
    (await text(viewer, "current-step")).includes("Chop the tomatoes") && (await text(watch, "watch-step")) === "Chop");
  check("the viewer page and the watch show the step the host started", stepShown === true,
    `${await text(viewer, "current-step")} / ${await text(watch, "watch-step")}`);
  await sleep(1500);
  const [onViewer, onWatch, onHost] = await Promise.all([
    text(viewer, "countdown"), text(watch, "watch-countdown"), text(host, "countdown"),
  ]);
  const apart = Math.abs(seconds(onViewer) - seconds(onWatch));
  check("viewer page and watch countdowns agree within 1 s", apart <= 1 && seconds(onViewer) > 100,
    `viewer ${onViewer}, watch ${onWatch}, host ${onHost}`);
  check("and the dashboard's too", Math.abs(seconds(onViewer) - seconds(onHost)) <= 1, `host ${onHost}`);
  await audit(host, "live room (dashboard)");
  await audit(viewer, "viewer page");
  await audit(watch, "watch simulator");
  // Readable on a phone: at 375 px nothing needs sideways scrolling.
  for (const [page, what] of [[host, "live room"], [viewer, "viewer page"]]) {
    await page.setViewportSize({ width: 375, height: 800 });
    const wide = await page.evaluate(() => document.documentElement.scrollWidth);
    check(`the ${what} fits a 375 px phone screen`, wide <= 376, `${wide} px wide`);
    await page.setViewportSize({ width: 1200, height: 900 });
  }
  await id(host, "timer-next").click();
  const nextShown = await waitFor(async () =>
    (await text(viewer, "current-step")).includes("Simmer gently") && (await text(watch, "watch-step")) === "Simmer");
  check("the next step reaches the viewer page and the watch", nextShown === true);

  for (const [page, file] of [[viewer, "viewer-page"], [host, "dashboard"], [watch, "watch-simulator"]]) {
    await page.evaluate(() => window.scrollTo(0, 0));
    await page.screenshot({ path: `${SHOTS}/${file}.png`, fullPage: true });
  }

  // The host ends the session (and confirms it).
  let asked = "";
  host.once("dialog", (dialog) => {
    asked = dialog.message();
    dialog.accept();
  });
  await id(host, "end-session").click();
  const ended = await waitFor(async () =>
    (await text(host, "live-state")) === "ended" &&
    (await text(viewer, "session-state")) === "ended" &&
    (await text(viewer, "video-state")) === "ended" &&
    (await text(watch, "watch-state")) === "ended");
  check("ending the session shows on the dashboard, the viewer page and the watch", ended === true,
    [await text(host, "live-state"), await text(viewer, "session-state"), await text(watch, "watch-state")].join(" / "));
  check("the host was asked to confirm the end first", asked.startsWith("End this session"), asked);
} catch (e) {
  check("end-to-end run", false, e.stack || String(e));
} finally {
  if (failed) {
    for (const { label, page } of pages) {
      await page.screenshot({ path: `${SHOTS}/e2e-failed-${label}.png`, fullPage: true }).catch(() => {});
    }
    console.log(logs.join("\n"));
    console.log(`screenshots in ${SHOTS}`);
  }
  await browser.close();
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
