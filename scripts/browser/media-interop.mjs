// An independent WebRTC stack against Simmer's relay: headless Chromium with
// a fake camera publishes over WHIP; two Chromium viewers (one before the
// host goes live, one after) play over WHEP; each must decode video frames.
// Runs inside a private network namespace (scripts/browser.sh).
// Usage: node media-interop.mjs BASE_URL
import { launchChromium } from "./chromium.mjs";
import { apiClient, check, finish, liveSession } from "./harness.mjs";

const BASE = process.argv[2].replace(/\/$/, "");
const call = apiClient(BASE);
const { token, session } = await liveSession(call, { title: "Browser live" });

const browser = await launchChromium();

// In the page: offer, wait for ICE gathering, POST to WHIP/WHEP, apply the answer.
const signal = `
  async function signal(pc, url, token) {
    await pc.setLocalDescription(await pc.createOffer());
    await new Promise((resolve) => {
      if (pc.iceGatheringState === "complete") return resolve();
      pc.addEventListener("icegatheringstatechange", () => pc.iceGatheringState === "complete" && resolve());
      setTimeout(resolve, 3000);
    });
    const resp = await fetch(url, { method: "POST", body: pc.localDescription.sdp,
      headers: { "Content-Type": "application/sdp", "Authorization": "Bearer " + token } });
    const answer = await resp.text();
    if (resp.status !== 201) throw new Error(resp.status + " " + answer);
    await pc.setRemoteDescription({ type: "answer", sdp: answer });
    return resp.headers.get("Location");
  }`;

async function viewer(name) {
  const page = await browser.newPage();
  await page.goto(`${BASE}/healthz`); // same origin as WHEP: no CORS needed
  await page.evaluate(`(async () => {
    ${signal}
    const pc = window.pc = new RTCPeerConnection();
    pc.addTransceiver("video", { direction: "recvonly" });
    pc.addTransceiver("audio", { direction: "recvonly" });
    const video = window.video = document.createElement("video");
    video.muted = true; video.autoplay = true; document.body.appendChild(video);
    pc.ontrack = (e) => { video.srcObject = e.streams[0] || new MediaStream([e.track]); };
    window.resource = await signal(pc, "/whep/${session.id}", "${token}");
  })()`);
  return { name, page };
}

async function decoded(page) {
  return page.evaluate(async () => {
    const stats = await window.pc.getStats();
    let frames = 0, audio = 0, codec = "";
    const codecs = {};
    stats.forEach((s) => { if (s.type === "codec") codecs[s.id] = s.mimeType; });
    stats.forEach((s) => {
      if (s.type === "inbound-rtp" && s.kind === "video") { frames = s.framesDecoded || 0; codec = codecs[s.codecId] || ""; }
      if (s.type === "inbound-rtp" && s.kind === "audio") audio = s.packetsReceived || 0;
    });
    return { frames, audio, codec, width: window.video.videoWidth };
  });
}

async function waitFrames(view, min, ms) {
  const until = Date.now() + ms;
  let last = { frames: 0 };
  while (Date.now() < until) {
    last = await decoded(view.page);
    if (last.frames >= min && last.audio > 0) return last;
    await new Promise((r) => setTimeout(r, 250));
  }
  return last;
}

try {
  const early = await viewer("early viewer");

  const host = await browser.newPage();
  await host.goto(`${BASE}/healthz`);
  const location = await host.evaluate(`(async () => {
    ${signal}
    const media = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 360 }, audio: true });
    const pc = window.pc = new RTCPeerConnection();
    for (const track of media.getTracks()) pc.addTransceiver(track, { direction: "sendonly" });
    return signal(pc, "/whip/${session.id}", "${token}");
  })()`);
  check("WHIP answered with a Location", typeof location === "string" && location.startsWith(`/whip/${session.id}/`), location);

  const e = await waitFrames(early, 30, 20000);
  check("the viewer who came first decodes the host's video", e.frames >= 30, JSON.stringify(e));
  check("... and receives its audio", e.audio > 0, JSON.stringify(e));
  // Chromium may start below the camera's 640x360 (its encoder adapts to CPU
  // and bandwidth), so any real picture size counts.
  check("... as a picture with a size", e.width >= 160 && e.width <= 640, JSON.stringify(e));

  const late = await viewer("late viewer");
  const started = Date.now();
  const l = await waitFrames(late, 1, 10000);
  check("a viewer who comes mid-stream decodes its first frame", l.frames >= 1, JSON.stringify(l));
  console.log(`     (first frame for the late viewer after ${Date.now() - started} ms, codec ${l.codec})`);

  const stats = await call("GET", `/sessions/${session.id}/media`, null, token);
  check("the room counts two viewers and a publisher", stats.subscribers === 2 && stats.publisher === "publishing", JSON.stringify(stats));

  // The host stops; viewers stay; the host comes back on the same viewers.
  const stop = await fetch(BASE + location, { method: "DELETE", headers: { authorization: `Bearer ${token}` } });
  check("DELETE on the WHIP resource stops publishing", stop.status === 200, stop.status);

  // The host comes back with H.264: the same viewers decode it, no new offer.
  const before = await decoded(early.page);
  const h264 = await host.evaluate(`(async () => {
    ${signal}
    window.pc.close();
    const media = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 360 }, audio: true });
    const pc = window.pc = new RTCPeerConnection();
    for (const track of media.getTracks()) {
      const t = pc.addTransceiver(track, { direction: "sendonly" });
      if (track.kind === "video") {
        const codecs = RTCRtpSender.getCapabilities("video").codecs.filter((c) => c.mimeType === "video/H264");
        if (codecs.length) t.setCodecPreferences(codecs);
      }
    }
    return signal(pc, "/whip/${session.id}", "${token}");
  })()`);
  check("the host republishes (H.264)", typeof h264 === "string", h264);
  const after = await waitFrames(early, before.frames + 30, 20000);
  check("the first viewer decodes the republished H.264 video",
    after.frames >= before.frames + 30 && after.codec === "video/H264", JSON.stringify({ before, after }));
} catch (e) {
  check("browser media run", false, e.stack || e);
} finally {
  await browser.close();
}
finish();
