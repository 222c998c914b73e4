// Two people chatting in the web UI (issue 14, item 7: message actions inline), admins'
// moderation, and read receipts coalesced on a server with a small budget.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { join } from "node:path";
import { startServer, stopServer, launch, enter, say, stored, shots, root, dir, waitOnline, register, client } from "./helpers.mjs";

let server, base, browser;

before(async () => {
  server = await startServer();
  base = server.base;
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await stopServer(server?.p);
});

const composer = (page) => page.getByRole("textbox", { name: "Message", exact: true });

test("two people chat: grouped, linked, edited and deleted in place, times on hover and focus", async () => {
  const [alice, bob] = await Promise.all([enter(browser, base, "alice"), enter(browser, base, "bob")]);

  await say(alice, "hello bob");
  await stored(bob, "hello bob").waitFor();
  await say(bob, "hi alice");
  await stored(alice, "hi alice").waitFor();
  // Mine on the right, theirs on the left.
  assert.ok(await stored(alice, "hello bob").evaluate((e) => e.classList.contains("mine")));
  const [mine, theirs] = await Promise.all([stored(alice, "hello bob").boundingBox(), stored(alice, "hi alice").boundingBox()]);
  assert.ok(mine.x > theirs.x, "my bubble is further right");

  // Consecutive messages from one sender sit under one header.
  await say(alice, "go on");
  await stored(bob, "go on").waitFor();
  for (const t of ["one", "two", "three"]) await say(bob, "group " + t);
  await stored(alice, "group three").waitFor();
  const headers = await alice.$$eval(".msg[id]", (els) => els.filter((e) => /group /.test(e.textContent)).map((e) => !!e.querySelector(".meta")));
  assert.deepEqual(headers, [true, false, false], "one header for the run");
  assert.equal(await stored(alice, "group one").locator(".meta .who").textContent(), "bob");

  // The full date and time on hover and on keyboard focus.
  const year = String(new Date().getFullYear());
  const head = stored(alice, "group one").locator("time");
  await head.hover();
  assert.ok((await head.getAttribute("title")).includes(year));
  assert.ok((await head.locator(".full").innerText()).includes(year), "shown on hover");
  const ghost = stored(alice, "group two").locator("time");
  await ghost.focus();
  assert.ok(await ghost.isVisible());
  assert.ok((await ghost.locator(".full").innerText()).includes(year), "shown on focus");
  assert.ok((await ghost.getAttribute("aria-label")).includes(year));

  // Links end before trailing punctuation, keep balanced brackets, and are safe.
  await say(bob, "see https://example.com/x. and (https://example.com/wiki/A_(b)), or https://example.com/q?a=1!");
  const links = stored(alice, "see https").locator("a");
  await links.first().waitFor();
  assert.deepEqual(await links.evaluateAll((as) => as.map((a) => a.getAttribute("href"))),
    ["https://example.com/x", "https://example.com/wiki/A_(b)", "https://example.com/q?a=1"]);
  assert.equal(await links.first().getAttribute("rel"), "noopener noreferrer");

  // Markup is text, never HTML.
  await say(alice, "<img src=x onerror=alert(1)>");
  await stored(bob, "<img src=x onerror=alert(1)>").waitFor();
  assert.equal(await bob.locator(".bubble img").count(), 0);

  // Edit in place: Escape cancels, Enter saves; no prompt() anywhere.
  const msg = stored(alice, "hello bob");
  await msg.getByRole("button", { name: "Edit message" }).click();
  const editor = alice.getByRole("textbox", { name: "Edit message" });
  await editor.fill("hello bob, changed my mind");
  await editor.press("Escape");
  await editor.waitFor({ state: "detached" });
  assert.equal(await msg.locator(".bubble").textContent(), "hello bob");
  await msg.getByRole("button", { name: "Edit message" }).click();
  assert.equal(await editor.inputValue(), "hello bob");
  // A message arriving meanwhile does not disturb the edit.
  await say(bob, "while you edit");
  await stored(alice, "while you edit").waitFor();
  await editor.fill("hello bob, edited");
  await editor.press("Enter");
  await stored(bob, "hello bob, edited").waitFor();
  await bob.locator(".msg[id]", { hasText: "hello bob, edited" }).locator(".tools", { hasText: "edited" }).waitFor();
  assert.equal(await stored(alice, "hello bob, edited").locator(".bubble").textContent(), "hello bob, edited");

  // Delete with an inline confirmation: Cancel keeps it, Delete deletes it.
  await say(alice, "to be deleted");
  await stored(bob, "to be deleted").waitFor();
  const doomed = stored(alice, "to be deleted");
  await doomed.getByRole("button", { name: "Delete message" }).click();
  await doomed.getByText("Delete this message?").waitFor();
  await doomed.getByRole("button", { name: "Cancel" }).click();
  assert.equal(await doomed.getByText("Delete this message?").count(), 0);
  await doomed.getByRole("button", { name: "Delete message" }).click();
  await doomed.getByRole("button", { name: "Confirm delete" }).click();
  await bob.locator(".msg.deleted .bubble", { hasText: "message deleted" }).waitFor();
  assert.equal(await bob.locator(".bubble", { hasText: "to be deleted" }).count(), 0);
  // bob cannot edit or delete alice's messages.
  assert.equal(await stored(bob, "hello bob, edited").getByRole("button", { name: /Edit|Delete/ }).count(), 0);
  assert.ok(!alice.sawDialog && !bob.sawDialog, "no alert, prompt or confirm");
  assert.deepEqual([...alice.errors, ...bob.errors], []);
  await alice.screenshot({ path: join(shots, "chat.png") });

  // A direct message by clicking a member; bob sees the conversation appear.
  await alice.getByRole("button", { name: "Members" }).click();
  await alice.locator("#member-list").getByRole("button", { name: /^bob/ }).click();
  await say(alice, "psst, bob");
  await stored(alice, "psst, bob").waitFor();
  const dm = bob.locator("#dm-list").getByRole("button", { name: /alice/ });
  await dm.click();
  await stored(bob, "psst, bob").waitFor();
  await say(bob, "psst yourself");
  await stored(alice, "psst yourself").waitFor();

  // Reload keeps the session and the history.
  await bob.locator("#room-list").getByRole("button", { name: "# general" }).click();
  await bob.reload();
  await waitOnline(bob);
  await stored(bob, "hi alice").waitFor();
  for (const p of [alice, bob]) await p.context().close();
});

// `chatterbox admin grant|revoke NAME --db PATH`, against a test server's database.
function adminCommand(verb, name, db) {
  return new Promise((resolve, reject) => {
    const p = spawn(join(root, "target/release/chatterbox"), ["admin", verb, name, "--db", join(dir, db)], { stdio: "ignore" });
    p.on("exit", (code) => (code === 0 ? resolve() : reject(new Error(`admin ${verb} exited ${code}`))));
  });
}

test("an admin deletes anyone's message inline, removes a member, suspends an account, and reads the audit log", async () => {
  const s = await startServer(0, [], "mod.db");
  try {
    const at = s.base;
    const [olga, bob, carol] = await Promise.all(["olga", "bob", "carol"].map((n) => enter(browser, at, n)));
    await say(bob, "spam from bob");
    await stored(olga, "spam from bob").waitFor();
    assert.ok(await olga.locator("#audit-btn").isHidden());
    assert.equal(await stored(olga, "spam from bob").getByRole("button", { name: /Edit|Delete/ }).count(), 0);

    await adminCommand("grant", "olga", "mod.db");
    // The server learns of it within about a second: once its API says so, the page is
    // reloaded (and again, should its hello not say so yet).
    const olgaToken = await olga.evaluate(() => localStorage.getItem("chatterbox.token"));
    for (let i = 0; (await fetch(at + "/admin/stats", { headers: { Authorization: "Bearer " + olgaToken } })).status !== 200; i++) {
      assert.ok(i < 100, "the server never learned that olga is an admin");
      await new Promise((res) => setTimeout(res, 100));
    }
    for (let i = 0; ; i++) {
      await olga.reload();
      const ok = await olga.waitForSelector("#audit-btn:not([hidden])", { timeout: 1500 }).then(() => true, () => false);
      if (ok) break;
      assert.ok(i < 10, "hello never said admin");
    }
    await waitOnline(olga);
    assert.ok(await olga.locator("#me-admin").isVisible());

    // Deleting bob's message from the keyboard, after an inline confirmation.
    const spam = stored(olga, "spam from bob");
    await spam.getByRole("button", { name: "Delete bob's message (admin)" }).focus();
    await olga.keyboard.press("Enter");
    await spam.getByText("Delete bob's message? (admin, audited)").waitFor();
    await spam.getByRole("button", { name: "Confirm delete" }).click();
    await bob.locator(".msg.deleted .bubble", { hasText: "message deleted" }).waitFor();
    assert.equal(await bob.locator(".bubble", { hasText: "spam from bob" }).count(), 0);

    // Removing bob from a public room (two clicks: the button asks first).
    const c = await client(at, await register(at, "opsowner"));
    await c.request({ type: "create_room", room: "ops", private: false });
    for (const p of [bob, olga]) {
      await p.getByRole("button", { name: "Browse or create rooms" }).click();
      await p.getByLabel("Find a room, or name a new one").fill("ops");
      await p.getByRole("button", { name: "Join # ops" }).click();
      await p.waitForSelector("#room-title:text('# ops')");
    }
    c.close();
    await say(bob, "bob was here");
    await stored(olga, "bob was here").waitFor();
    await olga.getByRole("button", { name: "Members" }).click();
    const removeBob = olga.getByRole("button", { name: "Remove bob from # ops" });
    await removeBob.click();
    await olga.getByRole("button", { name: "Really remove bob? Remove bob from # ops" }).click();
    await bob.getByRole("alert").getByText("You were removed from #ops by olga.").waitFor();
    await bob.waitForSelector("#room-title:text('# general')");
    assert.equal(await bob.locator("#room-list").getByRole("button", { name: "# ops" }).count(), 0);
    await olga.locator("#member-list li", { hasText: "bob" }).waitFor({ state: "detached" });
    await olga.locator("#room-list").getByRole("button", { name: "# general" }).click();

    // Suspending carol: her page says so, and so does a new sign-in.
    const suspendCarol = olga.getByRole("button", { name: "Suspend carol", exact: true });
    await suspendCarol.click();
    await olga.getByRole("button", { name: "Really suspend carol? Suspend carol" }).click();
    await carol.waitForSelector("#auth:not([hidden])");
    await carol.waitForSelector("#auth-error:text('This account is suspended.')");
    await olga.getByRole("button", { name: "Unsuspend carol", exact: true }).waitFor();

    // The audit log lists it all, newest first; Escape closes it and focus returns.
    await olga.getByRole("button", { name: "Audit log" }).click();
    await olga.waitForFunction(() => document.querySelectorAll("#audit-list tr").length >= 4);
    const rows = await olga.$$eval("#audit-list tr", (trs) => trs.map((tr) => [...tr.cells].slice(1).map((c) => c.textContent)));
    assert.deepEqual(rows.slice(0, 3).map((r) => r.slice(0, 2)), [
      ["olga", "suspended"], ["olga", "removed from room"], ["olga", "deleted message"]]);
    await olga.keyboard.press("Escape");
    await olga.waitForFunction(() => !document.querySelector("#audit").open);
    assert.equal(await olga.evaluate(() => document.activeElement.id), "audit-btn");
    assert.ok(!olga.sawDialog, "no confirm()");
    for (const p of [olga, bob, carol]) await p.context().close();
  } finally {
    await stopServer(s.p);
  }
});

test("seen receipts are coalesced while a burst arrives", async () => {
  // A server of its own that allows one message a second (burst 2).
  const slow = await startServer(0, ["--msg-rate", "1", "--msg-burst", "2"], "slow.db");
  try {
    const seen = [];
    const [ivan, judy] = await Promise.all([enter(browser, slow.base, "ivan"),
      enter(browser, slow.base, "judy", { setup: (p) => p.on("websocket", (ws) => ws.on("framesent", (f) => {
        const m = JSON.parse(f.payload);
        if (m.type === "seen") seen.push({ id: m.id, at: Date.now() });
      })) })]);
    for (let i = 1; i <= 5; i++) await say(ivan, "burst " + i);
    await ivan.waitForFunction(() => document.querySelectorAll(".msg.pending").length === 0, null, { timeout: 15000 });
    await stored(judy, "burst 5").waitFor();
    const texts = await judy.$$eval(".msg[id] .bubble", (b) => b.map((x) => x.textContent).filter((t) => t.startsWith("burst")));
    assert.deepEqual(texts, ["burst 1", "burst 2", "burst 3", "burst 4", "burst 5"]);
    const ids = await judy.$$eval(".msg[id]", (els) => els.map((e) => Number(e.id.slice(1))));
    // At most one `seen` a second per room: the last one may wait up to a second.
    for (let i = 0; i < 30 && !(seen.length && seen[seen.length - 1].id === Math.max(...ids)); i++) await judy.waitForTimeout(100);
    assert.ok(seen.length >= 1 && seen.length <= 5, JSON.stringify(seen));
    for (let i = 1; i < seen.length; i++) assert.ok(seen[i].at - seen[i - 1].at >= 900, JSON.stringify(seen));
    assert.equal(seen[seen.length - 1].id, Math.max(...ids));
    await ivan.context().close();
    await judy.context().close();
  } finally {
    await stopServer(slow.p);
  }
});
