"""Interoperability: the Python `websockets` client (not ours) against the real server.

Usage: python interop.py HOST:PORT TOKEN_A TOKEN_B. Prints 'N passed, N failed'.
"""
import asyncio
import json
import sys

import websockets

ADDR, TOKEN_A, TOKEN_B = sys.argv[1:4]
results = []


def check(name, ok, detail=""):
    results.append(ok)
    print(("ok   " if ok else "FAIL ") + name + ("" if ok else f": {detail}"))


async def next_of(ws, kind):
    while True:
        m = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if m["type"] == kind:
            return m


async def main():
    # ?token= in the query, as a browser would.
    async with websockets.connect(f"ws://{ADDR}/ws?token={TOKEN_A}") as a, \
            websockets.connect(f"ws://{ADDR}/ws", additional_headers={"Authorization": f"Bearer {TOKEN_B}"}) as b:
        hello = json.loads(await a.recv())
        check("hello on connect", hello["type"] == "hello" and "general" in hello["rooms"], hello)
        await b.recv()
        await a.send(json.dumps({"type": "send", "room": "general", "text": "from python", "ref": "p1"}))
        mine = await next_of(a, "message")
        theirs = await next_of(b, "message")
        check("send reaches both, same id", mine["id"] == theirs["id"] and theirs["text"] == "from python", (mine, theirs))
        check("the sender's copy carries the ref", mine.get("ref") == "p1", mine)
        pong = await a.ping(b"are you there")
        latency = await asyncio.wait_for(pong, 5)
        check("ping is answered with a pong", latency >= 0)
        await a.send("not json")
        err = await next_of(a, "error")
        check("bad JSON gets bad_request", err["code"] == "bad_request", err)
        await a.close(code=1000, reason="bye")
        check("close handshake completes with our code", a.close_code == 1000, a.close_code)
    try:
        async with websockets.connect(f"ws://{ADDR}/ws?token=bogus"):
            check("a bad token is refused", False, "connected")
    except websockets.exceptions.InvalidStatus as e:
        check("a bad token is refused with 401", e.response.status_code == 401, e.response.status_code)
    # A binary frame is a protocol violation for this server: closed with 1007.
    async with websockets.connect(f"ws://{ADDR}/ws?token={TOKEN_A}") as c:
        await c.recv()
        await c.send(b"\x00\x01")
        try:
            while True:
                await asyncio.wait_for(c.recv(), 10)
        except websockets.exceptions.ConnectionClosed as e:
            check("binary frame closes with 1007", e.rcvd is not None and e.rcvd.code == 1007, e)


asyncio.run(main())
passed = sum(results)
print(f"{passed} passed, {len(results) - passed} failed")
sys.exit(0 if all(results) else 1)
