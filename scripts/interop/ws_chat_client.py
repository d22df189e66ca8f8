"""An independent client of Simmer's realtime protocol, written from
docs/protocol.md alone with Python's `websockets`: connect, join, chat,
resume. Every frame the server sends is validated against
docs/protocol/server-frame.schema.json. Usage: ws_chat_client.py BASE_URL SCHEMA_PATH
"""

import json
import sys
import uuid

import jsonschema
from websockets.sync.client import connect

from common import check, finish, request

BASE = sys.argv[1].rstrip("/")
SCHEMA = json.load(open(sys.argv[2]))
SERVER_FRAME = jsonschema.Draft202012Validator(SCHEMA)
WS = BASE.replace("http", "ws", 1) + "/ws"


def post(path, body, token=None):
    status, answer = request(BASE + path, "POST", body, token)
    if status >= 400:
        raise RuntimeError(f"POST {path}: {status} {answer}")
    return answer


def recv(ws):
    frame = json.loads(ws.recv(timeout=10))
    errors = list(SERVER_FRAME.iter_errors(frame))
    check(f"frame {frame.get('type')} matches the schema", not errors, errors[:1])
    return frame


def until(ws, predicate):
    while True:
        frame = recv(ws)
        if predicate(frame):
            return frame


def open_ws(token):
    ws = connect(WS, additional_headers={"Authorization": f"Bearer {token}"},
                 subprotocols=["simmer.v1"], open_timeout=10)
    check("subprotocol negotiated", ws.subprotocol == "simmer.v1", ws.subprotocol)
    hello = recv(ws)
    check("hello first", hello["type"] == "hello" and hello["protocol"] == 1, hello)
    return ws


host = post("/api/v1/auth/register", {"username": "py" + uuid.uuid4().hex[:10], "password": "python-client"})
token = host["access_token"]
recipe = post("/api/v1/recipes", {"title": "Soup", "steps": [{"text": "Stir", "duration_s": 30}]}, token)
session = post("/api/v1/sessions", {"recipe_id": recipe["id"], "title": "Python"}, token)
sid = session["id"]
post(f"/api/v1/sessions/{sid}/start", {}, token)
guest = post(f"/api/v1/sessions/{sid}/guest-tokens", {"display_name": "Py guest"})["access_token"]

with open_ws(token) as h, open_ws(guest) as g:
    h.send(json.dumps({"type": "join", "session_id": sid, "ref": "j1"}))
    reply = until(h, lambda f: f["type"] == "reply" and f.get("ref") == "j1")
    check("host join ok", reply["status"] == "ok" and reply["body"]["role"] == "host", reply)
    g.send(json.dumps({"type": "join", "session_id": sid, "ref": 1}))
    reply = until(g, lambda f: f["type"] == "reply" and f.get("ref") == 1)
    check("guest join ok", reply["status"] == "ok" and reply["body"]["role"] == "guest", reply)

    g.send(json.dumps({"type": "chat.send", "session_id": sid, "text": "hello from Python",
                       "client_msg_id": "py-1", "ref": 2}))
    ack = until(g, lambda f: f["type"] == "reply" and f.get("ref") == 2)
    check("chat acknowledged with seq 1", ack["status"] == "ok" and ack["body"]["seq"] == 1, ack)
    msg = until(h, lambda f: f["type"] == "chat.message")
    check("host receives the message", msg["text"] == "hello from Python" and msg["author"]["role"] == "guest", msg)

    g.send(json.dumps({"type": "chat.send", "session_id": sid, "text": "hello from Python",
                       "client_msg_id": "py-1", "ref": 3}))
    again = until(g, lambda f: f["type"] == "reply" and f.get("ref") == 3)
    check("resend is idempotent", again["body"] == ack["body"], again)

    g.send("this is not json")
    err = until(g, lambda f: f["type"] == "error")
    check("bad frame gets an error frame", err["code"] == "invalid_frame", err)
    g.send(json.dumps({"type": "ping"}))
    pong = until(g, lambda f: f["type"] == "pong")
    check("ping answered", pong["server_time_ms"] > 0, pong)

with open_ws(token) as late:
    late.send(json.dumps({"type": "join", "session_id": sid, "last_seq": 0, "ref": 9}))
    reply = until(late, lambda f: f["type"] == "reply" and f.get("ref") == 9)
    check("resume join reports last_seq", reply["body"]["last_seq"] == 1, reply)
    replayed = until(late, lambda f: f["type"] == "chat.message")
    check("resume replays the missed message", replayed["seq"] == 1, replayed)

try:
    connect(WS + "?token=forged", open_timeout=10)
    check("bad token refused before the upgrade", False)
except Exception as e:  # websockets raises InvalidStatus for the HTTP 401
    check("bad token refused before the upgrade", "401" in str(e), e)

finish()
