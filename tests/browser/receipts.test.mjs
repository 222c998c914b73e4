// Issue 14 item 5 in the browser: receipts in a DM between two browser contexts. alice's
// message shows ✓ while bob is away, ✓✓ once bob's client has it (caught up on sign-in,
// before he opens the conversation), and ✓✓ in colour, "Seen by bob", only once it is
// on bob's screen: a message that arrives while bob has scrolled up stays "Delivered"
// until he scrolls it into view. bob's client sends `delivered` and `seen` at most about
// once a second per room (counted from the frames it sends), never one per message. Also:
// an unread badge counts messages caught up after a reconnect.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startServer, stopServer, launch, enter, say, stored, register, client, waitOnline } from "./helpers.mjs";

let server, base, browser;

before(async () => {
  server = await startServer(0, [], "receipts.db");
  base = server.base;
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await stopServer(server?.p);
});

const tick = (page, text) => page.locator(".msg[id]", { hasText: text }).getByRole("img", { name: /^(Sent|Delivered|Seen)/ });
async function tickIs(page, text, name, cls) {
  const t = tick(page, text);
  await t.and(page.getByRole("img", { name })).waitFor();
  assert.equal(await t.getAttribute("class"), "receipt " + cls);
}

// Frames of `types` a page sends, with when.
function recordFrames(page, types) {
  const frames = [];
  page.on("websocket", (ws) => ws.on("framesent", (f) => {
    let m;
    try { m = JSON.parse(f.payload); } catch (_) { return; }
    if (types.includes(m.type)) frames.push({ type: m.type, room: m.room, id: m.id, at: Date.now() });
  }));
  return frames;
}
function assertPaced(frames) {
  const last = new Map();
  for (const f of frames) {
    const k = f.type + " " + f.room;
    if (last.has(k)) assert.ok(f.at - last.get(k) >= 900, `two ${k} frames ${f.at - last.get(k)} ms apart: ${JSON.stringify(frames)}`);
    last.set(k, f.at);
  }
}

test("DM receipts: ✓ sent, ✓✓ delivered when the other's client has it, seen only when on their screen; receipts paced to ~1/s per room", async () => {
  const alice = await enter(browser, base, "alice");
  const bobToken = await register(base, "bob");
  const api = await client(base, bobToken);
  const tall = (i) => `seed ${i}\n` + "line\n".repeat(6) + "end";
  for (let i = 1; i <= 14; i++) {
    const r = await api.request({ type: "dm", to: "alice", text: tall(i) });
    assert.equal(r.type, "message", JSON.stringify(r));
  }
  api.close();

  const dm = "dm:alice:bob";
  await alice.getByRole("button", { name: /^@ bob/ }).click();
  await stored(alice, "seed 14").waitFor();
  await say(alice, "one for bob");
  await stored(alice, "one for bob").waitFor();
  await tickIs(alice, "one for bob", "Sent", "sent");

  // bob signs in (general open): his client catches the DM up, so it is delivered.
  const bob = await enter(browser, base, "bob", { existing: true, setup: (p) => { p.frames = recordFrames(p, ["delivered", "seen"]); } });
  await tickIs(alice, "one for bob", "Delivered", "delivered");
  await bob.getByRole("button", { name: "@ alice, 1 unread" }).waitFor();
  await alice.waitForTimeout(1500);
  await tickIs(alice, "one for bob", "Delivered", "delivered"); // not opened: not seen
  assert.ok(!bob.frames.some((f) => f.type === "seen" && f.room === dm));

  // Opened, with the message on screen: seen.
  await bob.getByRole("button", { name: /^@ alice/ }).click();
  await stored(bob, "one for bob").waitFor();
  await tickIs(alice, "one for bob", "Seen by bob", "seen");

  // bob scrolls up; a message that arrives now is below the fold: delivered, not seen.
  const list = bob.getByRole("region", { name: "Messages" });
  await list.evaluate((b) => { b.scrollTop = 0; });
  await bob.waitForFunction(() => document.querySelector("#messages").scrollTop === 0);
  await say(alice, "below the fold");
  await stored(alice, "below the fold").waitFor();
  await bob.getByRole("button", { name: "1 new message ↓" }).waitFor();
  await tickIs(alice, "below the fold", "Delivered", "delivered");
  await alice.waitForTimeout(2000);
  await tickIs(alice, "below the fold", "Delivered", "delivered");
  assert.ok(!(await stored(bob, "below the fold").isVisible() && await stored(bob, "below the fold").evaluate((n) => {
    const b = n.parentElement.getBoundingClientRect(), r = n.getBoundingClientRect();
    return r.top < b.bottom && r.bottom > b.top;
  })), "it really is out of view");

  // He scrolls down with the wheel: now it is seen, and says by whom.
  await list.hover();
  for (let i = 0; i < 10; i++) await bob.mouse.wheel(0, 600);
  await tickIs(alice, "below the fold", "Seen by bob", "seen");

  // A burst while bob watches: his client acknowledges cumulatively, about once a second.
  const from = bob.frames.length;
  const t0 = Date.now();
  for (let i = 1; i <= 8; i++) await say(alice, "burst " + i);
  await stored(bob, "burst 8").waitFor();
  await tickIs(alice, "burst 8", "Seen by bob", "seen");
  const burst = bob.frames.slice(from);
  const secs = (Date.now() - t0) / 1000;
  for (const type of ["delivered", "seen"]) {
    const n = burst.filter((f) => f.type === type).length;
    assert.ok(n >= 1 && n <= Math.ceil(secs) + 1, `${n} ${type} frames in ${secs.toFixed(1)} s for 8 messages`);
  }
  assertPaced(bob.frames);
  // Every one of alice's messages before the last shows seen as well (cumulative).
  assert.equal(await alice.locator(".msg.mine .receipt.seen").count(), await alice.locator(".msg.mine[id]").count());
  assert.deepEqual([...alice.errors, ...bob.errors], []);
  await alice.context().close();
  await bob.context().close();
});

test("an unread badge counts the messages caught up after a reconnect", async () => {
  const carl = await enter(browser, base, "carl");
  await carl.getByRole("button", { name: "Browse or create rooms" }).click();
  await carl.getByLabel("Find a room, or name a new one").fill("side");
  await carl.getByRole("button", { name: "Create #side" }).click();
  await carl.waitForSelector("#room-title:text('# side')");
  await say(carl, "side 0");
  await stored(carl, "side 0").waitFor();
  const dana = await client(base, await register(base, "dana"));
  assert.equal((await dana.request({ type: "join", room: "side" })).type, "joined");
  await carl.locator("#room-list").getByRole("button", { name: "# general" }).click();

  // The page's own count is what is tested: the room list over HTTP (whose unread counts
  // come from the server) is not reachable from now on.
  await carl.route((url) => url.pathname === "/rooms", (route) => route.abort());
  // carl's socket drops and stays down while two messages arrive in #side.
  await carl.evaluate(() => new Promise((resolve) => {
    state.ws.addEventListener("close", () => setTimeout(() => { clearTimeout(state.reconnectTimer); resolve(); }, 0));
    state.ws.close();
  }));
  for (const text of ["side 1", "side 2"]) assert.equal((await dana.request({ type: "send", room: "side", text })).type, "message");
  await carl.getByRole("button", { name: "Reconnect now" }).click();
  await carl.locator("#room-list").getByRole("button", { name: "# side, 2 unread" }).waitFor();
  await carl.locator("#room-list").getByRole("button", { name: "# side, 2 unread" }).click();
  await stored(carl, "side 2").waitFor();
  await carl.locator("#room-list").getByRole("button", { name: "# side", exact: true }).waitFor();
  dana.close();
  assert.deepEqual(carl.errors, []);
  await carl.context().close();
});
