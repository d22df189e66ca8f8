// The README's browser tour ("In the browser") as a newcomer takes it, in
// headless Chromium against a real `simmer`, with one group of checks per
// thing such a newcomer ran into:
//   1. pairing a watch needs an account: a guest sees the button disabled
//      and "Sign in to pair a watch" next to it (and the server does refuse
//      a guest's claim);
//   2. signing up or in from the viewer page comes back to the session,
//      signed in, and `?next=` never leads off the site;
//   3. a visitor opening a live session sees it live and plays the video
//      without joining (no /ws, no chat), and is never told "not live yet";
//      a session without guests says to sign in to watch;
//   4. once ended (the button, a `session.ended` frame, or the REST state),
//      the dashboard and the viewer pages say "This session has ended" and
//      show nothing live: no viewers, no bitrate, a still countdown, no
//      "Reconnecting", no new connection;
//   5. "End session" asks first, and saying no changes nothing;
//   6. every page links an icon the server serves, and no request of any
//      page gets a 404.
// Runs inside a private network namespace (scripts/browser.sh e2e-newcomer.mjs).
// Usage: node e2e-newcomer.mjs BASE_URL
import { launchChromium } from "./chromium.mjs";
import { anyFailed, check, finish, sleep, waitFor } from "./harness.mjs";

const BASE = process.argv[2].replace(/\/$/, "");
const API = `${BASE}/api/v1`;
const SHOTS = process.env.SIMMER_SCREENSHOTS || "/tmp";


/** The REST API from outside the browser: [status, body]. */
async function rest(method, path, body, token) {
  const headers = {};
  if (body) headers["content-type"] = "application/json";
  if (token) headers.authorization = `Bearer ${token}`;
  const resp = await fetch(API + path, { method, headers, body: body ? JSON.stringify(body) : undefined });
  const text = await resp.text();
  return [resp.status, text ? JSON.parse(text) : null];
}
async function call(method, path, body, token) {
  const [status, data] = await rest(method, path, body, token);
  if (status >= 400) throw new Error(`${method} ${path}: ${status} ${JSON.stringify(data)}`);
  return data;
}
const unique = (prefix) => prefix + Math.random().toString(36).slice(2, 10);

const browser = await launchChromium();
const pages = [];
const notFound = []; // every 404 any page got, whatever the request
const logs = [];

/**
 * A page in its own browser context (its own storage), recording what a
 * check needs: requests, WebSockets opened, and every text the viewer
 * page's player said, from the first render on.
 */
async function open(label, context) {
  context ||= await browser.newContext({ viewport: { width: 1200, height: 900 } });
  const page = await context.newPage();
  const record = { label, page, requests: [] };
  pages.push(record);
  page.on("request", (r) => record.requests.push({ at: Date.now(), method: r.method(), path: new URL(r.url()).pathname }));
  page.on("response", (r) => {
    if (r.status() >= 400) logs.push(`${label}: ${r.status()} ${r.request().method()} ${r.url()}`);
    if (r.status() === 404) notFound.push(`${label}: ${r.request().method()} ${r.url()}`);
  });
  page.on("pageerror", (e) => logs.push(`${label} pageerror: ${e.message}`));
  page.on("console", (m) => m.type() === "error" && logs.push(`${label} console: ${m.text()}`));
  await page.addInitScript(() => {
    const Native = window.WebSocket;
    window.sockets = [];
    window.WebSocket = class extends Native {
      constructor(...args) {
        super(...args);
        window.sockets.push(this);
      }
    };
    window.playerMessages = [];
    new MutationObserver(() => {
      const said = document.getElementById("player-message")?.textContent;
      if (said && window.playerMessages.at(-1) !== said) window.playerMessages.push(said);
    }).observe(document, { childList: true, subtree: true, characterData: true });
  });
  return record;
}
const id = (page, testId) => page.getByTestId(testId);
const text = async (page, testId) => ((await id(page, testId).first().textContent()) || "").trim();
const requestsOf = (record, method, pathPart, since = 0) =>
  record.requests.filter((r) => r.method === method && r.path.includes(pathPart) && r.at >= since);
const sockets = (page) => page.evaluate(() => window.sockets.length);
const saidOnPlayer = (page) => page.evaluate(() => window.playerMessages);

/** Video frames the viewer page decoded so far. */
function framesDecoded(page) {
  return page.evaluate(async () => {
    const pc = window.simmerViewer?.pc;
    if (!pc) return 0;
    let frames = 0;
    (await pc.getStats()).forEach((s) => {
      if (s.type === "inbound-rtp" && s.kind === "video") frames = s.framesDecoded || 0;
    });
    return frames;
  });
}

/** Signs in on the dashboard's form (the page shows it). */
async function signIn(page, username, password) {
  await id(page, "signin-username").fill(username);
  await id(page, "signin-password").fill(password);
  await id(page, "signin-submit").click();
}

try {
  // The host's account, recipe and two sessions: one open to guests (the
  // dashboard's default), one for signed-in viewers only.
  const hostName = unique("chef");
  await call("POST", "/auth/register", { username: hostName, password: "host-password-1", display_name: "Chef Ana" });
  const fanName = unique("fan");
  await call("POST", "/auth/register", { username: fanName, password: "fan-password-1", display_name: "Fan" });
  const hostAuth = await call("POST", "/auth/login", { username: hostName, password: "host-password-1" });
  const recipe = await call("POST", "/recipes", { title: "Tomato soup", steps: [
    { text: "Chop the tomatoes", duration_s: 120, label: "Chop" },
    { text: "Simmer gently", duration_s: 600, label: "Simmer" },
  ] }, hostAuth.access_token);
  const open_ = await call("POST", "/sessions", { recipe_id: recipe.id, title: "Soup night", allow_guests: true }, hostAuth.access_token);
  const closed = await call("POST", "/sessions", { recipe_id: recipe.id, title: "Members' soup", allow_guests: false }, hostAuth.access_token);
  const viewerPath = `/s/${open_.id}`;

  // The host signs in on the dashboard and goes live with the camera.
  const host = await open("host");
  await host.page.goto(`${BASE}/`);
  await signIn(host.page, hostName, "host-password-1");
  await id(host.page, "signout").waitFor();
  await host.page.goto(`${BASE}/#/sessions/${open_.id}`);
  await waitFor(() => host.page.evaluate(() => document.querySelector('[data-testid="preview"]')?.videoWidth > 0));
  await id(host.page, "go-live").click();
  const publishing = await waitFor(async () => (await text(host.page, "live-state")) === "publishing", 20000);
  check("the host goes live and publishes", publishing === true, await text(host.page, "live-state"));

  // 3. A visitor opens the live session: live from the start, video without joining.
  const visitor = await open("visitor");
  await visitor.page.goto(`${BASE}${viewerPath}`);
  const playing = await waitFor(async () => (await text(visitor.page, "video-state")) === "live" &&
    (await framesDecoded(visitor.page)) > 10, 20000, 200);
  check("3. a visitor plays the live video without joining", playing === true,
    `${await text(visitor.page, "video-state")}, ${await framesDecoded(visitor.page)} frames`);
  check("3. the page says live", (await text(visitor.page, "session-state")) === "live", await text(visitor.page, "session-state"));
  let said = await saidOnPlayer(visitor.page);
  check("3. the visitor is never told the host is not live", !said.some((s) => s.includes("not live")), JSON.stringify(said));
  check("3. the overlay is gone while the video plays", !(await visitor.page.locator("#player-overlay").isVisible()));
  check("3. the visitor did not join: no /ws, chat closed, guest form offered",
    (await sockets(visitor.page)) === 0 && !(await id(visitor.page, "chat-input").isEnabled()) &&
    (await id(visitor.page, "guest-name").isVisible()));
  check("3. it watches on one guest token asked for silently, and reads the media state with it",
    requestsOf(visitor, "POST", "/guest-tokens").length === 1 && requestsOf(visitor, "GET", `/sessions/${open_.id}/media`).length >= 1,
    JSON.stringify(visitor.requests.map((r) => `${r.method} ${r.path}`)));
  await visitor.page.reload();
  const again = await waitFor(async () => (await framesDecoded(visitor.page)) > 10, 20000, 200);
  check("3. after a reload it plays again on the same pass (no new token)",
    again === true && requestsOf(visitor, "POST", "/guest-tokens").length === 1);

  // 3. A session without guests: the visitor is told to sign in to watch.
  await call("POST", `/sessions/${closed.id}/start`, {}, hostAuth.access_token);
  const outsider = await open("outsider");
  await outsider.page.goto(`${BASE}/s/${closed.id}`);
  const locked = await waitFor(async () => (await text(outsider.page, "video-state")) === "sign in to watch");
  check("3. a live session without guests says to sign in to watch", locked === true &&
    (await text(outsider.page, "player-message")).includes("sign in to watch"), await text(outsider.page, "player-message"));
  said = await saidOnPlayer(outsider.page);
  check("3. ... and never that the host is not live", !said.some((s) => s.includes("not live")), JSON.stringify(said));
  check("3. ... asks for no guest token and offers no guest form",
    requestsOf(outsider, "POST", "/guest-tokens").length === 0 && !(await id(outsider.page, "guest-name").isVisible()));

  // 1. A guest cannot pair a watch, and the page says so next to the button.
  const newcomer = await open("newcomer");
  await newcomer.page.goto(`${BASE}${viewerPath}`);
  await id(newcomer.page, "guest-name").fill("Newcomer");
  await id(newcomer.page, "guest-join").click();
  const chatting = await waitFor(() => id(newcomer.page, "chat-input").isEnabled(), 15000);
  check("1. the newcomer joins as a guest", chatting === true);
  check("1. Pair is disabled for a guest", await id(newcomer.page, "pair-submit").isDisabled() &&
    await id(newcomer.page, "pair-code").isDisabled());
  check("1. next to it: \"Sign in to pair a watch\"", await id(newcomer.page, "pair-hint").isVisible() &&
    (await text(newcomer.page, "pair-hint")).startsWith("Sign in to pair a watch"), await text(newcomer.page, "pair-hint"));
  const pairSignIn = await id(newcomer.page, "pair-sign-in").getAttribute("href");
  check("1. its link signs in and comes back here", pairSignIn === `/?next=${encodeURIComponent(viewerPath)}`, pairSignIn);
  const guestToken = await newcomer.page.evaluate((sid) => JSON.parse(localStorage.getItem(`simmer.guest.${sid}`)).access_token, open_.id);
  const pairing = await call("POST", "/watch/pairings", {});
  const [claimStatus] = await rest("POST", "/watch/pairings/claim", { code: pairing.code, session_id: open_.id }, guestToken);
  check("1. the server refuses a guest's claim (what the page says is true)", claimStatus === 403, String(claimStatus));

  // 2. Signing up from the viewer page comes back to the session, signed in.
  await id(newcomer.page, "sign-in").click();
  await newcomer.page.waitForURL((url) => url.pathname === "/" && url.searchParams.get("next") === viewerPath);
  check("2. Sign in leads to the sign-in page with next=/s/{id}", true);
  check("2. which says the newcomer comes back", (await text(newcomer.page, "signin-why")).includes("go back"),
    await text(newcomer.page, "signin-why"));
  const newName = unique("new");
  await id(newcomer.page, "signup-username").fill(newName);
  await id(newcomer.page, "signup-password").fill("newcomer-password-1");
  await id(newcomer.page, "signup-display-name").fill("Newbie");
  await id(newcomer.page, "signup-submit").click();
  const back = await waitFor(() => new URL(newcomer.page.url()).pathname === viewerPath);
  check("2. signing up returns to the same session page", back === true, newcomer.page.url());
  const signedIn = await waitFor(async () => (await text(newcomer.page, "who")) === "Signed in as Newbie" &&
    (await id(newcomer.page, "chat-input").isEnabled()));
  check("2. ... signed in, chatting as the new account", signedIn === true, await text(newcomer.page, "who"));
  check("2. ... and now it may pair a watch", await id(newcomer.page, "pair-submit").isEnabled() &&
    !(await id(newcomer.page, "pair-hint").isVisible()));

  // The README's step 5: a watch paired from the viewer page.
  const watch = await open("watch");
  await watch.page.setViewportSize({ width: 320, height: 360 });
  await watch.page.goto(`${BASE}/watch`);
  const code = await waitFor(async () => {
    const shown = await text(watch.page, "watch-code");
    return /^[A-Z0-9]{6}$/.test(shown) && shown;
  });
  await id(newcomer.page, "pair-code").fill(String(code));
  await id(newcomer.page, "pair-submit").click();
  const paired = await waitFor(async () => (await text(newcomer.page, "pair-result")).startsWith("Paired") &&
    (await text(watch.page, "watch-state")) === "following");
  check("1. signed in, the newcomer pairs the watch", paired === true, await text(newcomer.page, "pair-result"));

  // 2. Signing in (an existing account) from the chat's panel comes back too.
  const fan = await open("fan");
  await fan.page.goto(`${BASE}${viewerPath}`);
  await id(fan.page, "join-sign-in").click();
  await fan.page.waitForURL((url) => url.searchParams.get("next") === viewerPath);
  await signIn(fan.page, fanName, "fan-password-1");
  const fanBack = await waitFor(async () => new URL(fan.page.url()).pathname === viewerPath &&
    (await text(fan.page, "who")) === "Signed in as Fan");
  check("2. signing in from the chat panel returns to the session, signed in", fanBack === true, fan.page.url());
  await fan.page.goto(`${BASE}/?next=${encodeURIComponent(viewerPath)}`);
  const straight = await waitFor(() => new URL(fan.page.url()).pathname === viewerPath);
  check("2. already signed in, /?next= goes straight back", straight === true, fan.page.url());
  await id(fan.page, "chat-input").waitFor();
  await waitFor(() => id(fan.page, "chat-input").isEnabled(), 15000);

  // 2. Never an open redirect: signed in, a foreign `next` stays on the dashboard.
  const probe = await open("redirect-probe", fan.page.context());
  for (const bad of ["//evil.example/", "https://evil.example/", "/\\evil.example", "/./\\evil.example",
    "/\t/evil.example", "javascript:alert(1)", "evil.example"]) {
    await probe.page.goto(`${BASE}/?next=${encodeURIComponent(bad)}`);
    await id(probe.page, "signout").waitFor({ timeout: 5000 }).catch(() => {});
    await sleep(300);
    const at = new URL(probe.page.url());
    check(`2. next=${JSON.stringify(bad)} stays on this site`, at.origin === BASE && at.pathname === "/" &&
      (await id(probe.page, "signout").isVisible()), probe.page.url());
  }
  await probe.page.close();
  // ... and signed out, signing in with a foreign `next` lands on the dashboard.
  const stranger = await open("stranger");
  await stranger.page.goto(`${BASE}/?next=${encodeURIComponent("//evil.example/")}`);
  await signIn(stranger.page, fanName, "fan-password-1");
  await id(stranger.page, "signout").waitFor();
  await sleep(300);
  check("2. signing in with a foreign next stays on the dashboard",
    new URL(stranger.page.url()).origin === BASE && new URL(stranger.page.url()).pathname === "/", stranger.page.url());

  // 5. and 4. The host starts the timer, then ends the session.
  await id(host.page, "timer-start").click();
  await waitFor(async () => (await text(host.page, "timer-state")) === "running");
  const watched = await waitFor(async () => Number(await text(host.page, "viewer-count")) >= 2 &&
    parseInt(await text(host.page, "media-bitrate-in")) > 0, 15000);
  check("the dashboard shows viewers and a bitrate while live", watched === true,
    `${await text(host.page, "viewer-count")} viewers, ${await text(host.page, "media-bitrate-in")}`);

  let asked = null;
  host.page.once("dialog", (dialog) => {
    asked = dialog.message();
    dialog.dismiss();
  });
  const declinedAt = Date.now();
  await id(host.page, "end-session").click();
  await waitFor(() => asked !== null, 3000);
  await sleep(500);
  check("5. End session asks for a confirmation", (asked || "").startsWith("End this session"), String(asked));
  check("5. declined: nothing was sent, still publishing",
    requestsOf(host, "POST", "/end", declinedAt).length === 0 && (await text(host.page, "live-state")) === "publishing",
    await text(host.page, "live-state"));
  check("5. declined: the server says live", (await call("GET", `/sessions/${open_.id}`)).state === "live");

  host.page.once("dialog", (dialog) => dialog.accept());
  await id(host.page, "end-session").click();
  const endedAt = Date.now();
  const hostEnded = await waitFor(async () => (await text(host.page, "live-state")) === "ended");
  check("5. accepted: the session ends", hostEnded === true && (await call("GET", `/sessions/${open_.id}`)).state === "ended");
  const hostSockets = await sockets(host.page);
  const newcomerSockets = await sockets(newcomer.page);
  await sleep(3000); // long enough for a reconnect, a poll or a tick to show
  check("4. dashboard: \"This session has ended\"", await id(host.page, "ended-banner").isVisible() &&
    (await text(host.page, "ended-banner")) === "This session has ended");
  check("4. dashboard: no viewer count", (await text(host.page, "viewer-count")) === "—", await text(host.page, "viewer-count"));
  check("4. dashboard: no bitrate or publisher any more", (await text(host.page, "media-bitrate-in")) === "—" &&
    (await text(host.page, "media-publisher")) === "—", await text(host.page, "media-health"));
  check("4. dashboard: not reconnecting", !(await text(host.page, "connection")).includes("Reconnecting"),
    await text(host.page, "connection"));
  check("4. dashboard: timer says ended", (await text(host.page, "timer-state")) === "ended", await text(host.page, "timer-state"));
  let before = await text(host.page, "countdown");
  await sleep(1500);
  check("4. dashboard: the countdown stands still", before === (await text(host.page, "countdown")) && /^\d+:\d\d$/.test(before),
    `${before} -> ${await text(host.page, "countdown")}`);
  check("4. dashboard: no new /ws and no media polls after the end",
    (await sockets(host.page)) === hostSockets && requestsOf(host, "GET", "/media", endedAt + 1000).length === 0);

  // The signed-in viewer learned it from the `session.ended` frame.
  const page = newcomer.page;
  check("4. viewer: \"This session has ended\"", await id(page, "ended-banner").isVisible() &&
    (await text(page, "session-state")) === "ended" && (await text(page, "video-state")) === "ended" &&
    (await text(page, "player-message")) === "This session has ended");
  check("4. viewer: no viewer count", !(await page.locator("#watching").isVisible()));
  check("4. viewer: chat closed, not reconnecting", !(await id(page, "chat-input").isEnabled()) &&
    (await page.locator("#chat-status").textContent()).includes("ended"), await page.locator("#chat-status").textContent());
  before = await text(page, "countdown");
  await sleep(1500);
  check("4. viewer: the countdown stands still", before === (await text(page, "countdown")) && /^\d+:\d\d$/.test(before),
    `${before} -> ${await text(page, "countdown")}`);
  check("4. viewer: the timer says so", (await page.locator("#timer-state").textContent()).startsWith("Session ended"),
    await page.locator("#timer-state").textContent());
  check("4. viewer: video stopped, no new /ws", (await page.evaluate(() => window.simmerViewer.pc === null)) &&
    (await sockets(page)) === newcomerSockets);
  check("4. viewer: pairing says there is nothing to follow", (await text(page, "pair-hint")).includes("ended"));
  // The visitor who never joined learns it from its REST poll.
  const visitorEnded = await waitFor(async () => (await text(visitor.page, "session-state")) === "ended" &&
    (await text(visitor.page, "video-state")) === "ended" && (await id(visitor.page, "ended-banner").isVisible()), 10000);
  check("4. visitor (no /ws): ended from the session's REST state", visitorEnded === true,
    await text(visitor.page, "video-state"));
  check("4. visitor: video stopped, no viewer count", (await visitor.page.evaluate(() => window.simmerViewer.pc === null)) &&
    !(await visitor.page.locator("#watching").isVisible()));
  const watchEnded = await waitFor(async () => (await text(watch.page, "watch-state")) === "ended");
  check("4. the watch says ended", watchEnded === true, await text(watch.page, "watch-state"));

  // 4. A reload of an ended session is ended from the first render.
  await visitor.page.reload();
  await waitFor(async () => (await text(visitor.page, "video-state")) === "ended");
  said = await saidOnPlayer(visitor.page);
  check("4. reloaded: ended at once, never \"not live\" or \"connecting\"",
    said.at(-1) === "This session has ended" && !said.some((s) => s.includes("not live") || s.includes("starting")), JSON.stringify(said));

  // 4. The dashboard learns it from a `session.ended` frame (ended elsewhere).
  const room = await open("host-room", host.page.context());
  await room.page.goto(`${BASE}/#/sessions/${closed.id}`);
  await waitFor(async () => (await text(room.page, "live-state")) === "not publishing");
  await waitFor(async () => (await sockets(room.page)) >= 1 && (await room.page.evaluate(() => window.sockets.at(-1).readyState === 1)));
  await sleep(500); // joined
  await call("POST", `/sessions/${closed.id}/end`, {}, hostAuth.access_token);
  const frameEnded = await waitFor(async () => (await text(room.page, "live-state")) === "ended" &&
    (await id(room.page, "ended-banner").isVisible()));
  check("4. dashboard: a session ended elsewhere shows ended", frameEnded === true, await text(room.page, "live-state"));
  await sleep(2500);
  check("4. ... without viewers or \"Reconnecting\"", (await text(room.page, "viewer-count")) === "—" &&
    !(await text(room.page, "connection")).includes("Reconnecting"), await text(room.page, "connection"));
  const outsiderEnded = await waitFor(async () => (await text(outsider.page, "video-state")) === "ended", 10000);
  check("4. ... and so does its viewer page", outsiderEnded === true, await text(outsider.page, "video-state"));
  // And a room opened once it ended.
  await room.page.goto(`${BASE}/#/sessions/${open_.id}`);
  const reopened = await waitFor(async () => (await text(room.page, "live-state")) === "ended" &&
    (await id(room.page, "ended-banner").isVisible()) && (await text(room.page, "viewer-count")) === "—");
  check("4. dashboard: an ended session's room says ended, no viewers", reopened === true);

  // 6. Every page links the icon, the server serves it, and nothing was missing.
  for (const path of ["/", "/live", "/watch", viewerPath]) {
    const { page: p } = await open(`icon ${path}`);
    await p.goto(`${BASE}${path}`);
    const href = await p.evaluate(() => document.querySelector('link[rel~="icon"]')?.getAttribute("href"));
    const resp = href ? await fetch(new URL(href, BASE)) : null;
    const body = resp ? await resp.text() : "";
    check(`6. ${path} links an icon that is served as SVG`, href === "/favicon.svg" && resp.status === 200 &&
      resp.headers.get("content-type") === "image/svg+xml" && body.startsWith("<svg"),
      `${href} ${resp?.status} ${resp?.headers.get("content-type")}`);
    await sleep(500);
  }
  const ico = await fetch(`${BASE}/favicon.ico`);
  check("6. /favicon.ico (asked for by browsers on pages without a link) leads to the icon",
    ico.status === 200 && ico.headers.get("content-type") === "image/svg+xml", `${ico.status} ${ico.url}`);
  check("6. no request of any page got a 404", notFound.length === 0, notFound.join("; "));
  const blocked = logs.filter((line) => line.includes("Content Security Policy"));
  check("6. nothing was blocked by the Content-Security-Policy", blocked.length === 0, blocked.join("; "));
} catch (e) {
  check("newcomer run", false, e.stack || String(e));
} finally {
  if (anyFailed()) {
    for (const { label, page } of pages) {
      await page.screenshot({ path: `${SHOTS}/newcomer-failed-${label.replace(/\W+/g, "-")}.png`, fullPage: true }).catch(() => {});
    }
    console.log(logs.join("\n"));
    console.log(`screenshots in ${SHOTS}`);
  }
  await browser.close();
}
finish();
