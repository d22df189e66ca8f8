"""An independent WebRTC stack against the relay, written from docs/api.md
and docs/media.md: aiortc (Python; its own ICE, aioice, and DTLS on
OpenSSL) publishes a camera-shaped VP8 track and silence over WHIP, and a
second aiortc peer plays over WHEP and decodes the frames. The relay
answers the host `a=setup:active`, so aiortc is the DTLS server there, as
a browser is; for the viewer the relay's edge is the server.
Usage: whip_client.py BASE_URL (inside a network namespace with only
loopback: scripts/interop.sh)
"""

import asyncio
import sys
import urllib.request
import uuid

from aiortc import (
    AudioStreamTrack,
    RTCPeerConnection,
    RTCSessionDescription,
    VideoStreamTrack,
)

from common import check, finish, request

BASE = sys.argv[1].rstrip("/")
API = BASE + "/api/v1"


def call(method, path, body=None, token=None):
    return request(API + path, method, body, token)


def post_offer(url, sdp, token):
    """(status, Location, answer SDP) of an offer POSTed as application/sdp."""
    req = urllib.request.Request(url, data=sdp.encode(), method="POST")
    req.add_header("content-type", "application/sdp")
    req.add_header("authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.status, resp.headers.get("location"), resp.read().decode()


def delete(url, token):
    req = urllib.request.Request(url, method="DELETE")
    req.add_header("authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.status


def setup_of(sdp):
    return next((line.split(":", 1)[1] for line in sdp.splitlines() if line.startswith("a=setup:")), None)


async def signal(pc, path, token):
    """Offers (aiortc gathers its candidates first), POSTs, applies the answer."""
    await pc.setLocalDescription(await pc.createOffer())
    status, location, answer = await asyncio.to_thread(post_offer, BASE + path, pc.localDescription.sdp, token)
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    return status, location, answer


async def connected(pc, timeout):
    """Whether `pc` reached "connected" within `timeout` seconds."""
    for _ in range(int(timeout * 20)):
        if pc.connectionState == "connected":
            return True
        if pc.connectionState in ("failed", "closed"):
            return False
        await asyncio.sleep(0.05)
    return False


async def main():
    host = call("POST", "/auth/register", {"username": f"aiortc{uuid.uuid4().hex[:10]}", "password": "aiortc-password"})[1]
    token = host["access_token"]
    recipe = call("POST", "/recipes", {"title": "Soup", "steps": [{"text": "Stir", "duration_s": 60}]}, token)[1]
    session = call("POST", "/sessions", {"recipe_id": recipe["id"], "title": "aiortc live"}, token)[1]
    call("POST", f"/sessions/{session['id']}/start", {}, token)
    sid = session["id"]

    publisher = RTCPeerConnection()
    publisher.addTrack(VideoStreamTrack())
    publisher.addTrack(AudioStreamTrack())
    status, location, answer = await signal(publisher, f"/whip/{sid}", token)
    check("WHIP: 201 with a Location", status == 201 and (location or "").startswith(f"/whip/{sid}/"), (status, location))
    check("... the relay answers a=setup:active (aiortc is the DTLS server)", setup_of(answer) == "active", setup_of(answer))
    check("the publisher connects (ICE and DTLS)", await connected(publisher, 15), publisher.connectionState)

    viewer = RTCPeerConnection()
    viewer.addTransceiver("video", direction="recvonly")
    viewer.addTransceiver("audio", direction="recvonly")
    frames = []

    async def decode(track):
        while len(frames) < 30:
            frames.append(await track.recv())

    decoding = []
    viewer.on("track", lambda track: track.kind == "video" and decoding.append(asyncio.ensure_future(decode(track))))
    status, viewer_location, answer = await signal(viewer, f"/whep/{sid}", token)
    check("WHEP: 201 with a Location", status == 201 and viewer_location is not None, (status, viewer_location))
    check("the viewer connects", await connected(viewer, 15), viewer.connectionState)
    for _ in range(400):
        if len(frames) >= 30:
            break
        await asyncio.sleep(0.05)
    size = (frames[-1].width, frames[-1].height) if frames else None
    check("the viewer decodes 30 frames of the host's video", len(frames) >= 30, len(frames))
    check("... at the size the host sent (640x480)", size == (640, 480), size)

    media = call("GET", f"/sessions/{sid}/media", None, token)[1]
    check("the room counts the publisher and the viewer",
          media.get("publisher") == "publishing" and media.get("subscribers") == 1, media)
    check("DELETE on the WHIP resource stops publishing", await asyncio.to_thread(delete, BASE + location, token) == 200)
    check("DELETE on the WHEP resource ends the viewer", await asyncio.to_thread(delete, BASE + viewer_location, token) == 200)
    for task in decoding:
        task.cancel()
    await publisher.close()
    await viewer.close()


asyncio.run(main())
finish()
