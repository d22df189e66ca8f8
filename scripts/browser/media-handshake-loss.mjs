// A lost last handshake flight, with a real browser on both sides of the
// relay: every UDP flow loses the first datagram that begins with a DTLS
// ChangeCipherSpec (media-handshake-loss.setup.sh), which is the DTLS
// server's last flight. The host (Chromium publishing over WHIP, the pages'
// own /assets/js/api.js) must still go live, and a viewer (WHEP, the edge)
// must still play: a side that loses that flight sends its own last flight
// again, and the server must answer it (RFC 6347 4.2.4). Without that, ICE
// connects and DTLS never does.
// Usage: node media-handshake-loss.mjs BASE_URL (inside scripts/browser.sh)
import { execFileSync } from "node:child_process";
import { launchChromium } from "./chromium.mjs";
import { apiClient, check, finish, liveSession, waitFor } from "./harness.mjs";
import { observe } from "./peer-stats.mjs";

const BASE = process.argv[2].replace(/\/$/, "");
const call = apiClient(BASE);
const { token, session } = await liveSession(call, { title: "Handshake loss", prefix: "hl" });
const guest = await call("POST", `/sessions/${session.id}/guest-tokens`, { display_name: "Guest" });
const browser = await launchChromium();

async function page() {
  const p = await browser.newPage();
  await p.goto(`${BASE}/`);
  return p;
}

/** The flows (as "port>port") that lost a datagram to the rule. */
function flowsThatLostOne() {
  const out = JSON.parse(execFileSync("nft", ["-j", "list", "set", "inet", "handshake_loss", "dropped"], { encoding: "utf8" }));
  const set = out.nftables.find((o) => o.set)?.set;
  return (set?.elem || []).map((e) => e.concat || e.elem?.val?.concat).filter(Boolean)
    .map(([, sport, , dport]) => ({ sport, dport }));
}

const lostOn = (flows, port) => flows.some((f) => f.sport === port || f.dport === port);

try {
  const host = await page();
  await host.evaluate(async ({ id, token }) => {
    const api = await import("/assets/js/api.js");
    const media = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 360 }, audio: true });
    const started = performance.now();
    window.pc = (await api.whip(id, token, media)).pc;
    const connected = () => { window.observed = { connectedAfterMs: Math.round(performance.now() - started) }; };
    if (window.pc.connectionState === "connected") connected();
    window.pc.addEventListener("connectionstatechange", () => window.pc.connectionState === "connected" && connected());
  }, { id: session.id, token });
  const h = await waitFor(async () => {
    const o = await observe(host);
    return o.state === "connected" && o.sent > 0 ? o : null;
  }, 20000) || (await observe(host));
  check("the host goes live although the DTLS server's last flight was lost",
    h.state === "connected" && h.sent > 0, JSON.stringify(h));
  console.log(`     (the host connected ${h.connectedAfterMs} ms after its offer)`);

  const viewer = await page();
  await viewer.evaluate(async ({ id, token }) => {
    const api = await import("/assets/js/api.js");
    window.pc = (await api.whep(id, token)).pc;
  }, { id: session.id, token: guest.access_token });
  const v = await waitFor(async () => {
    const o = await observe(viewer);
    return o.frames >= 30 ? o : null;
  }, 20000) || (await observe(viewer));
  check("a viewer decodes the host's video although the edge's last flight was lost",
    v.frames >= 30, JSON.stringify(v));

  // Otherwise the checks above prove nothing: each handshake lost one.
  const flows = flowsThatLostOne();
  check("the host's handshake lost its server's last flight on the way",
    lostOn(flows, h.relayPort), JSON.stringify({ relayPort: h.relayPort, flows }));
  check("the viewer's handshake lost the edge's last flight on the way",
    lostOn(flows, v.relayPort), JSON.stringify({ relayPort: v.relayPort, flows }));
} catch (e) {
  check("handshake loss run", false, e.stack || e);
} finally {
  await browser.close();
}
finish();
