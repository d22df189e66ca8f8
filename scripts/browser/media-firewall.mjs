// Viewers behind firewalls: the browser's network drops every UDP packet
// (media-firewall.setup.sh: nftables in the test's namespace), coturn listens
// on TCP only and checks the credentials Simmer mints from the shared secret.
// The pages' own code (/assets/js/api.js) asks the WHIP/WHEP endpoint for its ICE
// servers (OPTIONS) before the offer; the host publishes and a guest plays,
// both through TURN over TCP. A player that ignores the ICE servers gets no
// video: the firewall is real.
// Usage: node media-firewall.mjs BASE_URL (inside scripts/browser.sh)
import { readFileSync } from "node:fs";
import { launchChromium } from "./chromium.mjs";
import { apiClient, check, finish, liveSession, sleep, waitFor } from "./harness.mjs";
import { iceUp, observe } from "./peer-stats.mjs";

const BASE = process.argv[2].replace(/\/$/, "");

const call = apiClient(BASE);
const { user, token, session } = await liveSession(call, { title: "Behind a firewall", recipe: "Ramen", prefix: "fw" });
const guest = await call("POST", `/sessions/${session.id}/guest-tokens`, { display_name: "Hotel guest" });

// What a client that asks gets: TURN over TCP with its own credential.
const anonymous = await fetch(`${BASE}/whep/${session.id}`, { method: "OPTIONS" });
check("OPTIONS without a token: 204, no TURN credential handed out",
  anonymous.status === 204 && !(anonymous.headers.get("link") || "").includes("turn:"),
  `${anonymous.status} ${anonymous.headers.get("link")}`);
const asked = await fetch(`${BASE}/whep/${session.id}`, {
  method: "OPTIONS", headers: { authorization: `Bearer ${guest.access_token}` },
});
const link = asked.headers.get("link") || "";
check("OPTIONS with a guest token: the TURN server with the guest's own credential",
  asked.status === 204 && /<turn:[^>]*transport=tcp>; rel="ice-server"; username="\d+:[0-9a-f-]{36}"; credential="[^"]+"/.test(link),
  `${asked.status} ${link}`);
check("... and says what the endpoint accepts",
  (asked.headers.get("allow") || "").includes("POST") && asked.headers.get("accept-post") === "application/sdp",
  `${asked.headers.get("allow")} / ${asked.headers.get("accept-post")}`);

const browser = await launchChromium();

async function page() {
  const p = await browser.newPage();
  await p.goto(`${BASE}/`);
  return p;
}

try {
  const host = await page();
  await host.evaluate(async ({ id, token }) => {
    const api = await import("/assets/js/api.js");
    window.observed = { servers: await api.iceServers(`/whip/${id}`, token) };
    const media = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 360 }, audio: true });
    window.pc = (await api.whip(id, token, media)).pc;
  }, { id: session.id, token });
  const h = await waitFor(async () => {
    const o = await observe(host);
    return iceUp(o) ? o : null;
  }, 20000);
  check("the host's page asked for the ICE servers and got TURN over TCP",
    (h?.servers || []).some((s) => s.urls.startsWith("turn:") && s.urls.includes("transport=tcp") && s.username && s.credential),
    JSON.stringify(h));
  check("the host publishes through TURN over TCP (its UDP is blocked)",
    h?.type === "relay" && h?.relayProtocol === "tcp", JSON.stringify(h));

  const viewer = await page();
  await viewer.evaluate(async ({ id, token }) => {
    const api = await import("/assets/js/api.js");
    window.observed = { servers: await api.iceServers(`/whep/${id}`, token) };
    window.pc = (await api.whep(id, token)).pc;
  }, { id: session.id, token: guest.access_token });
  const v = await waitFor(async () => {
    const o = await observe(viewer);
    return o.frames >= 30 ? o : null;
  }, 25000);
  check("a guest behind the firewall decodes the host's video", v?.frames >= 30, JSON.stringify(v));
  check("... through TURN over TCP", v?.type === "relay" && v?.relayProtocol === "tcp", JSON.stringify(v));

  // The same guest, without the ICE servers: UDP only, and UDP is blocked.
  const bare = await page();
  await bare.evaluate(async ({ id, token }) => {
    const pc = window.pc = new RTCPeerConnection();
    pc.addTransceiver("video", { direction: "recvonly" });
    await pc.setLocalDescription(await pc.createOffer());
    await new Promise((r) => (pc.iceGatheringState === "complete" ? r()
      : pc.addEventListener("icegatheringstatechange", () => pc.iceGatheringState === "complete" && r())));
    const resp = await fetch(`/whep/${id}`, {
      method: "POST", body: pc.localDescription.sdp,
      headers: { "Content-Type": "application/sdp", Authorization: `Bearer ${token}` },
    });
    await pc.setRemoteDescription({ type: "answer", sdp: await resp.text() });
  }, { id: session.id, token });
  await sleep(6000);
  const b = await observe(bare);
  check("a player that ignores the ICE servers gets nothing through the firewall",
    b.frames === 0 && !iceUp(b), JSON.stringify(b));

  const log = process.env.SIMMER_TURN_LOG ? readFileSync(process.env.SIMMER_TURN_LOG, "utf8") : "";
  // coturn: "user <1796397167:9f0c…>: incoming packet ALLOCATE processed, success"
  const allocated = new Set([...log.matchAll(/user <(\d+:[0-9a-f-]{36})>: incoming packet ALLOCATE processed, success/g)]
    .map((m) => m[1].split(":")[1]));
  check("coturn allocated for the host and the guest, each with its minted credential",
    allocated.has(user.user.id) && allocated.has(guest.guest_id), [...allocated].join(", ") + "\n" + log.split("\n").slice(-20).join("\n"));
} catch (e) {
  check("firewalled media run", false, e.stack || e);
} finally {
  await browser.close();
}
finish();
