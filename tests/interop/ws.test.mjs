// Interoperability: the Node `ws` client (not ours) against the real server.
// Usage: node --test ws.test.mjs with CHATTERBOX_ADDR, TOKEN_A and TOKEN_B set.
import { test } from "node:test";
import assert from "node:assert/strict";
import WebSocket from "ws";

const addr = process.env.CHATTERBOX_ADDR;
const open = (url, opts) => new Promise((resolve, reject) => {
  const ws = new WebSocket(url, opts);
  const queue = [];
  const waiters = [];
  ws.on("message", (d) => {
    const m = JSON.parse(d.toString());
    const i = waiters.findIndex((w) => w.type === m.type);
    if (i >= 0) waiters.splice(i, 1)[0].resolve(m); else queue.push(m);
  });
  ws.next = (type) => new Promise((res) => {
    const i = queue.findIndex((m) => m.type === type);
    if (i >= 0) res(queue.splice(i, 1)[0]); else waiters.push({ type, resolve: res });
  });
  ws.once("open", () => resolve(ws));
  ws.once("error", reject);
  ws.once("unexpected-response", (_req, res) => reject(new Error("status " + res.statusCode)));
});

test("node ws: hello, send, ping, close", async () => {
  const a = await open(`ws://${addr}/ws?token=${process.env.TOKEN_A}`);
  const b = await open(`ws://${addr}/ws`, { headers: { Authorization: `Bearer ${process.env.TOKEN_B}` } });
  assert.equal((await a.next("hello")).type, "hello");
  await b.next("hello");
  a.send(JSON.stringify({ type: "send", room: "general", text: "from node", ref: "n1" }));
  const [mine, theirs] = await Promise.all([a.next("message"), b.next("message")]);
  assert.equal(mine.id, theirs.id);
  assert.equal(theirs.text, "from node");
  assert.equal(mine.ref, "n1");
  const pong = new Promise((res) => a.once("pong", (d) => res(d.toString())));
  a.ping("hi");
  assert.equal(await pong, "hi");
  const closed = new Promise((res) => a.once("close", (code) => res(code)));
  a.close(1000, "bye");
  assert.equal(await closed, 1000);
  b.terminate();
});

test("node ws: a bad token is refused", async () => {
  await assert.rejects(open(`ws://${addr}/ws?token=nope`), /status 401/);
});
