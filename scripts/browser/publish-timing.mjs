// A measurement, not a test (docs/benchmarks.md, "A host's publish"):
// headless Chromium publishes over WHIP $PUBLISHES times (default 20), one
// after the other, and for each prints how long the host took from its
// offer to `connectionState` "connected" and until the relay reported it
// publishing, or how far it got when it did not connect within 15 s.
// Run with UDP loss to see the DTLS handshake under loss:
//   UDP_LOSS=10 PUBLISHES=40 ./scripts/browser.sh publish-timing.mjs
import { launchChromium } from "./chromium.mjs";
import { apiClient, liveSession, sleep } from "./harness.mjs";

const BASE = process.argv[2].replace(/\/$/, "");
const PUBLISHES = Number(process.env.PUBLISHES || 20);
const call = apiClient(BASE);
const { token, session } = await liveSession(call, { title: "Publish timing" });
const browser = await launchChromium();
const host = await browser.newPage();
await host.goto(`${BASE}/`);

// In the page, with the pages' own /assets/js/api.js: publish once;
// resolves with the answer's DTLS role and the milliseconds from the offer
// to "connected" (null if not within 15 s), with the last ICE and
// connection states.
const publishOnce = `async (id, token) => {
  const api = await import("/assets/js/api.js");
  if (window.pc) window.pc.close();
  window.media ||= await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 360 }, audio: true });
  const started = performance.now();
  const { pc, resource } = await api.whip(id, token, window.media);
  window.pc = pc;
  const ms = await new Promise((resolve) => {
    const connected = () => pc.connectionState === "connected" && resolve(performance.now() - started);
    connected();
    pc.addEventListener("connectionstatechange", connected);
    setTimeout(() => resolve(null), 15000);
  });
  const role = (pc.remoteDescription.sdp.match(/a=setup:(\\w+)/) || [])[1];
  return { role, ms, ice: pc.iceConnectionState, state: pc.connectionState, location: resource };
}`;

const rows = [];
for (let n = 1; n <= PUBLISHES; n++) {
  const started = Date.now();
  const r = await host.evaluate(`(${publishOnce})("${session.id}", "${token}")`);
  // When the relay says "publishing": the first media reached it.
  let publishingMs = null;
  while (r.ms !== null && Date.now() - started < 20000) {
    const stats = await call("GET", `/sessions/${session.id}/media`, null, token);
    if (stats.publisher === "publishing") { publishingMs = Date.now() - started; break; }
    await sleep(20);
  }
  rows.push({ ...r, publishingMs });
  console.log(`publish ${n}: a=setup:${r.role}, connected ${r.ms === null ? "NEVER" : Math.round(r.ms) + " ms"}`
    + `, publishing ${publishingMs === null ? "never" : publishingMs + " ms"}`
    + (r.ms === null ? ` (ICE ${r.ice}, connection ${r.state})` : ""));
  if (r.location) await fetch(BASE + r.location, { method: "DELETE", headers: { authorization: `Bearer ${token}` } });
  await sleep(200);
}
await browser.close();

/** p50, p90 and max of the numbers, in ms ("-" if none). */
function spread(values) {
  const v = values.filter((x) => x !== null).sort((a, b) => a - b);
  const at = (q) => (v.length ? Math.round(v[Math.min(v.length - 1, Math.floor(q * v.length))]) : "-");
  return `p50 ${at(0.5)} ms, p90 ${at(0.9)} ms, max ${at(1)} ms`;
}
const connected = rows.filter((r) => r.ms !== null);
console.log(`${connected.length} of ${rows.length} publishes connected within 15 s`);
console.log(`offer → connected (the browser's side): ${spread(rows.map((r) => r.ms))}`);
console.log(`offer → publishing (the relay's side): ${spread(rows.map((r) => r.publishingMs))}`);
