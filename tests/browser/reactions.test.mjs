// Reactions in the web UI: chips under a message with their counts, pressed when one is
// mine, toggled by a click; live in both browsers; back after a reload from `joined`'s
// history (`reactions` and `mine`); who reacted on hover and on focus; the picker reached
// and worked with the keyboard alone (quick-pick, the "More" grid with arrow keys, Escape
// giving the focus back); no reaction controls on a deleted message; a refused reaction
// shown as an error; a phone with a touch screen; axe and contrast with reactions shown.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { startServer, stopServer, launch, enter, say, stored, register, client, waitOnline, axe, contrastFailures, shots, PHONE } from "./helpers.mjs";

let server, base, browser;

before(async () => {
  server = await startServer(0, [], "reactions.db");
  base = server.base;
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await stopServer(server?.p);
});

const chip = (page, text, emoji) => stored(page, text).locator(`.chip[data-emoji="${emoji}"]`);
async function chipIs(page, text, emoji, count, pressed) {
  const c = chip(page, text, emoji);
  await c.locator(".chip-count", { hasText: new RegExp(`^${count}$`) }).waitFor();
  assert.equal(await c.getAttribute("aria-pressed"), String(pressed), `${emoji} pressed for ${await page.evaluate(() => state.me)}`);
  assert.equal(await c.evaluate((b) => b.classList.contains("on")), pressed);
}
const focused = (page) => page.evaluate(() => {
  const a = document.activeElement;
  return { label: a.getAttribute("aria-label"), msg: a.closest(".msg[id]")?.id ?? null };
});

test("react, see it live, toggle, reload, who reacted, the keyboard-only picker", async () => {
  const [alice, bob] = await Promise.all([enter(browser, base, "alice", { axe: true }), enter(browser, base, "bob")]);
  await say(bob, "lunch at noon?");
  await stored(alice, "lunch at noon?").waitFor();

  // alice: the add button beside bob's message, shown on hover, then the quick-pick.
  const msg = stored(alice, "lunch at noon?");
  await msg.hover();
  const add = msg.getByRole("button", { name: "Add reaction" });
  assert.ok(await add.evaluate((b) => getComputedStyle(b).opacity === "1"), "shown on hover");
  await add.click();
  const picker = msg.getByRole("dialog", { name: "Add a reaction" });
  await picker.waitFor();
  assert.equal(await add.getAttribute("aria-expanded"), "true");
  assert.deepEqual(await picker.getByRole("group", { name: "Frequent reactions" }).getByRole("button").evaluateAll((bs) => bs.map((b) => b.textContent)),
    ["👍", "❤️", "😂", "🎉", "😮", "😢", "More"]);
  await picker.getByRole("button", { name: "React with 👍" }).click();
  await picker.waitFor({ state: "detached" });
  await chipIs(alice, "lunch at noon?", "👍", 1, true);
  // bob sees it live, not his.
  await chipIs(bob, "lunch at noon?", "👍", 1, false);

  // bob adds his: 2, pressed for bob; alice's stays pressed (hers too).
  await chip(bob, "lunch at noon?", "👍").click();
  await chipIs(bob, "lunch at noon?", "👍", 2, true);
  await chipIs(alice, "lunch at noon?", "👍", 2, true);
  // alice takes hers back: 1, pressed for bob only.
  await chip(alice, "lunch at noon?", "👍").click();
  await chipIs(alice, "lunch at noon?", "👍", 1, false);
  await chipIs(bob, "lunch at noon?", "👍", 1, true);

  // A reload: counts and "mine" come back from the join's history.
  await bob.reload();
  await waitOnline(bob);
  await chipIs(bob, "lunch at noon?", "👍", 1, true);
  await alice.reload();
  await waitOnline(alice);
  await chipIs(alice, "lunch at noon?", "👍", 1, false);

  // Who reacted: on hover for alice, on keyboard focus for bob (who is "you").
  await chip(alice, "lunch at noon?", "👍").hover();
  const tipA = stored(alice, "lunch at noon?").getByRole("tooltip");
  await tipA.filter({ hasText: "bob reacted with 👍" }).waitFor();
  assert.equal(await chip(alice, "lunch at noon?", "👍").getAttribute("aria-describedby"), await tipA.getAttribute("id"));
  await alice.mouse.move(5, 5);
  await tipA.waitFor({ state: "detached" });
  await say(alice, "carrying on"); // a neighbour below, so the chip is not the last thing
  await stored(bob, "carrying on").waitFor();
  await bob.getByRole("textbox", { name: "Message", exact: true }).focus();
  // Shift+Tab from the composer back to the chip (the keyboard only).
  for (let i = 0; i < 20 && (await focused(bob)).label !== "👍 1 reaction, yours"; i++) await bob.keyboard.press("Shift+Tab");
  assert.deepEqual(await focused(bob), { label: "👍 1 reaction, yours", msg: await stored(bob, "lunch at noon?").getAttribute("id") });
  await stored(bob, "lunch at noon?").getByRole("tooltip").filter({ hasText: "you reacted with 👍" }).waitFor();
  // Space toggles it off from the keyboard; the chip goes, the focus stays in the message.
  await bob.keyboard.press("Space");
  await chip(bob, "lunch at noon?", "👍").waitFor({ state: "detached" });
  await chip(alice, "lunch at noon?", "👍").waitFor({ state: "detached" });
  assert.deepEqual(await focused(bob), { label: "Add reaction", msg: await stored(bob, "lunch at noon?").getAttribute("id") });

  // The keyboard only, for alice: Tab from the list to the add button of bob's message.
  await say(bob, "keyboard please");
  const kmsg = stored(alice, "keyboard please");
  await kmsg.waitFor();
  const kid = await kmsg.getAttribute("id");
  await alice.getByRole("region", { name: "Messages" }).focus();
  for (let i = 0; i < 30; i++) {
    const f = await focused(alice);
    if (f.label === "Add reaction" && f.msg === kid) break;
    await alice.keyboard.press("Tab");
  }
  assert.deepEqual(await focused(alice), { label: "Add reaction", msg: kid });
  assert.ok(await kmsg.getByRole("button", { name: "Add reaction" }).evaluate((b) => getComputedStyle(b).opacity === "1"), "shown on focus");
  // Enter opens it on the first quick-pick; Escape closes and gives the focus back.
  await alice.keyboard.press("Enter");
  await kmsg.getByRole("dialog", { name: "Add a reaction" }).waitFor();
  assert.equal((await focused(alice)).label, "React with 👍");
  await alice.keyboard.press("Escape");
  await kmsg.getByRole("dialog").waitFor({ state: "detached" });
  assert.deepEqual(await focused(alice), { label: "Add reaction", msg: kid });
  // Again: arrows to "More", Enter opens the grid (groups), arrows move in it, Enter picks.
  await alice.keyboard.press("Enter");
  for (let i = 0; i < 6; i++) await alice.keyboard.press("ArrowRight");
  assert.equal((await focused(alice)).label, "More emoji");
  await alice.keyboard.press("Enter");
  const grid = kmsg.getByRole("group", { name: "Smileys" });
  await grid.waitFor();
  for (const g of ["Gestures", "Symbols", "Things"]) await kmsg.getByRole("group", { name: g }).waitFor();
  const smileys = await grid.getByRole("button").evaluateAll((bs) => bs.map((b) => b.getAttribute("aria-label")));
  const cols = await grid.evaluate((g) => getComputedStyle(g).gridTemplateColumns.split(" ").length);
  assert.equal((await focused(alice)).label, smileys[0]);
  await alice.keyboard.press("ArrowDown");
  assert.equal((await focused(alice)).label, smileys[cols]);
  await alice.keyboard.press("ArrowRight");
  assert.equal((await focused(alice)).label, smileys[cols + 1]);
  await alice.keyboard.press("ArrowUp");
  assert.equal((await focused(alice)).label, smileys[1]);
  await alice.keyboard.press("ArrowUp"); // up from the grid: the quick-pick row
  assert.match((await focused(alice)).label, /^React with |^More emoji$/);
  await alice.keyboard.press("ArrowDown");
  await alice.keyboard.press("ArrowDown");
  const picked = (await focused(alice)).label;
  assert.ok(smileys.indexOf(picked) >= cols && smileys.indexOf(picked) < 2 * cols, `${picked}: the second row`);
  const emoji = picked.replace("React with ", "");
  await alice.keyboard.press("Enter");
  await kmsg.getByRole("dialog").waitFor({ state: "detached" });
  await chipIs(alice, "keyboard please", emoji, 1, true);
  await chipIs(bob, "keyboard please", emoji, 1, false);
  assert.deepEqual(await focused(alice), { label: "Add reaction", msg: kid }, "the focus is back on the add button");
  // Home and End in the picker; Tab leaves it like Escape.
  await alice.keyboard.press("Enter");
  await alice.keyboard.press("End");
  await alice.keyboard.press("Home");
  assert.equal((await focused(alice)).label, "React with 👍");
  await alice.keyboard.press("Tab");
  await kmsg.getByRole("dialog").waitFor({ state: "detached" });
  assert.deepEqual(await focused(alice), { label: "Add reaction", msg: kid });

  // With reactions, the picker (and its grid) and a tooltip on screen: no axe or contrast
  // failure, light and dark. A click elsewhere (the theme button) closes the picker.
  for (const theme of ["light", "dark"]) {
    if (theme === "dark") {
      await alice.getByRole("button", { name: "Dark mode" }).click();
      await kmsg.getByRole("dialog").waitFor({ state: "detached" });
    }
    await kmsg.getByRole("button", { name: "Add reaction" }).click();
    await kmsg.getByRole("button", { name: "More emoji" }).click();
    await kmsg.getByRole("group", { name: "Things" }).waitFor();
    await chip(alice, "keyboard please", emoji).hover();
    await kmsg.getByRole("tooltip").filter({ hasText: `you reacted with ${emoji}` }).waitFor();
    await alice.screenshot({ path: join(shots, `reactions-${theme}.png`) });
    assert.deepEqual(await contrastFailures(alice), [], `${theme}: contrast`);
    assert.deepEqual(await axe(alice), [], `${theme}: axe`);
  }
  await alice.getByRole("button", { name: "Dark mode" }).click();
  await kmsg.getByRole("dialog").waitFor({ state: "detached" });

  // A deleted message loses its reactions and has no reaction controls.
  await stored(bob, "keyboard please").getByRole("button", { name: "Delete message" }).click();
  await stored(bob, "keyboard please").getByRole("button", { name: "Confirm delete" }).click();
  const gone = alice.locator("#" + kid);
  await gone.locator(".bubble", { hasText: "message deleted" }).waitFor();
  assert.equal(await gone.locator(".chip, .react-add").count(), 0);
  assert.equal(await bob.locator("#" + kid).locator(".chip, .react-add").count(), 0);

  assert.deepEqual([...alice.errors, ...bob.errors], []);
  await alice.context().close();
  await bob.context().close();
});

test("a refused reaction is shown as an error; a phone's touch screen can react", async () => {
  const carol = await client(base, await register(base, "carol"));
  await carol.request({ type: "join", room: "general" });
  const full = await carol.request({ type: "send", room: "general", text: "twenty already" });
  const twenty = "😀 😃 😄 😁 😅 🤣 😇 🙂 😉 😍 🥰 😘 😎 🤩 🥳 🤔 🤨 😐 🙄 😏".split(" ");
  for (const e of twenty) assert.equal((await carol.request({ type: "react", id: full.id, emoji: e })).type, "reacted");

  const dana = await enter(browser, base, "dana", { viewport: PHONE, hasTouch: true, isMobile: true });
  const m = stored(dana, "twenty already");
  await m.waitFor();
  assert.equal(await m.locator(".chip").count(), 20);
  // A 21st different emoji: refused, and said so.
  await m.getByRole("button", { name: "Add reaction" }).tap();
  await m.getByRole("button", { name: "React with 👍" }).tap();
  await dana.getByRole("alert").filter({ hasText: "Reaction not saved: this message has as many different reactions as it can take." }).waitFor();
  await dana.getByRole("button", { name: "Dismiss" }).tap();
  // One already there can still be added to.
  await chip(dana, "twenty already", "😀").tap();
  await chipIs(dana, "twenty already", "😀", 2, true);

  // On a touch screen the add button beside a message is there without hovering.
  await carol.request({ type: "send", room: "general", text: "from the phone" });
  const p = stored(dana, "from the phone");
  await p.waitFor();
  const add = p.getByRole("button", { name: "Add reaction" });
  assert.ok(await add.evaluate((b) => getComputedStyle(b).opacity === "1"), "visible without hover");
  await add.tap();
  await p.getByRole("button", { name: "React with 🎉" }).tap();
  await chipIs(dana, "from the phone", "🎉", 1, true);
  await p.getByRole("button", { name: "Add reaction" }).tap();
  await p.getByRole("button", { name: "More emoji" }).tap();
  await p.getByRole("group", { name: "Things" }).getByRole("button", { name: "React with 🚀" }).tap();
  await chipIs(dana, "from the phone", "🚀", 1, true);
  // Nothing sticks out sideways.
  assert.ok(await dana.evaluate(() => document.body.scrollWidth <= innerWidth), "no sideways page scroll");
  await dana.screenshot({ path: join(shots, "reactions-phone.png") });
  // Every emoji the picker offers is one the server takes (on messages of its own: 20 each,
  // two messages a checker, whose action burst covers them without waiting).
  const offered = await dana.evaluate(() => [...new Set([...QUICK_REACTIONS, ...REACTION_GROUPS.flatMap(([, l]) => l)])]);
  assert.ok(offered.length >= 36, `${offered.length} emoji offered`);
  let checker = null;
  for (let i = 0; i < offered.length; i += 20) {
    if (i % 40 === 0) {
      checker?.close();
      checker = await client(base, await register(base, "checker" + i));
      await checker.request({ type: "join", room: "general" });
    }
    const target = await checker.request({ type: "send", room: "general", text: "emoji check " + i });
    for (const e of offered.slice(i, i + 20)) {
      let r;
      for (;;) { // within the action budget (5/s)
        r = await checker.request({ type: "react", id: target.id, emoji: e });
        if (r.code !== "rate_limited") break;
        await new Promise((ok) => setTimeout(ok, r.retry_after_ms));
      }
      assert.equal(r.type, "reacted", `${e}: ${JSON.stringify(r)}`);
    }
  }
  checker.close();
  assert.deepEqual(dana.errors, []);
  carol.close();
  await dana.context().close();
});
