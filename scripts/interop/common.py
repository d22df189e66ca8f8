"""What both interop clients share: a pass/fail tally and plain HTTP calls
(urllib only: nothing of ours)."""

import json
import sys
import urllib.error
import urllib.request

_passed = 0
_failed = 0


def check(name, condition, detail=""):
    global _passed, _failed
    if condition:
        _passed += 1
        print(f"ok   {name}")
    else:
        _failed += 1
        print(f"FAIL {name} {detail}")


def failures():
    """How many checks failed so far."""
    return _failed


def finish():
    """Prints the tally (the test script adds it to its summary) and exits."""
    print(f"{_passed} passed, {_failed} failed")
    sys.exit(1 if _failed else 0)


def request(url, method="GET", body=None, token=None, headers=None):
    """(status, JSON body) of a request; error statuses are answers too."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("content-type", "application/json")
    if token:
        req.add_header("authorization", f"Bearer {token}")
    for key, value in (headers or {}).items():
        req.add_header(key, value)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as e:
        # Simmer answers errors in problem+json; anything else came from
        # something in between (a proxy's 502 page): kept as text to report.
        text = e.read()
        try:
            return e.code, json.loads(text or b"null")
        except ValueError:
            return e.code, text.decode(errors="replace")
