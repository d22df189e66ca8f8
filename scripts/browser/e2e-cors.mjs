// Pages on other origins, in headless Chromium with its real CORS rules: a
// page served from http://127.0.0.1:18081 (another port is another origin;
// the one in SIMMER_CORS_ORIGINS) signs up, creates a recipe and a live
// session, reads the headers clients need (Location, ETag,
// WWW-Authenticate), and plays the session over WHEP (offer, answer, DELETE
// of the resource); a page from http://127.0.0.1:18082 (not allowed) gets
// nothing back. Both pages are served by a tiny server here, on loopback
// like Simmer (a page from a public name calling loopback would be Chrome's
// local-network case, not CORS).
//
// Usage: SIMMER_CORS_ORIGINS=http://127.0.0.1:18081 node e2e-cors.mjs BASE_URL
import http from "node:http";
import { launchChromium } from "./chromium.mjs";
import { check, finish } from "./harness.mjs";

const BASE = process.argv[2].replace(/\/$/, "");

/** Serves an empty page on `port`; resolves once listening. */
function pageServer(port) {
  const server = http.createServer((_req, res) => {
    res.writeHead(200, { "content-type": "text/html" });
    res.end("<!doctype html><title>elsewhere</title>");
  });
  return new Promise((resolve) => server.listen(port, "127.0.0.1", () => resolve(server)));
}
const servers = [await pageServer(18081), await pageServer(18082)];

const browser = await launchChromium();

/** A page whose origin is `origin`. */
async function pageAt(origin) {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`${origin}/`);
  return page;
}

const player = await pageAt("http://127.0.0.1:18081");
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

const elsewhere = await pageAt("http://127.0.0.1:18082");
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
for (const server of servers) server.close();
finish();
