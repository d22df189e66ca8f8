"""The mobile SDK through its generated Python bindings (UniFFI: the same C
ABI, buffers and async futures that the Kotlin and Swift bindings call),
against a real server. Setup that an app would not do (registering the host,
recipes, sessions, timer and pairing actions of the host) goes over plain
HTTP; everything an app does goes through the bindings.

    python3 ffi_test.py http://127.0.0.1:PORT BINDINGS_DIR [SHORT_TTL_BASE]

SHORT_TTL_BASE, when given, is a second server whose access tokens live one
second: an app away past its token's expiry comes back refreshed.

Exits non-zero when a check fails.
"""

import asyncio
import os
import ssl
import subprocess
import sys
import tempfile
import time
import uuid

BASE, BINDINGS = sys.argv[1], sys.argv[2]
SHORT_TTL_BASE = sys.argv[3] if len(sys.argv) > 3 else None
sys.path.insert(0, BINDINGS)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "interop"))

import simmer_mobile as sm  # noqa: E402  (generated into BINDINGS)
from common import check, finish, request  # noqa: E402

API = f"{BASE}/api/v1"
# Every wait is bounded; on this machine each takes milliseconds.
WAIT_S = 10


def now_ms():
    return int(time.time() * 1000)


async def bounded(coro, seconds=WAIT_S):
    return await asyncio.wait_for(coro, seconds)


async def fails_with(coro, kind):
    """The SimmerError the call raised if it is of `kind`, else None."""
    try:
        await bounded(coro)
    except kind as e:
        return e
    except Exception as e:  # noqa: BLE001  (reported as the failure)
        print(f"     raised {e!r}, not {kind.__name__}")
    return None


def make_certificates(directory):
    """A CA (PEM, as an app would pass in `tls_roots`) and a certificate it
    signed for 127.0.0.1, made with openssl."""
    ca_key, ca = os.path.join(directory, "ca.key"), os.path.join(directory, "ca.pem")
    key, csr, crt = (os.path.join(directory, n) for n in ("server.key", "server.csr", "server.pem"))
    ext = os.path.join(directory, "ext.cnf")
    with open(ext, "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\n")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for cmd in (
        ["req", "-x509", *ec, "-days", "1", "-subj", "/CN=simmer ffi test CA", "-keyout", ca_key, "-out", ca],
        ["req", *ec, "-subj", "/CN=127.0.0.1", "-keyout", key, "-out", csr],
        ["x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-days", "1",
         "-extfile", ext, "-out", crt],
    ):
        subprocess.run(["openssl", *cmd], check=True, capture_output=True)
    with open(ca) as f:
        return f.read(), crt, key


async def tls_front(upstream_port, crt, key):
    """TLS in front of the server (as nginx would be): a loopback port that
    forwards the decrypted bytes. Returns the server and its port."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(crt, key)

    async def pipe(reader, writer):
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, ssl.SSLError, OSError):
            pass
        finally:
            writer.close()

    async def serve(reader, writer):
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", upstream_port)
        except OSError:
            writer.close()
            return
        try:
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        except asyncio.CancelledError:
            pass  # the test is over: nothing left to forward

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=context)
    return server, server.sockets[0].getsockname()[1]


class Inbox:
    """A client's events, read in order; what a wait skips is kept."""

    def __init__(self, client):
        self.client = client
        self.seen = []

    async def until(self, wanted, seconds=WAIT_S):
        """The first event (read from now on) for which `wanted` holds."""
        deadline = time.monotonic() + seconds
        while True:
            event = await bounded(self.client.next_event(), max(0.01, deadline - time.monotonic()))
            if event is None:
                raise EOFError("no more events: the client is closed")
            self.seen.append(event)
            if wanted(event):
                return event

    async def chats(self, count):
        """The next `count` chat messages, in the order they arrived."""
        got = []
        while len(got) < count:
            event = await self.until(lambda e: e.is_chat() or e.is_session_ended())
            if event.is_session_ended():
                break
            got.append(event.message)
        return got

    async def quiet(self, seconds=0.5):
        """Every event that arrives within `seconds`."""
        extra = []
        try:
            while True:
                event = await asyncio.wait_for(self.client.next_event(), seconds)
                if event is None:
                    break
                extra.append(event)
        except asyncio.TimeoutError:
            pass
        self.seen.extend(extra)
        return extra


async def main():
    # --- setup over HTTP: the host's account, a recipe, a live session -------
    password = "host-password-1"
    status, reg = request(
        f"{API}/auth/register",
        "POST",
        {"username": "ffi_host", "password": password, "display_name": "Host Anna"},
    )
    check("setup: the host registers (HTTP)", status == 201, reg)

    # --- sign-in through the bindings ----------------------------------------
    e = await fails_with(sm.SimmerClient.sign_in(BASE, "ffi_host", "wrong password", []), sm.SimmerError.Server)
    check("sign_in with a wrong password: Server error invalid_credentials", e is not None and e.code == "invalid_credentials", e)
    e = await fails_with(sm.SimmerClient.sign_in("127.0.0.1:1", "ffi_host", password, []), sm.SimmerError.InvalidArgument)
    check("sign_in with a base URL that is not http(s): InvalidArgument", e is not None)
    e = await fails_with(sm.SimmerClient.sign_in(BASE, "ffi_host", password, ["not a certificate"]), sm.SimmerError.InvalidArgument)
    check("sign_in with a TLS root that is not PEM: InvalidArgument", e is not None)

    host = await bounded(sm.SimmerClient.sign_in(BASE, "FFI_Host", password, []))
    account = host.account()
    check(
        "sign_in: the account",
        account.user_id == reg["user"]["id"]
        and account.username == "ffi_host"
        and account.display_name == "Host Anna"
        and not account.guest,
        account,
    )
    creds = host.credentials()
    check("credentials: a bearer token valid for minutes", creds.expires_at_ms > now_ms() + 60_000, creds)
    token = creds.access_token
    status, me = request(f"{API}/me", token=token)
    check("the binding's token works for REST (GET /me)", status == 200 and me["username"] == "ffi_host", me)

    status, recipe = request(
        f"{API}/recipes",
        "POST",
        {
            "title": "Onion soup",
            "steps": [
                {"text": "Chop the onions finely", "duration_s": 120, "label": "Chop"},
                {"text": "Simmer in stock", "duration_s": 300, "label": "Simmer"},
                {"text": "Serve hot"},
            ],
        },
        token,
    )
    check("setup: a recipe (HTTP)", status == 201, recipe)
    status, session = request(
        f"{API}/sessions", "POST", {"recipe_id": recipe["id"], "title": "FFI live", "allow_guests": True}, token
    )
    check("setup: a session that allows guests (HTTP)", status == 201, session)
    sid = session["id"]
    status, _ = request(f"{API}/sessions/{sid}/start", "POST", token=token)
    check("setup: the session goes live (HTTP)", status == 200)
    status, closed = request(f"{API}/sessions", "POST", {"recipe_id": recipe["id"], "title": "Members only", "allow_guests": False}, token)
    check("setup: a session without guests (HTTP)", status == 201, closed)

    # --- joining --------------------------------------------------------------
    host_events = Inbox(host)
    snap = await bounded(host.join(sid))
    check(
        "join: the snapshot (role, state, timer, last_seq)",
        snap.session_id == sid
        and snap.title == "FFI live"
        and snap.state == "live"
        and snap.role == sm.Role.HOST
        and snap.last_seq == 0
        and snap.timer.state == sm.TimerState.IDLE
        and snap.timer.step_count == 3
        and snap.timer.step.label == "Chop"
        and snap.timer.remaining_ms == 120_000,
        snap,
    )
    e = await fails_with(host.join("not-a-uuid"), sm.SimmerError.InvalidArgument)
    check("join with an id that is not a UUID: InvalidArgument", e is not None)
    e = await fails_with(host.join(str(uuid.uuid4())), sm.SimmerError.Server)
    check("join an unknown session: Server error not_found", e is not None and e.code == "not_found", e)
    e = await fails_with(host.send_chat(str(uuid.uuid4()), "hello?"), sm.SimmerError.Server)
    check("send_chat to a session not joined: Server error not_joined", e is not None and e.code == "not_joined", e)

    e = await fails_with(sm.SimmerClient.sign_in_as_guest(BASE, closed["id"], "Nosy", []), sm.SimmerError.Server)
    check("sign_in_as_guest where guests are not allowed: Server error forbidden", e is not None and e.code == "forbidden", e)
    guest = await bounded(sm.SimmerClient.sign_in_as_guest(BASE, sid, "Guest Bo", []))
    guest_events = Inbox(guest)
    check(
        "sign_in_as_guest: the account",
        guest.account().guest and guest.account().username is None and guest.account().display_name == "Guest Bo",
        guest.account(),
    )
    gsnap = await bounded(guest.join(sid))
    check("the guest joins as a guest", gsnap.role == sm.Role.GUEST and gsnap.state == "live", gsnap)
    presence = await host_events.until(lambda e: e.is_presence() and e.viewer_count > snap.viewer_count)
    check("the host sees the viewer arrive (Presence)", presence.session_id == sid, presence)

    # --- chat with acknowledgements, in order -----------------------------------
    count = 5
    acks = [await bounded(host.send_chat(sid, f"hello {i}")) for i in range(1, count + 1)]
    check("send_chat: acks with seq 1..5", [a.seq for a in acks] == list(range(1, count + 1)), acks)
    check("every ack names its session and its idempotency key", all(a.session_id == sid and a.client_msg_id for a in acks))
    got = await guest_events.chats(count)
    check(
        "the guest gets the 5 messages in order",
        [(m.seq, m.text) for m in got] == [(i, f"hello {i}") for i in range(1, count + 1)],
        [(m.seq, m.text) for m in got],
    )
    check(
        "each message carries its author and the sender's key",
        all(
            m.author.role == sm.Role.HOST
            and m.author.name == "Host Anna"
            and m.author.user_id == account.user_id
            and m.client_msg_id == a.client_msg_id
            and not m.deleted
            for m, a in zip(got, acks)
        ),
        got[:1],
    )

    # --- a dropped link: resume without loss or repeats -----------------------
    await bounded(guest.drop_connection())
    await guest_events.until(lambda e: e.is_reconnecting())
    away = [await bounded(host.send_chat(sid, f"while away {i}")) for i in range(1, 4)]
    check("the host goes on: acks 6..8", [a.seq for a in away] == [6, 7, 8], away)
    await guest_events.until(lambda e: e.is_reconnected())
    got = await guest_events.chats(3)
    check(
        "after Reconnected the guest gets 6..8, in order",
        [(m.seq, m.text) for m in got] == [(6, "while away 1"), (7, "while away 2"), (8, "while away 3")],
        [(m.seq, m.text) for m in got],
    )
    ack = await bounded(guest.send_chat(sid, "back again"))
    check("the guest sends after the reconnect: ack seq 9", ack.seq == 9, ack)
    host_got = await host_events.chats(9)
    check(
        "the host gets 1..9 exactly once, in order (its own included)",
        [m.seq for m in host_got] == list(range(1, 10)) and host_got[-1].author.role == sm.Role.GUEST,
        [m.seq for m in host_got],
    )
    await guest_events.quiet()
    guest_seqs = [e.message.seq for e in guest_events.seen if e.is_chat()]
    check("the guest saw 1..9 once each, across the drop", guest_seqs == list(range(1, 10)), guest_seqs)

    # --- timer events -----------------------------------------------------------
    status, timer = request(f"{API}/sessions/{sid}/timer", "POST", {"action": "start"}, token)
    check("setup: the host starts the timer (HTTP)", status == 200 and timer["state"] == "running", timer)
    for name, inbox in (("guest", guest_events), ("host", host_events)):
        event = await inbox.until(lambda e: e.is_timer_changed() and e.timer.state == sm.TimerState.RUNNING)
        t = event.timer
        check(
            f"the {name} gets the running timer (TimerChanged)",
            event.session_id == sid
            and t.step_index == 0
            and t.deadline_ms == timer["deadline_ms"]
            and t.step.label == "Chop"
            and t.step.duration_s == 120,
            t,
        )

    # --- a watch: pairing, clock sync, the displayed countdown ------------------
    pairing = await bounded(sm.request_pairing(BASE, "FFI watch", []))
    code = pairing.code()
    check("request_pairing: a 6-character code", len(code) == 6, code)
    status, claim = request(f"{API}/watch/pairings/claim", "POST", {"code": code, "session_id": sid}, token)
    check("setup: the host claims the code (HTTP)", status == 200, claim)
    device = await bounded(pairing.wait_claimed(10_000))
    check(
        "wait_claimed: the device and its session",
        device.device_id == claim["device_id"] and device.session_id == sid and device.device_token,
        device,
    )
    e = await fails_with(sm.WatchFeed.connect(BASE, "not-a-token", []), sm.SimmerError.Network)
    check("WatchFeed.connect with a bad token fails", e is not None)
    feed = await bounded(sm.WatchFeed.connect(BASE, device.device_token, []))
    first = await bounded(feed.next_frame())
    check(
        "the feed starts with a Snapshot of the running step",
        first.is_snapshot() and first.timer.state == sm.TimerState.RUNNING and first.timer.deadline_ms == timer["deadline_ms"],
        first,
    )
    offset = await bounded(feed.sync_clock(5))
    # Server and watch read the same clock here: the offset is about 0.
    check(
        "sync_clock: offset and round trip of one machine",
        abs(offset.offset_ms) < 1000 and 0 <= offset.rtt_ms < 1000 and feed.clock_offset_ms() == offset.offset_ms,
        offset,
    )
    status, now = request(f"{API}/sessions/{sid}/timer")
    shown = feed.displayed_remaining_ms()
    check(
        "the displayed countdown is the server's remaining_ms",
        status == 200 and shown is not None and abs(shown - now["remaining_ms"]) < 1000,
        f"shown {shown} ms, server {now.get('remaining_ms')} ms",
    )
    print(f"     shown {shown} ms, server {now['remaining_ms']} ms: {shown - now['remaining_ms']:+d} ms")
    step = feed.current_step()
    check("current_step: the running step", step is not None and step.label == "Chop" and step.duration_s == 120, step)
    await asyncio.sleep(1.5)
    later = feed.displayed_remaining_ms()
    check("it counts down between frames", later is not None and 1000 <= shown - later <= 3000, f"{shown} -> {later}")
    check("timer(): the shown timer", feed.timer().state == sm.TimerState.RUNNING and feed.timer().step_index == 0, feed.timer())

    status, timer = request(f"{API}/sessions/{sid}/timer", "POST", {"action": "next"}, token)
    check("setup: the host moves to the next step (HTTP)", status == 200 and timer["step_index"] == 1, timer)
    frame = await bounded(feed.next_frame())
    while not frame.is_timer_changed():  # ticks of the first step may come first
        frame = await bounded(feed.next_frame())
    check("the watch gets TimerChanged for step 1", frame.timer.step_index == 1 and frame.timer.step.label == "Simmer", frame)
    shown = feed.displayed_remaining_ms()
    check(
        "the display follows: the new step's countdown",
        feed.current_step().label == "Simmer" and shown is not None and abs(shown - timer["remaining_ms"]) < 1000,
        f"{feed.current_step()} {shown}",
    )
    frame = await bounded(feed.next_frame(), 3)
    check("ticks while running", frame.is_tick() and frame.step_index == 1 and frame.deadline_ms == timer["deadline_ms"], frame)
    event = await guest_events.until(lambda e: e.is_timer_changed() and e.timer.step_index == 1)
    check("the guest's client sees the same step change", event.timer.deadline_ms == timer["deadline_ms"], event)

    # --- refresh -------------------------------------------------------------------
    fresh = await bounded(host.refresh())
    check("refresh: a new access token", fresh.access_token != token and host.credentials() == fresh, fresh)
    status, _ = request(f"{API}/me", token=fresh.access_token)
    check("the new token works", status == 200)
    ack = await bounded(host.send_chat(sid, "after the refresh"))
    check("the connection carries on after a refresh", ack.seq == 10, ack)
    e = await fails_with(guest.refresh(), sm.SimmerError.InvalidArgument)
    check("a guest cannot refresh: InvalidArgument", e is not None)

    # --- the same over TLS (https/wss), trusting the app's own CA --------------
    with tempfile.TemporaryDirectory() as tls_dir:
        ca_pem, crt, key = make_certificates(tls_dir)
        front, tls_port = await tls_front(int(BASE.rsplit(":", 1)[1]), crt, key)
        https = f"https://127.0.0.1:{tls_port}"
        e = await fails_with(sm.SimmerClient.sign_in(https, "ffi_host", password, []), sm.SimmerError.Network)
        check("https without the CA in tls_roots: Network error (unknown issuer)", e is not None, e)
        secure = await bounded(sm.SimmerClient.sign_in(https, "ffi_host", password, [ca_pem]))
        check("sign_in over https with tls_roots", secure.account().user_id == account.user_id)
        snap = await bounded(secure.join(sid))
        ack = await bounded(secure.send_chat(sid, "over wss"))
        check("join and send_chat over wss", snap.session_id == sid and ack.seq == 11, ack)
        event = await guest_events.until(lambda e: e.is_chat() and e.message.seq == 11)
        check("the guest (plain ws) gets it", event.message.text == "over wss", event)
        tls_pairing = await bounded(sm.request_pairing(https, "TLS watch", [ca_pem]))
        check("request_pairing over https", len(tls_pairing.code()) == 6)
        e = await fails_with(sm.WatchFeed.connect(https, device.device_token, ["not a certificate"]), sm.SimmerError.InvalidArgument)
        check("WatchFeed.connect with a TLS root that is not PEM: InvalidArgument", e is not None, e)
        tls_feed = await bounded(sm.WatchFeed.connect(https, device.device_token, [ca_pem]))
        frame = await bounded(tls_feed.next_frame())
        check("the watch feed over wss starts with its Snapshot", frame.is_snapshot() and frame.timer.step_index == 1, frame)
        await bounded(tls_feed.disconnect())
        await bounded(secure.disconnect())
        front.close()

    # --- the end -----------------------------------------------------------------------
    status, _ = request(f"{API}/sessions/{sid}/end", "POST", token=token)
    check("setup: the host ends the session (HTTP)", status == 200)
    event = await guest_events.until(lambda e: e.is_session_ended())
    check("the guest gets SessionEnded", event.session_id == sid, event)
    e = None
    try:
        while True:
            await bounded(feed.next_frame())
    except sm.SimmerError.FeedClosed as closed_feed:
        e = closed_feed
    check("the watch feed ends with FeedClosed(session_ended)", e is not None and e.reason == "session_ended", e)
    e = await fails_with(feed.sync_clock(1), sm.SimmerError.FeedClosed)
    check("an ended feed says why on every call", e is not None and e.reason == "session_ended", e)

    await bounded(host.disconnect())
    e = await fails_with(host.send_chat(sid, "anyone?"), sm.SimmerError.Closed)
    check("after disconnect: Closed", e is not None)
    left = 0
    while await bounded(host.next_event()) is not None:  # what had arrived is still read
        left += 1
    check("then next_event returns None", await bounded(host.next_event()) is None, f"after {left} events")
    await bounded(guest.disconnect())
    await bounded(feed.disconnect())


async def away_past_the_expiry(base):
    """A signed-in app whose access token expires while the link is down (or
    the server closes it, 4001): the reconnect is refused, the client
    refreshes by itself, says so with the new pair, and goes on."""
    api = f"{base}/api/v1"
    status, reg = request(f"{api}/auth/register", "POST", {"username": "ffi_sleeper", "password": "sleeper-password"})
    check("short-TTL server: a user registers (HTTP)", status == 201, reg)
    token = reg["access_token"]
    status, recipe = request(f"{api}/recipes", "POST", {"title": "Tea", "steps": [{"text": "Steep"}]}, token)
    status, session = request(f"{api}/sessions", "POST", {"recipe_id": recipe["id"], "title": "Short"}, token)
    sid = session["id"]
    request(f"{api}/sessions/{sid}/start", "POST", token=token)
    client = await bounded(sm.SimmerClient.sign_in(base, "ffi_sleeper", "sleeper-password", []))
    before = client.credentials()
    await bounded(client.join(sid))
    # Closed at the expiry (1 s) plus the server's 5 s leeway; then refused.
    seen = []
    refreshed = None
    deadline = time.monotonic() + 20
    while refreshed is None and time.monotonic() < deadline:
        event = await bounded(client.next_event(), 20)
        seen.append(repr(event))
        if event.is_credentials_refreshed():
            refreshed = event.credentials
    check("no TokenRefused for a user who can refresh", not any("TOKEN_REFUSED" in e for e in seen), seen)
    check(
        "token expired while away: CredentialsRefreshed with a new pair",
        refreshed is not None and refreshed.access_token != before.access_token
        and client.credentials().access_token == refreshed.access_token,
        seen,
    )
    event = await bounded(client.next_event())
    while event.is_reconnecting():
        event = await bounded(client.next_event())
    check("... then Reconnected", event.is_reconnected(), event)
    ack = await bounded(client.send_chat(sid, "back"))
    check("... and the connection carries on", ack.seq == 1, ack)
    await bounded(client.disconnect())


if __name__ == "__main__":
    started = time.monotonic()
    try:
        asyncio.run(main())
        if SHORT_TTL_BASE:
            asyncio.run(away_past_the_expiry(SHORT_TTL_BASE))
    except Exception as e:  # noqa: BLE001  (an unexpected failure fails the run)
        import traceback

        traceback.print_exc()
        check("the scenario ran to its end", False, repr(e))
    print(f"ffi_test: {time.monotonic() - started:.1f} s")
    finish()
