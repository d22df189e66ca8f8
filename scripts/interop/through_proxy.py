"""Simmer behind the shipped nginx config (infra/nginx/simmer.conf), for real:
three nodes on one PostgreSQL and one Redis, Debian's nginx terminating TLS in
front of them. A client written from docs/protocol.md (Python's `websockets`
over wss, urllib over https, both trusting only the test's own CA) follows a
live session through the proxy while every node is restarted in turn with
SIGTERM: it follows each `reconnect`, resumes with `last_seq`, and must see
every acknowledged message once and in order, the timer unchanged, and no
error frame. Then, with every node gone (each marked failed by nginx), the
first node back must be used at once.

The viewer uses the asyncio client of `websockets`, not its sync one: the
sync client reads the TLS socket on a thread of its own while the caller's
thread writes to it, which CPython's `ssl` (one OpenSSL object) does not
make safe. Over TLS 1.3 about 3 handshakes in 1,000 were lost that way
(the request garbled or the answer never read; measured against a plain
`websockets` server, no Simmer and no nginx in between), which failed this
test in CI as "timed out while waiting for handshake response". Usage:

    through_proxy.py SIMMER_BINARY DATABASE_URL REDIS_URL WORKDIR
"""

import asyncio
import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
import uuid

from websockets.asyncio.client import connect

from common import check, failures, finish, request

SIMMER, DATABASE_URL, REDIS_URL, WORK = sys.argv[1:5]
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SECRET = "proxy-test-secret-0123456789abcdef0123456789"
NODES = 3


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(*args):
    subprocess.run(args, check=True, capture_output=True)


# --- a CA and a certificate for 127.0.0.1 ------------------------------------
tls = os.path.join(WORK, "tls")
os.makedirs(tls, exist_ok=True)
ca_key, ca_crt = os.path.join(tls, "ca.key"), os.path.join(tls, "ca.pem")
key, csr, crt = os.path.join(tls, "privkey.pem"), os.path.join(tls, "req.csr"), os.path.join(tls, "fullchain.pem")
run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=simmer test CA",
    "-keyout", ca_key, "-out", ca_crt)
run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", key, "-out", csr)
ext = os.path.join(tls, "ext.cnf")
with open(ext, "w") as f:
    f.write("subjectAltName=IP:127.0.0.1\n")
run("openssl", "x509", "-req", "-in", csr, "-CA", ca_crt, "-CAkey", ca_key, "-CAcreateserial", "-days", "2",
    "-extfile", ext, "-out", crt)
TLS_CONTEXT = ssl.create_default_context(cafile=ca_crt)
urllib.request.install_opener(urllib.request.build_opener(urllib.request.HTTPSHandler(context=TLS_CONTEXT)))

# --- three nodes ---------------------------------------------------------------
ports = [free_port() for _ in range(NODES)]


def start_node(i):
    data = os.path.join(WORK, f"n{i}")
    os.makedirs(data, exist_ok=True)
    env = {
        "PATH": os.environ.get("PATH", ""),
        "SIMMER_BIND": f"127.0.0.1:{ports[i]}",
        "SIMMER_DATA_DIR": data,
        "DATABASE_URL": DATABASE_URL,
        "REDIS_URL": REDIS_URL,
        "SIMMER_NODE_ID": f"n{i}",
        "SIMMER_JWT_SECRET": SECRET,
        "SIMMER_TRUSTED_PROXIES": "127.0.0.1",
        "SIMMER_LEASE_TTL_MS": "2000",
        "SIMMER_SHUTDOWN_TIMEOUT_S": "5",
        "SIMMER_DRAIN_SPREAD_MS": "1000",
        "SIMMER_CHAT_RATE_PER_S": "100",
        "SIMMER_CHAT_BURST": "100",
        "RUST_LOG": "warn",
    }
    log = open(os.path.join(WORK, f"n{i}.log"), "ab")
    proc = subprocess.Popen([SIMMER, "serve"], env=env, stdout=log, stderr=log)
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            status, _ = request(f"http://127.0.0.1:{ports[i]}/readyz")
            if status == 200:
                return proc
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"node {i} did not get ready; see {WORK}/n{i}.log")


def stop_all(procs):
    """SIGTERM to each, then waits for them all (killed after 20 s)."""
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


nodes = [start_node(i) for i in range(NODES)]

# --- nginx with the shipped config, only the addresses changed ---------------
tls_port, http_port = free_port(), free_port()
shipped = open(os.path.join(ROOT, "infra", "nginx", "simmer.conf")).read()
replacements = [(f"server simmer-{i + 1}:8080", f"server 127.0.0.1:{ports[i]}") for i in range(NODES)] + [
    ("listen 443 ssl;", f"listen 127.0.0.1:{tls_port} ssl;"),
    ("listen [::]:443 ssl;", ""),
    ("listen 80;", f"listen 127.0.0.1:{http_port};"),
    ("listen [::]:80;", ""),
    ("/etc/nginx/tls/", tls + "/"),
]
conf = shipped
for old, new in replacements:
    check(f"the shipped config has {old!r}", old in conf, "infra/nginx/simmer.conf changed: update this test")
    conf = conf.replace(old, new)
for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
    os.makedirs(os.path.join(WORK, "nginx", sub), exist_ok=True)
    os.chmod(os.path.join(WORK, "nginx", sub), 0o777)
with open(os.path.join(WORK, "simmer.conf"), "w") as f:
    f.write(conf)
main_conf = os.path.join(WORK, "nginx.conf")
with open(main_conf, "w") as f:
    f.write(f"""worker_processes 1;
daemon off;
pid {WORK}/nginx.pid;
error_log {WORK}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log {WORK}/nginx-access.log;
    client_body_temp_path {WORK}/nginx/body;
    proxy_temp_path {WORK}/nginx/proxy;
    fastcgi_temp_path {WORK}/nginx/fastcgi;
    uwsgi_temp_path {WORK}/nginx/uwsgi;
    scgi_temp_path {WORK}/nginx/scgi;
    include {WORK}/simmer.conf;
}}
""")
nginx = subprocess.Popen(["nginx", "-c", main_conf, "-p", WORK],
                         stdout=subprocess.DEVNULL, stderr=open(os.path.join(WORK, "nginx.out"), "wb"))
BASE = f"https://127.0.0.1:{tls_port}"
for _ in range(100):
    try:
        if request(BASE + "/healthz")[0] == 200:
            break
    except OSError:
        time.sleep(0.1)
check("nginx answers over TLS", request(BASE + "/healthz")[0] == 200)
plain = http.client.HTTPConnection("127.0.0.1", http_port, timeout=10)
plain.request("GET", "/healthz")
redirect = plain.getresponse()
check("plain HTTP is redirected to HTTPS",
      redirect.status == 301 and redirect.getheader("location", "").startswith("https://"), redirect.status)
plain.close()
check("/metrics stays inside", request(BASE + "/metrics")[0] == 404)


def post(path, body, token=None):
    status, answer = request(BASE + path, "POST", body, token)
    if status >= 400:
        raise RuntimeError(f"POST {path}: {status} {answer}")
    return answer


host = post("/api/v1/auth/register", {"username": "px" + uuid.uuid4().hex[:10], "password": "through-the-proxy"})
token = host["access_token"]
viewer = post("/api/v1/auth/register", {"username": "pv" + uuid.uuid4().hex[:10], "password": "through-the-proxy"})
recipe = post("/api/v1/recipes", {"title": "Risotto", "steps": [{"text": "Stir", "duration_s": 600}]}, token)
sid = post("/api/v1/sessions", {"recipe_id": recipe["id"], "title": "Through nginx"}, token)["id"]
post(f"/api/v1/sessions/{sid}/start", {}, token)
timer = post(f"/api/v1/sessions/{sid}/timer", {"action": "start"}, token)
deadline_ms = timer["deadline_ms"]

# --- the viewer: follows reconnects, resumes, collects what it sees ----------
stop = threading.Event()
seen, errors, reconnects, timers = [], [], [], []
# What the viewer did and when, printed if a check fails.
started = time.monotonic()
timeline = []


def note(*what):
    timeline.append((round(time.monotonic() - started, 3),) + what)


async def follow_async():
    last_seq = 0
    while not stop.is_set():
        note("connect", last_seq)
        try:
            ws = await connect(BASE.replace("https", "wss", 1) + "/ws", ssl=TLS_CONTEXT,
                               additional_headers={"Authorization": f"Bearer {viewer['access_token']}"},
                               subprotocols=["simmer.v1"], open_timeout=10)
        except Exception as e:  # noqa: BLE001 - a refused connect is retried
            errors.append(f"connect: {e}")
            note("connect failed", str(e))
            await asyncio.sleep(0.5)
            continue
        note("connected")
        async with ws:
            await ws.send(json.dumps({"type": "join", "session_id": sid, "last_seq": last_seq, "ref": 1}))
            while not stop.is_set():
                try:
                    # (Cancelling `recv` loses nothing: websockets' contract.)
                    frame = json.loads(await asyncio.wait_for(ws.recv(), 1))
                except asyncio.TimeoutError:
                    continue
                except Exception as e:  # noqa: BLE001 - closed: reconnect
                    note("closed", str(e))
                    break
                kind = frame["type"]
                if kind == "chat.message":
                    seen.append(frame["seq"])
                    last_seq = frame["seq"]
                    continue
                note(kind, frame.get("status") or frame.get("reason") or frame.get("state") or "")
                if kind == "timer":
                    timers.append(frame)
                elif kind == "reconnect":
                    reconnects.append(frame)
                    await asyncio.sleep(frame["after_ms"] / 1000)
                    break
                elif kind == "error" or (kind == "reply" and frame["status"] != "ok"):
                    errors.append(frame)


def follow():
    asyncio.run(follow_async())


acked = []


def send():
    n = 0
    while not stop.is_set():
        n += 1
        body = {"text": f"m{n}", "client_msg_id": f"p{n}"}
        while not stop.is_set():
            try:
                status, answer = request(BASE + f"/api/v1/sessions/{sid}/messages", "POST", body, token)
            except OSError as e:
                errors.append(f"send: {e}")
                time.sleep(0.2)
                continue
            if status == 201:
                acked.append(answer["seq"])
                break
            if status != 503:
                errors.append(f"send {status} {answer}")
            time.sleep(0.05)
        time.sleep(0.1)


threads = [threading.Thread(target=follow), threading.Thread(target=send)]
for t in threads:
    t.start()
time.sleep(1)

# --- rolling restart: every node in turn, SIGTERM, wait, start again ---------
for i in range(NODES):
    note("SIGTERM to node", i)
    nodes[i].send_signal(signal.SIGTERM)
    code = nodes[i].wait(timeout=20)
    check(f"node {i} drained and exited 0", code == 0, code)
    nodes[i] = start_node(i)
    note("node ready again", i)
    time.sleep(1.5)

time.sleep(2)
stop.set()
for t in threads:
    t.join(timeout=20)

check("messages were acknowledged during the restarts", len(acked) > 30, len(acked))
check("acks are gap-free", acked == list(range(1, len(acked) + 1)), acked[:5])
check("the viewer saw every acknowledged message once, in order",
      seen[:len(acked)] == acked, f"{len(seen)} seen vs {len(acked)} acked")
check("the viewer was told to reconnect and followed", len(reconnects) >= 1, reconnects)
check("no error on the way", not errors, errors[:3])
status, now = request(BASE + f"/api/v1/sessions/{sid}/timer")
check("the timer is still running with the same deadline",
      status == 200 and now["state"] == "running" and now["deadline_ms"] == deadline_ms, now)
status, page = request(BASE + f"/api/v1/sessions/{sid}/messages?limit=100", token=token)
stored = sorted(m["seq"] for m in page["items"])
check("history holds what was acknowledged", stored[-min(100, len(acked)):] == acked[-100:], stored[-3:])
print(f"through nginx: {len(acked)} messages, {len(reconnects)} reconnects followed")

# --- every node refused within nginx's fail_timeout: the first one back is
# used at once, not held out until its mark lapses -------------------------
stop_all(nodes)
check("with every node gone, the proxy answers 502", request(BASE + "/healthz")[0] == 502)
nodes[0] = start_node(0)
status, _ = request(BASE + "/healthz")
check("the first node back is used at once, though every node is marked failed", status == 200, status)
if failures():
    print("the viewer's timeline (s since it started):")
    for event in timeline:
        print("   ", *event)

stop_all(nodes + [nginx])
finish()
