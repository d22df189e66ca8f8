// The frame schemas (docs/protocol/*.schema.json) through quicktype, as an
// app developer would take them: the generated types compile strictly, and
// their runtime checks take frames as the server and clients send them and
// refuse a wrong one. Run by scripts/openapi-clients.sh.
import { Convert as Client } from "./client";
import { Convert as Server } from "./server";

declare const process: { exit(code: number): never };

const session = "0192f0e0-0000-7000-8000-000000000000";
const serverFrames = [
  { type: "hello", protocol: 1, server_time_ms: 1795712410000, heartbeat_interval_ms: 15000,
    max_frame_bytes: 16384, max_message_chars: 1000 },
  { type: "pong", server_time_ms: 1795712410000 },
  { type: "reply", ref: 1, status: "error", error: { code: "not_joined", message: "join first" } },
  { type: "chat.message", session_id: session, seq: 1, text: "hello",
    author: { id: session, name: "Anna", role: "host" }, sent_at: "2026-12-03T12:00:00Z" },
  { type: "chat.deleted", session_id: session, seq: 1 },
];
const clientFrames = [
  { type: "join", session_id: session, last_seq: 3, ref: 1 },
  { type: "chat.send", session_id: session, text: "hi", client_msg_id: "m1", ref: "a" },
  { type: "timer.control", session_id: session, action: "goto", step: 2 },
  { type: "ping", ref: 7 },
];

let failed = 0;
for (const frame of serverFrames) {
  try {
    Server.toServerFrame(JSON.stringify(frame));
  } catch (e) {
    failed++;
    console.error(`server frame ${frame.type} refused: ${e}`);
  }
}
for (const frame of clientFrames) {
  try {
    Client.toClientFrame(JSON.stringify(frame));
  } catch (e) {
    failed++;
    console.error(`client frame ${frame.type} refused: ${e}`);
  }
}
let wrongRefused = false;
try {
  Server.toServerFrame(JSON.stringify({ type: "hello", protocol: "one" }));
} catch {
  wrongRefused = true;
}
if (!wrongRefused) {
  failed++;
  console.error("a hello with a string protocol was taken");
}
console.log(`quicktype frames: ${serverFrames.length + clientFrames.length + 1 - failed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
