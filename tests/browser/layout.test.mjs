// Issue 14, items 1 and 2: a room with more messages than fit. Only the message list
// scrolls, it opens at the newest message, follows new ones unless the reader scrolled up
// (then a "new messages" pill), and scrolling up (wheel, PageUp, touch) pages back to the
// beginning without the view jumping. At 1280×800 and 375×740.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { startServer, stopServer, launch, enter, register, client, history, shots, DESKTOP, PHONE } from "./helpers.mjs";

const SEEDED = 230;
let server, base, browser, seeder, seederToken;

before(async () => {
  // Seeding 230 messages at the default 10/s would take half a minute: this server
  // allows more (the burst test in outbox.test.mjs runs at the defaults).
  server = await startServer(0, ["--msg-rate", "1000", "--msg-burst", "1000"], "layout.db");
  base = server.base;
  browser = await launch();
  seederToken = await register(base, "seeder");
  seeder = await client(base, seederToken);
  await seeder.request({ type: "create_room", room: "long", private: false });
  for (let i = 1; i <= SEEDED; i++) {
    const text = i % 7 === 0 ? `seed ${i}: a longer line that wraps on a phone, about the weather and the deploy` : `seed ${i}`;
    seeder.ws.send(JSON.stringify({ type: "send", room: "long", text, client_id: "s" + i }));
  }
  await new Promise((r) => { const t = setInterval(() => { if (seeder.events.filter((e) => e.type === "message").length >= SEEDED) { clearInterval(t); r(); } }, 50); });
  lastSeedId = (await history(base, seederToken, "long")).at(-1).id;
});

after(async () => {
  seeder?.close();
  await browser?.close();
  await stopServer(server?.p);
});

async function openLong(page) {
  const browse = page.getByRole("button", { name: "Browse or create rooms" });
  if (!(await browse.isVisible())) await page.getByRole("button", { name: /Show rooms/ }).click();
  await browse.click();
  await page.getByLabel("Find a room, or name a new one").fill("long");
  await page.getByRole("button", { name: "Join # long" }).click();
  await page.waitForSelector("#room-title:text('# long')");
  await page.waitForSelector("#messages[aria-busy=false]");
  await page.locator("#m" + lastSeedId).waitFor();
}
let lastSeedId = 0;

const inViewport = (page, locator) => locator.evaluate((e) => {
  const r = e.getBoundingClientRect();
  return r.width > 0 && r.height > 0 && r.top >= 0 && r.left >= 0 && r.bottom <= innerHeight + 0.5 && r.right <= innerWidth + 0.5;
});
const listState = (page) => page.evaluate(() => {
  const b = document.querySelector("#messages");
  return { top: b.scrollTop, height: b.scrollHeight, client: b.clientHeight, bottomGap: b.scrollHeight - b.scrollTop - b.clientHeight,
    ids: [...b.querySelectorAll(".msg[id]")].map((e) => Number(e.id.slice(1))),
    pageScroll: document.scrollingElement.scrollHeight - innerHeight, pageY: scrollY };
});

// The first message in sight and how far it is from the top of the list.
const firstInSight = (page) => page.evaluate(() => {
  const b = document.querySelector("#messages");
  const top = b.getBoundingClientRect().top;
  const m = [...b.querySelectorAll(".msg[id]")].find((e) => e.getBoundingClientRect().bottom > top + 1);
  return { id: m.id, offset: m.getBoundingClientRect().top - top };
});

async function checkLayout(page, size) {
  const s = await listState(page);
  assert.equal(s.pageScroll, 0, `${size}: the page itself does not scroll`);
  assert.ok(s.height > s.client * 2, `${size}: the list holds more than fits`);
  assert.ok(s.bottomGap < 2, `${size}: it opens at the newest message (gap ${s.bottomGap})`);
  assert.ok(await inViewport(page, page.locator("#m" + lastSeedId)), `${size}: the newest message is on screen`);
  assert.ok(await inViewport(page, page.getByRole("textbox", { name: "Message", exact: true })), `${size}: composer on screen`);
  assert.ok(await inViewport(page, page.getByRole("button", { name: "Send" })), `${size}: Send on screen`);
  if (size === "desktop") {
    assert.ok(await inViewport(page, page.getByRole("button", { name: "Log out" })), "Log out on screen");
    assert.ok(await inViewport(page, page.locator("#room-list").getByRole("button", { name: "# long" })), "room list on screen");
  } else {
    assert.ok(await inViewport(page, page.getByRole("button", { name: /Show rooms/ })), "the rooms button on screen");
  }
  // The wheel over the page scrolls the list, never the page.
  await page.mouse.move(size === "desktop" ? 700 : 180, 300);
  await page.mouse.wheel(0, 400);
  assert.equal((await listState(page)).pageY, 0);
}

test("a long room opens at the newest message; only the list scrolls; it follows new messages or shows a pill", async () => {
  for (const [size, viewport] of [["desktop", DESKTOP], ["phone", PHONE]]) {
    const page = await enter(browser, base, "reader-" + size, { viewport });
    await openLong(page);
    await checkLayout(page, size);
    await page.screenshot({ path: join(shots, `long-${size}.png`) });

    // Typing and error notices are on screen too.
    seeder.ws.send(JSON.stringify({ type: "typing", room: "long", active: true }));
    const typing = page.locator("#typing", { hasText: "seeder is typing…" });
    await typing.waitFor();
    assert.ok(await inViewport(page, typing), `${size}: typing notice on screen`);
    await page.getByRole("textbox", { name: "Message", exact: true }).fill("x".repeat(4001));
    await page.getByRole("button", { name: "Send" }).click();
    const alert = page.getByRole("alert").filter({ hasText: "Not sent" });
    await alert.waitFor();
    assert.ok(await inViewport(page, alert), `${size}: error notice on screen`);
    assert.equal((await listState(page)).pageScroll, 0, `${size}: still no page scroll with the notice`);
    await page.getByRole("button", { name: "Discard this message" }).click();
    await page.getByRole("button", { name: "Dismiss" }).click();

    // At the bottom, a new message is followed.
    let r = await seeder.request({ type: "send", room: "long", text: `live for ${size} 1` });
    await page.locator("#m" + r.id).waitFor();
    await page.waitForFunction(() => { const b = document.querySelector("#messages"); return b.scrollHeight - b.scrollTop - b.clientHeight < 2; });
    assert.ok(await inViewport(page, page.locator("#m" + r.id)));
    assert.ok(await page.locator("#new-pill").isHidden());

    // Scrolled up: the view stays, a pill says there is more below.
    await page.locator("#messages").evaluate((b) => { b.scrollTop = b.scrollHeight - b.clientHeight - 900; });
    await page.waitForTimeout(100);
    const before = await firstInSight(page);
    r = await seeder.request({ type: "send", room: "long", text: `live for ${size} 2` });
    await page.locator("#m" + r.id).waitFor({ state: "attached" });
    const pill = page.getByRole("button", { name: /1 new message/ });
    await pill.waitFor();
    assert.ok(await inViewport(page, pill));
    const afterMsg = await firstInSight(page);
    assert.equal(afterMsg.id, before.id, "the view did not move");
    assert.ok(Math.abs(afterMsg.offset - before.offset) < 2);
    await pill.click();
    await pill.waitFor({ state: "hidden" });
    assert.ok((await listState(page)).bottomGap < 2, "the pill goes to the newest");
    assert.ok(await inViewport(page, page.locator("#m" + r.id)));
    await page.context().close();
  }
});

// Scroll up by `how` until the beginning of the room is shown; every page that arrives
// must leave the message that was in sight where it was.
async function scrollToBeginning(page, how) {
  const beginning = page.getByText("This is the beginning of # long");
  let anchoredLoads = 0;
  for (let i = 0; i < 60 && !(await beginning.isVisible()); i++) {
    const s = await listState(page);
    const sight = await firstInSight(page);
    await how();
    await page.waitForTimeout(60);
    const t = await listState(page);
    if (t.ids.length > s.ids.length) {
      // A page arrived: the first message in sight before the scroll is still in the
      // list, and the scroll moved the view by what the scroll itself asked, not by the
      // height of the page inserted above.
      const now = await page.locator("#" + sight.id).evaluate((e) => e.getBoundingClientRect().top - document.querySelector("#messages").getBoundingClientRect().top);
      // Without anchoring it would move down by the whole height inserted above.
      const inserted = t.height - s.height;
      assert.ok(now - sight.offset < inserted - 50, `anchored after a page (moved ${now - sight.offset}px, ${inserted}px inserted)`);
      anchoredLoads++;
    }
  }
  if (!(await beginning.isVisible())) {
    await page.screenshot({ path: join(shots, "no-beginning.png") });
    assert.fail("never reached the beginning: " + JSON.stringify(await listState(page)).slice(0, 300));
  }
  return anchoredLoads;
}

async function checkWhole(page) {
  const all = (await history(base, seederToken, "long")).map((m) => m.id);
  const ids = (await listState(page)).ids;
  assert.deepEqual(ids, all, "every message once, in order, from the first");
}

test("scrolling up with the wheel, PageUp or a touch drag pages back to the beginning, anchored", async () => {
  // Desktop, mouse wheel.
  const wheel = await enter(browser, base, "wheel", { viewport: DESKTOP });
  await openLong(wheel);
  // One page, measured exactly: jump to the top, note the oldest message's place, and it
  // must be in the same place once the older page is in.
  const pinned = await wheel.evaluate(() => {
    const b = document.querySelector("#messages");
    b.scrollTop = 0;
    const first = b.querySelector(".msg[id]");
    return { id: first.id, top: first.getBoundingClientRect().top, count: b.querySelectorAll(".msg[id]").length };
  });
  await wheel.waitForFunction((n) => document.querySelectorAll("#messages .msg[id]").length > n, pinned.count);
  const top = await wheel.locator("#" + pinned.id).evaluate((e) => e.getBoundingClientRect().top);
  assert.ok(Math.abs(top - pinned.top) < 2, `the oldest message stayed put (${pinned.top} → ${top})`);
  await wheel.mouse.move(700, 300);
  const loads = await scrollToBeginning(wheel, () => wheel.mouse.wheel(0, -700));
  assert.ok(loads >= 2, "the wheel loaded pages");
  await checkWhole(wheel);
  await wheel.context().close();

  // Desktop, keyboard.
  const keys = await enter(browser, base, "keys", { viewport: DESKTOP });
  await openLong(keys);
  await keys.getByRole("region", { name: "Messages" }).focus();
  await scrollToBeginning(keys, () => keys.keyboard.press("PageUp"));
  await checkWhole(keys);
  await keys.context().close();

  // Phone, touch drags.
  const touch = await enter(browser, base, "touch", { viewport: PHONE, hasTouch: true, isMobile: true });
  await openLong(touch);
  const cdp = await touch.context().newCDPSession(touch);
  await scrollToBeginning(touch, async () => {
    await cdp.send("Input.dispatchTouchEvent", { type: "touchStart", touchPoints: [{ x: 180, y: 200 }] });
    for (let y = 220; y <= 400; y += 30) await cdp.send("Input.dispatchTouchEvent", { type: "touchMove", touchPoints: [{ x: 180, y }] });
    await cdp.send("Input.dispatchTouchEvent", { type: "touchEnd", touchPoints: [] });
  });
  await checkWhole(touch);
  await touch.screenshot({ path: join(shots, "beginning-phone.png") });
  await touch.context().close();
});
