// Browser test of the web UI: the real release server on port 0 with a temp database,
// two users in two browser contexts of Debian's headless Chromium.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const dir = mkdtempSync(join(tmpdir(), "chatterbox-ui-"));
const shots = join(dir, "screenshots");
mkdirSync(shots);
let server, base, browser;

function startServer(port = 0, extra = [], db = "ui.db") {
  return new Promise((resolve, reject) => {
    const p = spawn(join(root, "target/release/chatterbox"),
      ["--listen", `127.0.0.1:${port}`, "--db", join(dir, db), "--auth-per-minute", "10000", ...extra],
      { stdio: ["ignore", "pipe", "ignore"] });
    p.stdout.on("data", (d) => {
      const m = /http:\/\/(\S+)/.exec(String(d));
      if (m) resolve({ p, addr: m[1] });
    });
    p.on("exit", (code) => reject(new Error("server exited " + code)));
  });
}

before(async () => {
  const s = await startServer();
  server = s.p;
  base = "http://" + s.addr;
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
      "--disable-component-update", "--disable-sync", "--no-first-run"],
  });
  console.log("screenshots in " + shots);
});

after(async () => {
  await browser?.close();
  server?.kill("SIGKILL");
});

async function signUp(name, viewport, at = base) {
  const ctx = await browser.newContext({ viewport: viewport || { width: 1200, height: 800 } });
  const page = await ctx.newPage();
  page.on("dialog", (d) => { if (d.type() === "alert") page.sawAlert = true; });
  await page.goto(at + "/");
  await page.fill("#auth-user", name);
  await page.fill("#auth-pass", "password-" + name);
  await page.click("#register-btn");
  await page.waitForSelector("#app:not([hidden])");
  await page.waitForFunction(() => document.querySelector("#conn-state").textContent === "");
  return page;
}

async function say(page, text) {
  await page.fill("#text", text);
  await page.press("#text", "Enter");
}

const bubble = (page, text) => page.locator(".msg:not(.pending)", { hasText: text }).first();

test("two people chat, type, edit, delete, read, and stay safe", async () => {
  const alice = await signUp("alice");
  const bob = await signUp("bob");
  // A wrong password gets a clear error.
  const ctx = await browser.newContext();
  const eve = await ctx.newPage();
  await eve.goto(base + "/");
  await eve.fill("#auth-user", "alice");
  await eve.fill("#auth-pass", "not-her-password");
  await eve.click("#login-btn");
  await eve.waitForSelector("#auth-error:text('Wrong username or password.')");
  await ctx.close();

  await say(alice, "hello bob");
  await bubble(bob, "hello bob").waitFor();
  await say(bob, "hi alice");
  await bubble(alice, "hi alice").waitFor();
  // Mine on the right, theirs on the left.
  assert.ok(await bubble(alice, "hello bob").evaluate((e) => e.classList.contains("mine")));
  assert.ok(!(await bubble(alice, "hi alice").evaluate((e) => e.classList.contains("mine"))));
  const [mine, theirs] = await Promise.all([
    bubble(alice, "hello bob").boundingBox(), bubble(alice, "hi alice").boundingBox()]);
  assert.ok(mine.x > theirs.x, "my bubble is further right");

  // Typing indicator appears and goes (after a second, so bob's typing budget of 2/s,
  // spent on the message he just wrote, has refilled).
  await bob.waitForTimeout(1100);
  await bob.type("#text", "typing...");
  await alice.waitForSelector("#typing:text('bob is typing…')");
  await bob.fill("#text", "");
  await bob.locator("#text").blur();
  await alice.waitForFunction(() => !document.querySelector("#typing").textContent.includes("bob"));

  // The seen mark fills when bob has read alice's message.
  await alice.waitForFunction(() => [...document.querySelectorAll(".msg.mine .receipt")].some((r) => r.textContent === "●"));

  // Edit and delete propagate.
  alice.once("dialog", (d) => d.accept("hello bob, edited"));
  await bubble(alice, "hello bob").locator("button:text('Edit')").click();
  await bubble(bob, "hello bob, edited").waitFor();
  await bob.waitForFunction(() => [...document.querySelectorAll(".msg .tools span")].some((s) => s.textContent === "edited"));
  await say(alice, "to be deleted");
  await bubble(bob, "to be deleted").waitFor();
  alice.once("dialog", (d) => d.accept());
  await bubble(alice, "to be deleted").locator("button:text('Delete')").click();
  await bob.waitForFunction(() => [...document.querySelectorAll(".msg.deleted .bubble")].some((b) => b.textContent === "message deleted"));

  // Markup is text, never HTML.
  await say(alice, "<img src=x onerror=alert(1)>");
  await bubble(bob, "<img src=x onerror=alert(1)>").waitFor();
  assert.equal(await bob.locator(".bubble img").count(), 0);
  assert.ok(!bob.sawAlert && !alice.sawAlert);

  // A link becomes a safe link.
  await say(bob, "see https://example.com/x");
  const a = alice.locator(".bubble a[href='https://example.com/x']");
  await a.waitFor();
  assert.equal(await a.getAttribute("rel"), "noopener noreferrer");
  await alice.screenshot({ path: join(shots, "chat.png") });
  await alice.screenshot({ path: join(root, "docs", "screenshot.png") });

  // A private room is invisible to a third user.
  await alice.fill("#new-room-name", "secret");
  await alice.check("#new-room-private");
  await alice.click("#new-room button[type=submit]");
  await alice.locator("#room-list button", { hasText: "secret" }).waitFor();
  await say(alice, "private words");
  await bubble(alice, "private words").waitFor();
  const carol = await signUp("carol");
  await carol.waitForTimeout(500);
  assert.equal(await carol.locator("#room-list button", { hasText: "secret" }).count(), 0);
  assert.equal(await carol.locator(".bubble", { hasText: "private words" }).count(), 0);

  // A direct message by clicking a member; bob sees the conversation appear.
  await alice.click("#room-list button:has-text('general')");
  await alice.click("#members-btn");
  await alice.click("#member-list button:has-text('bob')");
  await say(alice, "psst, bob");
  await bubble(alice, "psst, bob").waitFor();
  const dm = bob.locator("#dm-list button", { hasText: "alice" });
  await dm.waitFor();
  await dm.click();
  await bubble(bob, "psst, bob").waitFor();
  await say(bob, "psst yourself");
  await bubble(alice, "psst yourself").waitFor();
  await bob.click("#room-list button:has-text('general')");

  // Reload keeps the session and the history.
  await bob.reload();
  await bubble(bob, "hi alice").waitFor();
  assert.ok(await bob.locator("#app:not([hidden])").isVisible());

  // Narrow screen.
  const narrow = await signUp("dave", { width: 375, height: 740 });
  await bubble(narrow, "hi alice").waitFor();
  await narrow.screenshot({ path: join(root, "docs", "screenshot-narrow.png") });
});

test("the page reconnects after a server restart and shows what it missed once", async () => {
  const alice = await signUp("erin");
  await say(alice, "before restart");
  await bubble(alice, "before restart").waitFor();
  const port = base.split(":").pop();
  server.kill("SIGTERM");
  await new Promise((r) => server.once("exit", r));
  await alice.waitForSelector("#conn-state:text('reconnecting…')");
  const s = await startServer(port);
  server = s.p;
  // Someone else sends while the page is still reconnecting.
  const login = await fetch(base + "/login", { method: "POST", body: JSON.stringify({ username: "alice", password: "password-alice" }) });
  const { token } = await login.json();
  const ws = new WebSocket(`ws://127.0.0.1:${port}/ws?token=${token}`);
  await new Promise((r) => (ws.onopen = r));
  ws.send(JSON.stringify({ type: "send", room: "general", text: "sent while you were away" }));
  await new Promise((r) => (ws.onmessage = (e) => { if (JSON.parse(e.data).type === "message") r(); }));
  ws.close();
  await alice.waitForSelector("#conn-state:text('')", { timeout: 20000 }).catch(() => {});
  await bubble(alice, "sent while you were away").waitFor({ timeout: 20000 });
  await alice.waitForTimeout(500);
  assert.equal(await alice.locator(".bubble", { hasText: "sent while you were away" }).count(), 1);
  assert.equal(await alice.locator(".bubble", { hasText: "before restart" }).count(), 1);
  const ids = await alice.$$eval(".msg[id]", (els) => els.map((e) => Number(e.id.slice(1))));
  assert.deepEqual(ids, [...ids].sort((a, b) => a - b), "in order");
  assert.equal(new Set(ids).size, ids.length, "no duplicates");
});

test("an invitation waits in the sidebar until it is accepted or declined", async () => {
  const frank = await signUp("frank");
  const grace = await signUp("grace");
  const invite = async (owner, roomName, user) => {
    await owner.fill("#new-room-name", roomName);
    await owner.check("#new-room-private");
    await owner.click("#new-room button[type=submit]");
    await owner.locator("#room-list button", { hasText: roomName }).waitFor();
    await owner.waitForSelector("#invite-btn:not([hidden])");
    owner.once("dialog", (d) => d.accept(user));
    await owner.click("#invite-btn");
    await owner.waitForSelector(`#typing:text('Invited ${user} to ${roomName}.')`);
  };

  // An invitation is not a membership: grace sees it offered, not the room.
  await invite(frank, "plans", "grace");
  const offer = grace.locator("#invite-list li", { hasText: "plans" });
  await offer.waitFor();
  assert.equal((await offer.locator(".invite-text").textContent()).trim(), "frank invited you to # plans");
  assert.equal(await grace.locator("#room-list button", { hasText: "plans" }).count(), 0);
  await grace.screenshot({ path: join(shots, "invitation.png") });

  // Accepted from the keyboard: the room opens, the offer goes, frank's next message arrives.
  await offer.locator("button", { hasText: "Accept" }).focus();
  await grace.keyboard.press("Enter");
  await grace.waitForSelector("#room-title:text('# plans')");
  await grace.locator("#room-list button", { hasText: "plans" }).waitFor();
  await offer.waitFor({ state: "detached" });
  assert.ok(await grace.locator("#invites").isHidden());
  await say(frank, "welcome, grace");
  await bubble(grace, "welcome, grace").waitFor();
  await grace.click("#members-btn");
  await grace.waitForSelector("#member-count:text('2 · 2 online')");
  await grace.click("#members-btn");

  // A second invitation is declined and disappears, and the server forgot it.
  await invite(frank, "plans-b", "grace");
  const second = grace.locator("#invite-list li", { hasText: "plans-b" });
  await second.waitFor();
  await second.locator("button", { hasText: "Decline" }).click();
  await second.waitFor({ state: "detached" });
  assert.ok(await grace.locator("#invites").isHidden());
  assert.equal(await grace.locator("#room-list button", { hasText: "plans-b" }).count(), 0);
  const pendingNow = await grace.evaluate(async () => {
    const r = await fetch("/invitations", { headers: { Authorization: "Bearer " + localStorage.getItem("chatterbox.token") } });
    return r.json();
  });
  assert.deepEqual(pendingNow, []);

  // Invited while away: the offer comes with hello; on a phone the menu button says so.
  await signUp("heidi", { width: 375, height: 740 }).then((p) => p.context().close());
  await invite(frank, "plans-c", "heidi");
  const ctx = await browser.newContext({ viewport: { width: 375, height: 740 } });
  const heidi = await ctx.newPage();
  await heidi.goto(base + "/");
  await heidi.fill("#auth-user", "heidi");
  await heidi.fill("#auth-pass", "password-heidi");
  await heidi.click("#login-btn");
  await heidi.waitForSelector("#menu-badge:not([hidden])");
  assert.equal(await heidi.getAttribute("#menu-btn", "aria-label"), "Show rooms (1 invitation)");
  await heidi.click("#menu-btn");
  const offerC = heidi.locator("#invite-list li", { hasText: "plans-c" });
  await offerC.waitFor();
  await heidi.waitForTimeout(300); // the sidebar slides in
  await heidi.screenshot({ path: join(shots, "invitation-narrow.png") });
  await offerC.locator("button", { hasText: "Accept" }).click();
  await heidi.waitForSelector("#room-title:text('# plans-c')");
  assert.ok(await heidi.locator("#menu-badge").isHidden());
  await ctx.close();
});

test("messages past the rate limit go out after the wait, in order; seen is coalesced", async () => {
  // A server of its own that allows one message a second (burst 2).
  const slow = await startServer(0, ["--msg-rate", "1", "--msg-burst", "2"], "slow.db");
  try {
    const at = "http://" + slow.addr;
    const ivan = await signUp("ivan", null, at);
    const judy = await signUp("judy", null, at);
    const seen = [];
    judy.on("websocket", (ws) => ws.on("framesent", (f) => {
      const m = JSON.parse(f.payload);
      if (m.type === "seen") seen.push({ id: m.id, at: Date.now() });
    }));
    await judy.reload(); // a socket of its own, with the listener on it
    await judy.waitForSelector("#app:not([hidden])");
    await judy.waitForFunction(() => document.querySelector("#conn-state").textContent === "");
    for (let i = 1; i <= 5; i++) await say(ivan, "burst " + i);
    // Refused by the server at first, none stays stuck, and they arrive in order.
    await ivan.waitForFunction(() => document.querySelectorAll(".msg.pending").length === 0, null, { timeout: 15000 });
    assert.equal(await ivan.locator(".msg.failed").count(), 0);
    await bubble(judy, "burst 5").waitFor();
    const texts = await judy.$$eval(".msg .bubble", (b) => b.map((x) => x.textContent).filter((t) => t.startsWith("burst")));
    assert.deepEqual(texts, ["burst 1", "burst 2", "burst 3", "burst 4", "burst 5"]);
    // judy read them as they came: at most one seen per 500 ms, the last for the newest.
    await judy.waitForTimeout(700);
    assert.ok(seen.length >= 1 && seen.length <= 5, JSON.stringify(seen));
    // Timed where the test hears of each frame (DevTools events arrive with up to ~100 ms
    // of jitter under load); sends that were not coalesced would be ~0 ms apart.
    for (let i = 1; i < seen.length; i++) assert.ok(seen[i].at - seen[i - 1].at >= 300, JSON.stringify(seen));
    const ids = await judy.$$eval(".msg[id]", (els) => els.map((e) => Number(e.id.slice(1))));
    assert.equal(seen[seen.length - 1].id, Math.max(...ids));
    await ivan.context().close();
    await judy.context().close();
  } finally {
    slow.p.kill("SIGKILL");
  }
});

// `chatterbox admin grant|revoke NAME --db PATH`, against a test server's database.
function adminCommand(verb, name, db) {
  return new Promise((resolve, reject) => {
    const p = spawn(join(root, "target/release/chatterbox"), ["admin", verb, name, "--db", join(dir, db)],
      { stdio: "ignore" });
    p.on("exit", (code) => (code === 0 ? resolve() : reject(new Error(`admin ${verb} exited ${code}`))));
  });
}

test("an admin deletes a message, removes a member, suspends an account, and reads the audit log", async () => {
  const s = await startServer(0, [], "mod.db");
  try {
    const at = "http://" + s.addr;
    const olga = await signUp("olga", null, at);
    const bob = await signUp("bob", null, at);
    const carol = await signUp("carol", null, at);
    await say(bob, "spam from bob");
    await bubble(olga, "spam from bob").waitFor();
    // Not an admin yet: no moderation anywhere.
    assert.ok(await olga.locator("#audit-btn").isHidden());
    assert.ok(await olga.locator("#me-admin").isHidden());
    assert.equal(await bubble(olga, "spam from bob").locator("button").count(), 0);

    // Granted with the binary; the server follows within a second, and hello says so.
    await adminCommand("grant", "olga", "mod.db");
    for (let i = 0; ; i++) {
      await olga.reload();
      const ok = await olga.waitForSelector("#audit-btn:not([hidden])", { timeout: 1500 }).then(() => true, () => false);
      if (ok) break;
      assert.ok(i < 10, "hello never said admin");
    }
    assert.ok(await olga.locator("#me-admin").isVisible());

    // Deleting bob's message, from the keyboard, after a confirmation.
    const del = bubble(olga, "spam from bob").getByRole("button", { name: "Delete bob's message (admin)" });
    let asked = "";
    olga.once("dialog", (d) => { asked = d.message(); d.accept(); });
    await del.focus();
    await olga.keyboard.press("Enter");
    await bob.locator(".msg.deleted .bubble", { hasText: "message deleted" }).waitFor();
    assert.match(asked, /Delete this message by bob\?/);
    assert.equal(await bob.locator(".bubble", { hasText: "spam from bob" }).count(), 0);

    // Removing bob from a public room: he is told, and the room leaves his list.
    for (const p of [bob, olga]) {
      await p.fill("#new-room-name", "ops");
      await p.click("#new-room button[type=submit]");
      await p.waitForSelector("#room-title:text('# ops')");
    }
    await say(bob, "bob was here");
    await bubble(olga, "bob was here").waitFor();
    await olga.click("#members-btn");
    const removeBob = olga.getByRole("button", { name: "Remove bob from # ops" });
    await removeBob.waitFor();
    assert.equal(await olga.getByRole("button", { name: "Remove olga from # ops" }).count(), 0, "not oneself");
    await olga.screenshot({ path: join(shots, "admin-members.png") });
    olga.once("dialog", (d) => { asked = d.message(); d.accept(); });
    await removeBob.click();
    await bob.waitForSelector("#notice-text:text('You were removed from #ops by olga.')");
    assert.equal(asked, "Remove bob from #ops?");
    await bob.waitForSelector("#room-title:text('# general')");
    assert.equal(await bob.locator("#room-list button", { hasText: "ops" }).count(), 0);
    await olga.locator("#member-list li", { hasText: "bob" }).waitFor({ state: "detached" });
    await bob.screenshot({ path: join(shots, "removed-notice.png") });
    // bob sees no moderation tools anywhere.
    await bob.click("#members-btn");
    await bob.locator("#member-list li", { hasText: "olga" }).waitFor();
    assert.equal(await bob.locator(".member-tools").count(), 0);
    assert.ok(await bob.locator("#audit-btn").isHidden());
    await olga.click("#room-list button:has-text('general')");
    await say(olga, "from olga");
    await bubble(bob, "from olga").waitFor();
    assert.equal(await bubble(bob, "from olga").locator("button").count(), 0);

    // Suspending carol: her page says so, and so does a new sign-in.
    const suspendCarol = olga.getByRole("button", { name: "Suspend carol", exact: true });
    await suspendCarol.waitFor();
    olga.once("dialog", (d) => d.accept());
    await suspendCarol.click();
    await carol.waitForSelector("#auth:not([hidden])");
    await carol.waitForSelector("#auth-error:text('This account is suspended.')");
    await carol.evaluate(() => { document.querySelector("#auth-error").textContent = ""; });
    await carol.fill("#auth-pass", "password-carol");
    await carol.click("#login-btn");
    await carol.waitForSelector("#auth-error:text('This account is suspended.')");
    assert.equal(await carol.inputValue("#auth-user"), "carol");
    await carol.screenshot({ path: join(shots, "suspended.png") });
    // The toggle keeps focus and says Unsuspend; the member is tagged.
    await olga.getByRole("button", { name: "Unsuspend carol", exact: true }).waitFor();
    await olga.locator("#member-list li", { hasText: "carol" }).locator(".tag", { hasText: "suspended" }).waitFor();
    await olga.screenshot({ path: join(shots, "admin-view.png") });

    // The audit log lists it all, newest first.
    await olga.click("#audit-btn");
    await olga.waitForSelector("#audit[open]");
    await olga.waitForFunction(() => document.querySelectorAll("#audit-list tr").length >= 4);
    const rows = await olga.$$eval("#audit-list tr", (trs) => trs.map((tr) => [...tr.cells].slice(1).map((c) => c.textContent)));
    assert.deepEqual(rows.slice(0, 3).map((r) => r.slice(0, 2)), [
      ["olga", "suspended"], ["olga", "removed from room"], ["olga", "deleted message"]]);
    assert.equal(rows[0][2], "carol");
    assert.equal(rows[1][2], "bob from ops");
    assert.match(rows[2][2], /^message \d+ by bob$/);
    assert.deepEqual(rows[3], ["command line", "granted admin", "olga"]);
    await olga.screenshot({ path: join(shots, "audit-log.png") });
    await olga.keyboard.press("Escape");
    await olga.waitForFunction(() => !document.querySelector("#audit").open);
    assert.equal(await olga.evaluate(() => document.activeElement.id), "audit-btn");
    for (const p of [olga, bob, carol]) await p.context().close();
  } finally {
    s.p.kill("SIGKILL");
  }
});
