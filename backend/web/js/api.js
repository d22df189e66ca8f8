// The browser's client for Simmer: REST (/api/v1), the realtime WebSocket
// (/ws), WHIP/WHEP video, and the signed-in user kept in localStorage.
// Pages import what they need; nothing here touches the page's DOM except el().

const STORAGE_KEY = "simmer.auth";

/** A refused request, with the problem+json fields the server sent. */
export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.code = problem.code || "error";
    this.detail = problem.detail || this.message;
  }
}

/** Calls `/api/v1{path}`; JSON in and out; null for an empty reply. */
export async function api(method, path, { body, token } = {}) {
  const headers = {};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (token) headers.Authorization = `Bearer ${token}`;
  const resp = await fetch(`/api/v1${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await resp.text();
  const data = text ? JSON.parse(text) : null;
  if (!resp.ok) throw new ApiError(resp.status, data || {});
  return data;
}

/** Seconds since the epoch at which a JWT expires (0 if unreadable). */
function expiry(token) {
  try {
    const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(payload)).exp || 0;
  } catch {
    return 0;
  }
}

/** The signed-in user, kept across reloads. */
export const auth = {
  current() {
    try {
      return JSON.parse(localStorage.getItem(STORAGE_KEY));
    } catch {
      return null;
    }
  },

  save(pair) {
    localStorage.setItem(STORAGE_KEY, JSON.stringify(pair));
    return pair;
  },

  async register(username, password, display_name) {
    const body = { username, password };
    if (display_name) body.display_name = display_name;
    return auth.save(await api("POST", "/auth/register", { body }));
  },

  async login(username, password) {
    return auth.save(await api("POST", "/auth/login", { body: { username, password } }));
  },

  /** An access token valid for at least 30 s more (refreshed if needed). */
  async token() {
    const pair = auth.current();
    if (!pair) return null;
    if (expiry(pair.access_token) - Date.now() / 1000 > 30) return pair.access_token;
    try {
      const fresh = await api("POST", "/auth/refresh", {
        body: { refresh_token: pair.refresh_token },
      });
      return auth.save(fresh).access_token;
    } catch (e) {
      // A refused refresh means signed out; a network error keeps the pair.
      if (e instanceof ApiError) localStorage.removeItem(STORAGE_KEY);
      return null;
    }
  },

  async logout() {
    const pair = auth.current();
    localStorage.removeItem(STORAGE_KEY);
    if (pair) {
      await api("POST", "/auth/logout", {
        body: { refresh_token: pair.refresh_token },
        token: pair.access_token,
      }).catch(() => {});
    }
  },
};

/**
 * The realtime WebSocket client. Reconnects by itself with backoff and
 * re-joins every session with the highest chat `seq` it has seen, so chat
 * resumes without gaps or repeats. Frames reach `on(type)` handlers; a
 * synthetic `{type: "connection", state: "open" | "closed" | "unauthorized"}`
 * tells about the socket ("unauthorized": the token provider has no token
 * any more, e.g. an expired guest pass or a refused refresh; the client
 * stops, and the page decides what to offer).
 */
export class Realtime {
  constructor(tokenProvider) {
    this.tokenProvider = tokenProvider;
    this.handlers = new Map();
    this.pending = new Map();
    this.joined = new Map(); // session id -> highest chat seq seen (or null)
    this.nextRef = 1;
    this.backoff = 500;
    this.closed = false;
    this.ready = this.connect();
  }

  on(type, handler) {
    if (!this.handlers.has(type)) this.handlers.set(type, []);
    this.handlers.get(type).push(handler);
    return this;
  }

  emit(frame) {
    for (const handler of this.handlers.get(frame.type) || []) handler(frame);
  }

  async connect() {
    const token = await this.tokenProvider();
    if (!token) {
      this.closed = true;
      this.emit({ type: "connection", state: "unauthorized" });
      return;
    }
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(
      `${scheme}://${location.host}/ws?token=${encodeURIComponent(token || "")}`,
    );
    this.socket = socket;
    await new Promise((resolve) => {
      socket.onopen = () => {
        this.backoff = 500;
        this.emit({ type: "connection", state: "open" });
        resolve();
        this.rejoin();
      };
      socket.onmessage = (event) => this.receive(JSON.parse(event.data));
      socket.onclose = () => {
        resolve();
        this.lost();
      };
    });
  }

  receive(frame) {
    if (frame.type === "reply" && this.pending.has(frame.ref)) {
      const { resolve, reject } = this.pending.get(frame.ref);
      this.pending.delete(frame.ref);
      if (frame.status === "ok") resolve(frame.body);
      else reject(Object.assign(new Error(frame.error?.message || "refused"), frame.error));
      return;
    }
    if (frame.type === "chat.message" && this.joined.has(frame.session_id)) {
      const seen = this.joined.get(frame.session_id);
      if (seen !== null && frame.seq <= seen) return; // already shown
      this.joined.set(frame.session_id, frame.seq);
    }
    if (frame.type === "reconnect") {
      // The node is draining: come back after the delay it chose (spread
      // over its clients), to whichever node the same URL reaches now.
      this.backoff = frame.after_ms ?? this.backoff;
      this.socket.close();
    }
    this.emit(frame);
  }

  lost() {
    for (const { reject } of this.pending.values()) {
      reject(Object.assign(new Error("connection lost"), { code: "disconnected" }));
    }
    this.pending.clear();
    this.emit({ type: "connection", state: "closed" });
    if (this.closed) return;
    const wait = this.backoff;
    this.backoff = Math.min(this.backoff * 2, 10000);
    setTimeout(() => (this.ready = this.connect()), wait);
  }

  async rejoin() {
    for (const [session_id, last_seq] of this.joined) {
      const frame = { type: "join", session_id };
      if (last_seq !== null) frame.last_seq = last_seq;
      try {
        this.emit({ type: "rejoined", session_id, body: await this.request(frame) });
      } catch (e) {
        this.emit({ type: "rejoin_failed", session_id, error: e });
      }
    }
  }

  /** Sends a frame with a `ref`; resolves with the reply's body. */
  request(frame) {
    return new Promise((resolve, reject) => {
      if (!this.socket || this.socket.readyState !== WebSocket.OPEN) {
        reject(Object.assign(new Error("not connected"), { code: "disconnected" }));
        return;
      }
      const ref = this.nextRef++;
      this.pending.set(ref, { resolve, reject });
      this.socket.send(JSON.stringify({ ...frame, ref }));
    });
  }

  /** Follows a live session; resolves with the join snapshot. */
  async join(session_id) {
    await this.ready;
    const body = await this.request({ type: "join", session_id });
    if (!this.joined.has(session_id)) this.joined.set(session_id, body.last_seq ?? null);
    return body;
  }

  /** Remembers a chat seq shown from history, so a resume starts after it. */
  seen(session_id, seq) {
    const current = this.joined.get(session_id);
    if (current === undefined || current === null || seq > current) this.joined.set(session_id, seq);
  }

  close() {
    this.closed = true;
    this.socket?.close();
  }
}

/** Offers, waits for every ICE candidate (the server does not trickle), POSTs. */
async function negotiate(pc, url, token) {
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((resolve) => {
    if (pc.iceGatheringState === "complete") return resolve();
    pc.addEventListener("icegatheringstatechange", () => {
      if (pc.iceGatheringState === "complete") resolve();
    });
    setTimeout(resolve, 3000);
  });
  const resp = await fetch(url, {
    method: "POST",
    body: pc.localDescription.sdp,
    headers: { "Content-Type": "application/sdp", Authorization: `Bearer ${token}` },
  });
  const text = await resp.text();
  if (resp.status !== 201) {
    let problem = {};
    try {
      problem = JSON.parse(text);
    } catch {
      problem = { detail: text };
    }
    throw new ApiError(resp.status, problem);
  }
  await pc.setRemoteDescription({ type: "answer", sdp: text });
  const resource = resp.headers.get("Location");
  return {
    pc,
    resource,
    async stop() {
      pc.close();
      if (resource) {
        await fetch(resource, {
          method: "DELETE",
          headers: { Authorization: `Bearer ${token}` },
        }).catch(() => {});
      }
    },
  };
}

/**
 * The ICE servers announced for a WHIP/WHEP endpoint (`OPTIONS`, `Link:
 * <turn:…>; rel="ice-server"; username=…; credential=…`), with this
 * client's own TURN credential: asked before the offer, so that a browser
 * whose network blocks UDP gathers a relay candidate through TURN over TCP.
 */
export async function iceServers(url, token) {
  let resp;
  try {
    resp = await fetch(url, { method: "OPTIONS", headers: { Authorization: `Bearer ${token}` } });
  } catch {
    return [];
  }
  if (!resp.ok) return [];
  return parseIceLinks(resp.headers.get("Link") || "");
}

/** `Link` header values (joined by ", ") to RTCIceServer objects. */
export function parseIceLinks(header) {
  const servers = [];
  for (const link of header.split(/,\s*(?=<)/)) {
    const target = /^\s*<([^>]*)>/.exec(link);
    if (!target) continue;
    const params = {};
    for (const [, name, quoted, bare] of link.matchAll(/;\s*([\w-]+)\s*=\s*(?:"([^"]*)"|([^;,\s]*))/g)) {
      params[name.toLowerCase()] = quoted ?? bare;
    }
    if (params.rel !== "ice-server") continue;
    const server = { urls: target[1] };
    if (params.username !== undefined) server.username = params.username;
    if (params.credential !== undefined) server.credential = params.credential;
    servers.push(server);
  }
  return servers;
}

/** Publishes a camera/microphone stream over WHIP. */
export async function whip(sessionId, token, stream) {
  const pc = new RTCPeerConnection({ iceServers: await iceServers(`/whip/${sessionId}`, token) });
  for (const track of stream.getTracks()) {
    pc.addTransceiver(track, { direction: "sendonly", streams: [stream] });
  }
  return negotiate(pc, `/whip/${sessionId}`, token);
}

/** Plays a session over WHEP; `stream` fills as tracks arrive. */
export async function whep(sessionId, token) {
  const pc = new RTCPeerConnection({ iceServers: await iceServers(`/whep/${sessionId}`, token) });
  const stream = new MediaStream();
  pc.addTransceiver("video", { direction: "recvonly" });
  pc.addTransceiver("audio", { direction: "recvonly" });
  pc.addEventListener("track", (event) => stream.addTrack(event.track));
  const session = await negotiate(pc, `/whep/${sessionId}`, token);
  return { ...session, stream };
}

/** Builds an element: attributes, `on*` listeners, then children. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      node.addEventListener(name.slice(2).toLowerCase(), value);
    } else if (value === true) {
      node.setAttribute(name, "");
    } else {
      node.setAttribute(name, value);
    }
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

/** "m:ss" for a countdown (never negative). */
export function formatCountdown(ms) {
  const total = Math.max(0, Math.ceil(ms / 1000));
  const minutes = Math.floor(total / 60);
  const seconds = String(total % 60).padStart(2, "0");
  return `${minutes}:${seconds}`;
}
