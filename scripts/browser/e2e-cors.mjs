// Pages on other origins, in headless Chromium with its real CORS rules: a
// page served from http://player.test (the origin in SIMMER_CORS_ORIGINS)
// signs up, creates a recipe and a live session, reads the headers clients
// need (Location, ETag, WWW-Authenticate), and plays the session over WHEP
// (offer, answer, DELETE of the resource); a page on http://elsewhere.test
// (not allowed) gets nothing back. The pages are served by Playwright's
// router, so no other server or name is needed.
//
// Usage: SIMMER_CORS_ORIGINS=http://player.test node e2e-cors.mjs BASE_URL
import { launchChromium } from "./chromium.mjs";

const BASE = process.argv[2].replace(/\/$/, "");
let passed = 0;
let failed = 0;
function check(name, ok, detail = "") {
  if (ok) passed++;
  else failed++;
  console.log(`${ok ? "ok  " : "FAIL"} ${name} ${ok ? "" : detail}`);
}

const browser = await launchChromium();

/** A page whose origin is `origin`, served an empty document by the router. */
async function pageAt(origin) {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.route(`${origin}/**`, (route) =>
    route.fulfill({ status: 200, contentType: "text/html", body: "<!doctype html><title>elsewhere</title>" }));
  await page.goto(`${origin}/`);
  return page;
}

const player = await pageAt("http://player.test");
const result = await player.evaluate(async (base) => {
  const api = `${base}/api/v1`;
  const out = {};
  const json = (method, path, token, body) =>
    fetch(`${api}${path}`, {
      method,
      headers: {
        "content-type": "application/json",
        ...(token ? { authorization: `Bearer ${token}` } : {}),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  const name = `cors${Date.now()}`;
  const signup = await json("POST", "/auth/register", null, { username: name, password: "a long enough password" });
  out.signup = signup.status;
  const token = (await signup.json()).access_token;
  const recipe = await json("POST", "/recipes", token, { title: "Soup", steps: [{ text: "Boil", duration_s: 60 }] });
  out.recipe = recipe.status;
  out.recipeLocation = recipe.headers.get("location");
  const recipeId = (await recipe.json()).id;
  const session = await json("POST", "/sessions", token, { recipe_id: recipeId, title: "Across origins" });
  const sessionId = (await session.json()).id;
  out.start = (await json("POST", `/sessions/${sessionId}/start`, token)).status;
  const me = await fetch(`${api}/me`, { headers: { authorization: "Bearer not-a-token" } });
  out.unauthorized = me.status;
  out.wwwAuthenticate = me.headers.get("www-authenticate");

  // WHEP from this origin: an offer, the answer, then the resource ended.
  const pc = new RTCPeerConnection();
  pc.addTransceiver("video", { direction: "recvonly" });
  pc.addTransceiver("audio", { direction: "recvonly" });
  await pc.setLocalDescription(await pc.createOffer());
  const whep = await fetch(`${base}/whep/${sessionId}`, {
    method: "POST",
    headers: { "content-type": "application/sdp", authorization: `Bearer ${token}` },
    body: pc.localDescription.sdp,
  });
  out.whep = whep.status;
  out.whepLocation = whep.headers.get("location");
  out.whepEtag = whep.headers.get("etag");
  const answer = await whep.text();
  await pc.setRemoteDescription({ type: "answer", sdp: answer });
  out.answered = pc.remoteDescription?.type === "answer";
  const ended = await fetch(`${base}${out.whepLocation}`, {
    method: "DELETE",
    headers: { authorization: `Bearer ${token}` },
  });
  out.whepDelete = ended.status;
  pc.close();
  return out;
}, BASE);

check("sign-up from another origin (201, preflighted)", result.signup === 201, JSON.stringify(result));
check("a created recipe's Location is readable", result.recipe === 201 && /^\/api\/v1\/recipes\//.test(result.recipeLocation || ""), result.recipeLocation);
check("the session goes live", result.start === 200, result.start);
check("a 401's WWW-Authenticate is readable", result.unauthorized === 401 && /^Bearer/.test(result.wwwAuthenticate || ""), result.wwwAuthenticate);
check("WHEP offer answered (201) across origins", result.whep === 201 && result.answered, JSON.stringify(result));
check("the WHEP resource's Location and ETag are readable", /^\/whep\//.test(result.whepLocation || "") && Boolean(result.whepEtag), `${result.whepLocation} ${result.whepEtag}`);
check("the WHEP resource is ended with DELETE (preflighted)", result.whepDelete === 200, result.whepDelete);

const elsewhere = await pageAt("http://elsewhere.test");
const refused = await elsewhere.evaluate(async (base) => {
  try {
    await fetch(`${base}/api/v1/sessions`);
    return "read";
  } catch (e) {
    return `refused: ${e.name}`;
  }
}, BASE);
check("a page on an origin not listed gets nothing back", refused.startsWith("refused"), refused);

await browser.close();
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
