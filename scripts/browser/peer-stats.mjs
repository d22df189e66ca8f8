// What the WebRTC suites read off a page's `window.pc` (its getStats):
// its ICE and connection states, the selected pair's local candidate type
// and relay protocol and the relay's port, frames decoded and encoded, and
// `window.observed` (whatever the page put there: ICE servers, timings).

/** The page's `window.pc`, observed. */
export async function observe(page) {
  return page.evaluate(async () => {
    const stats = await window.pc.getStats();
    const byId = new Map();
    stats.forEach((s) => byId.set(s.id, s));
    let pair = null;
    stats.forEach((s) => {
      if (s.type === "transport" && s.selectedCandidatePairId) pair = byId.get(s.selectedCandidatePairId);
    });
    const local = pair && byId.get(pair.localCandidateId);
    const remote = pair && byId.get(pair.remoteCandidateId);
    let frames = 0, sent = 0;
    stats.forEach((s) => {
      if (s.type === "inbound-rtp" && s.kind === "video") frames = s.framesDecoded || 0;
      if (s.type === "outbound-rtp" && s.kind === "video") sent = s.framesEncoded || 0;
    });
    return {
      ice: window.pc.iceConnectionState, state: window.pc.connectionState,
      type: local?.candidateType, relayProtocol: local?.relayProtocol, relayPort: remote?.port ?? null,
      frames, sent, ...(window.observed || {}),
    };
  });
}

/** Whether the ICE state is up ("connected" or "completed"). */
export const iceUp = (o) => o.ice === "connected" || o.ice === "completed";
