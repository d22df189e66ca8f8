"""An independent smartwatch client, written from docs/watch.md alone with
Python's `websockets` and `urllib`: pair with a code, collect the device
token, follow the feed (snapshot, timer, ticks, ping/pong, bye on
revocation) and the server-sent-events fallback. Every frame is validated
against docs/watch.schema.json and must stay under 200 bytes.
Usage: watch_client.py BASE_URL SCHEMA_PATH
"""

import json
import sys
import time
import urllib.request
import uuid

import jsonschema
from websockets.sync.client import connect

from common import check, finish, request

BASE = sys.argv[1].rstrip("/")
SCHEMA = json.load(open(sys.argv[2]))
SERVER_FRAME = jsonschema.Draft202012Validator(SCHEMA["server_frame"])
API = BASE + "/api/v1"


def call(method, path, body=None, token=None, headers=None):
    return request(API + path, method, body, token, headers)


def frame_of(text):
    check_size = len(text.encode()) < 200
    frame = json.loads(text)
    errors = list(SERVER_FRAME.iter_errors(frame))
    if errors or not check_size:
        check(f"frame {frame.get('type')} valid and small", False, (len(text), errors[:1], text))
    return frame


def until(ws, kind, timeout=10):
    end = time.time() + timeout
    while time.time() < end:
        frame = frame_of(ws.recv(timeout=max(0.1, end - time.time())))
        if frame["type"] == kind:
            return frame
    raise TimeoutError(kind)


# A user with a live session whose recipe has a timed step.
name = "py" + uuid.uuid4().hex[:10]
_, user = call("POST", "/auth/register", {"username": name, "password": "python-client-pw"})
token = user["access_token"]
_, recipe = call("POST", "/recipes", {"title": "Eggs", "steps": [
    {"text": "Boil the eggs", "duration_s": 420, "label": "Boil"},
    {"text": "Cool them"}]}, token)
_, session = call("POST", "/sessions", {"recipe_id": recipe["id"], "title": "Py eggs"}, token)
sid = session["id"]
call("POST", f"/sessions/{sid}/start", {}, token)

# 1. Pairing, as docs/watch.md describes it.
status, pairing = call("POST", "/watch/pairings", {"device_name": "Py watch"})
check("pairing created (201)", status == 201, pairing)
code = pairing["code"]
check("code is 6 characters without look-alikes",
      len(code) == 6 and all(c in "ACDEFGHJKMNPQRTUVWXY34679" for c in code), code)
poll = {"X-Poll-Secret": pairing["poll_secret"]}
status, state = call("GET", f"/watch/pairings/{pairing['pairing_id']}", headers=poll)
check("pending before the claim", state["status"] == "pending", state)
status, claimed = call("POST", "/watch/pairings/claim",
                          {"code": code[:3].lower() + " " + code[3:], "session_id": sid}, token)
check("claim accepts a loosely typed code", status == 200, claimed)
status, again = call("POST", "/watch/pairings/claim", {"code": code, "session_id": sid}, token)
check("a used code gets 409 pairing_used", status == 409 and again["code"] == "pairing_used", again)
status, state = call("GET", f"/watch/pairings/{pairing['pairing_id']}", headers=poll)
check("claimed: a device token", state["status"] == "claimed" and state["device_token"], state)
device_token = state["device_token"]
status, wrong = call("GET", f"/watch/pairings/{pairing['pairing_id']}", headers={"X-Poll-Secret": "x"})
check("wrong poll secret is refused", status == 403 and wrong["code"] == "forbidden", wrong)

# 2. The WebSocket feed.
url = BASE.replace("http", "ws", 1) + "/watch/ws"
with connect(url, additional_headers={"Authorization": f"Bearer {device_token}"}, open_timeout=10) as ws:
    snapshot = until(ws, "snapshot")
    check("snapshot on connect", snapshot["state"] == "idle" and snapshot["remaining_ms"] == 420000, snapshot)
    call("POST", f"/sessions/{sid}/timer", {"action": "start"}, token)
    timer = until(ws, "timer")
    check("timer frame with an absolute deadline",
          timer["state"] == "running" and timer["deadline_ms"] - timer["server_time_ms"] == timer["remaining_ms"], timer)
    tick = until(ws, "tick")
    left = tick["remaining_ms"]
    check("tick on a whole second of remaining time",
          min(left % 1000, 1000 - left % 1000) <= 250, tick)
    sent = int(time.time() * 1000)
    ws.send(json.dumps({"type": "ping", "client_time_ms": sent}))
    pong = until(ws, "pong")
    received = int(time.time() * 1000)
    offset = pong["server_time_ms"] - (sent + (received - sent) // 2)
    check("pong echoes client_time_ms; offset is small on one machine",
          pong["client_time_ms"] == sent and abs(offset) < 100, (pong, offset))

    # 3. Server-sent events, with nothing but urllib.
    req = urllib.request.Request(BASE + f"/watch/events?token={device_token}&tick=0")
    with urllib.request.urlopen(req, timeout=10) as sse:
        check("SSE content type", sse.headers["content-type"] == "text/event-stream", sse.headers)
        line = sse.readline().decode()
        check("SSE starts with a snapshot", line.startswith("data: ") and
              frame_of(line[6:].strip())["type"] == "snapshot", line)

    # 4. Revocation closes the feed.
    status, _ = call("DELETE", f"/watch/devices/{state['device_id']}", token=token)
    check("revoked (204)", status == 204)
    bye = until(ws, "bye", timeout=2)
    check("bye revoked within a second", bye["reason"] == "revoked", bye)

try:
    connect(url + f"?token={device_token}", open_timeout=10)
    check("a revoked token is refused before the upgrade", False)
except Exception as e:
    check("a revoked token is refused before the upgrade", "401" in str(e), e)

finish()
