// Issue 14 item 11 and issue 18 item 6 in the browser: the admin dashboard at /admin on a
// server with --registration invite. Its charts move when messages are sent, an invite
// code made there registers a user through the sign-in form (which asks for it, and says
// why a missing or used code is refused), Disconnect closes that user's socket with 4003,
// the audit log shows it; a non-admin and a visitor who is not signed in are refused with
// a way back. axe-core and the contrast check pass in both themes at 1280×800 and
// 375×740. With CHATTERBOX_SCREENSHOTS=1 it refreshes docs/screenshot-admin.png.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { startServer, stopServer, launch, newPage, enter, waitOnline, adminCli, login, client, shots, root, axe, contrastFailures, PHONE } from "./helpers.mjs";

let server, base, browser;

before(async () => {
  server = await startServer(0, ["--registration", "invite"], "admin.db");
  base = server.base;
  browser = await launch();
  for (const name of ["boss", "nora", "walt"]) await adminCli(["add-user", name], "admin.db", "password-" + name);
  await adminCli(["grant", "boss"], "admin.db");
  // The running server learns of accounts (and admins) made outside it within about a second.
  for (let i = 0; ; i++) {
    const token = await login(base, "boss");
    const stats = token && await fetch(base + "/admin/stats", { headers: { Authorization: "Bearer " + token } });
    if (stats && stats.status === 200 && await login(base, "nora") && await login(base, "walt")) break;
    assert.ok(i < 100, "the server never learned of boss, nora and walt");
    await new Promise((res) => setTimeout(res, 100));
  }
});

after(async () => {
  await browser?.close();
  await stopServer(server?.p);
});

const docs = (name) => (process.env.CHATTERBOX_SCREENSHOTS ? join(root, "docs", name) : join(shots, name));
const chart = (page, name) => page.getByRole("img", { name: new RegExp("^" + name + " over the last 10 minutes") });

test("a visitor who is not signed in and a non-admin are refused, with a link back; the chat shows them no dashboard link", async () => {
  const anon = await newPage(browser);
  await anon.goto(base + "/admin");
  await anon.getByRole("heading", { name: "Not signed in" }).waitFor();
  assert.ok(await anon.locator("#refusal").getByRole("link", { name: "Back to chat" }).isVisible());
  assert.ok(await anon.locator("#dash").isHidden());
  await anon.context().close();

  const nora = await enter(browser, base, "nora", { existing: true });
  assert.equal(await nora.getByRole("link", { name: "Admin dashboard" }).count(), 0);
  await nora.goto(base + "/admin");
  await nora.getByRole("heading", { name: "Admins only" }).waitFor();
  await nora.getByText("This dashboard is for admins").waitFor();
  await nora.locator("#refusal").getByRole("link", { name: "Back to chat" }).click();
  await waitOnline(nora);
  assert.deepEqual(nora.errors, []);
  await nora.context().close();
});

test("the dashboard: charts move with traffic, an invite made there registers a user, Disconnect closes a socket, suspend and unsuspend by name, the audit log says so", async () => {
  const boss = await enter(browser, base, "boss", { axe: true, existing: true });
  await boss.getByRole("link", { name: "Admin dashboard" }).click();
  await boss.waitForURL(base + "/admin");
  await boss.getByRole("heading", { name: "Last 10 minutes" }).waitFor();
  const msgs = chart(boss, "Messages / s");
  await boss.waitForFunction(() => Number(document.querySelector("[data-key=messages_per_sec] canvas").dataset.points) > 0);
  const before = { label: await msgs.getAttribute("aria-label"), png: await msgs.evaluate((c) => c.toDataURL()) };
  assert.match(before.label, /peak 0\./);

  // nora connects and talks: she shows up online, and the charts move.
  const nora = await client(base, await login(base, "nora"));
  const closed = new Promise((r) => nora.ws.addEventListener("close", (e) => r(e.code)));
  for (let i = 0; i < 12; i++) await nora.request({ type: "send", room: "general", text: "traffic " + i });
  await boss.locator("#online-list li", { hasText: "nora" }).waitFor();
  await boss.waitForFunction(() => Number(document.querySelector("[data-key=messages_per_sec] canvas").dataset.peak) > 0, null, { timeout: 8000 });
  assert.notEqual(await msgs.getAttribute("aria-label"), before.label);
  assert.notEqual(await msgs.evaluate((c) => c.toDataURL()), before.png, "the messages chart was redrawn with the burst");
  assert.match(await chart(boss, "Users online").getAttribute("aria-label"), /peak [1-9]/);
  assert.match(await boss.locator("[data-now=users_online]").textContent(), /^[1-9]/);
  await boss.locator("#rooms-list tr", { hasText: "# general" }).waitFor();

  // Disconnect: asked inline first; then nora's socket closes with 4003.
  await boss.getByRole("button", { name: "Disconnect nora" }).first().click();
  await boss.getByText("Disconnect nora? Their open connections close now").waitFor();
  await boss.getByRole("button", { name: "Cancel" }).click();
  assert.equal(await boss.evaluate(() => document.activeElement.getAttribute("aria-label")), "Disconnect nora");
  await boss.getByRole("button", { name: "Disconnect nora" }).first().click();
  await boss.locator("#confirm-yes").click();
  assert.equal(await Promise.race([closed, new Promise((r) => setTimeout(() => r("still open"), 5000))]), 4003);
  await boss.getByRole("status").filter({ hasText: "nora was disconnected." }).waitFor();

  // Suspend and unsuspend by name (walt is not online): asked first, then done.
  await boss.getByLabel("Any user by name").fill("walt");
  await boss.locator("#user-suspend").click();
  await boss.getByText("Suspend walt? They are signed out everywhere").waitFor();
  await boss.getByRole("button", { name: "Suspend walt", exact: true }).click();
  await boss.getByRole("status").filter({ hasText: "walt is suspended." }).waitFor();
  assert.equal(await login(base, "walt"), null, "a suspended account cannot sign in");
  await boss.locator("#user-unsuspend").click();
  await boss.getByRole("status").filter({ hasText: "walt may sign in again." }).waitFor();
  assert.ok(await login(base, "walt"));
  await boss.getByLabel("Any user by name").fill("nobody-here");
  await boss.locator("#user-disconnect").click();
  await boss.locator("#confirm-yes").click();
  await boss.getByRole("status").filter({ hasText: "Not disconnected: no such user" }).waitFor();

  // An invite code for one sign-up, shown once with a copy button.
  await boss.getByLabel("Uses").fill("1");
  await boss.getByLabel("Expires in (days)").fill("2");
  await boss.getByRole("button", { name: "Create invite code" }).click();
  const codeBox = boss.getByLabel("New invite code (shown once: copy it now)");
  await codeBox.waitFor();
  const code = await codeBox.inputValue();
  assert.match(code, /^[0-9a-f]{32,}$/);
  await boss.getByRole("button", { name: "Copy" }).click();
  await boss.getByRole("status").filter({ hasText: /Copied|copy it by hand/ }).waitFor();

  // The audit log names both.
  await boss.locator("#audit-list tr", { hasText: "created invite" }).waitFor();
  await boss.locator("#audit-list tr", { hasText: "disconnected" }).filter({ hasText: "nora" }).waitFor();
  await boss.locator("#audit-list tr", { hasText: "unsuspended" }).filter({ hasText: "walt" }).waitFor();

  // The sign-in form of an invite-only server: the code field; no code, then the code.
  const newbie = await newPage(browser);
  await newbie.goto(base + "/");
  await newbie.waitForSelector("#auth[data-registration=invite]");
  await newbie.getByLabel("Username").fill("newbie");
  await newbie.getByLabel("Password").fill("password-newbie");
  await newbie.getByRole("button", { name: "Create account" }).click();
  await newbie.locator("#auth-error", { hasText: "needs an invite code" }).waitFor();
  await newbie.getByLabel("Invite code").fill(code);
  await newbie.getByRole("button", { name: "Create account" }).click();
  await waitOnline(newbie);
  // Used up: the next one is told so.
  const late = await newPage(browser);
  await late.goto(base + "/");
  await late.getByLabel("Username").fill("latecomer");
  await late.getByLabel("Password").fill("password-latecomer");
  await late.getByLabel("Invite code").fill(code);
  await late.getByRole("button", { name: "Create account" }).click();
  await late.locator("#auth-error", { hasText: "That invite code is not valid: it is unknown, used up or expired." }).waitFor();

  // Accessibility and contrast, light and dark, desktop and phone; no sideways scrolling.
  for (const scheme of ["light", "dark"]) {
    await boss.emulateMedia({ colorScheme: scheme });
    // One refresh, drawn in this theme (asked for now rather than waited for).
    await boss.waitForFunction((dark) => matchMedia("(prefers-color-scheme: dark)").matches === dark, scheme === "dark");
    const polls = await boss.evaluate(() => state.polls);
    await boss.evaluate(() => poll());
    assert.ok(await boss.evaluate(() => state.polls) > polls, "refreshed");
    assert.deepEqual(await axe(boss), [], `${scheme}: axe`);
    assert.deepEqual(await contrastFailures(boss), [], `${scheme}: contrast`);
    if (scheme === "light") await boss.screenshot({ path: docs("screenshot-admin.png") });
  }
  await boss.setViewportSize(PHONE);
  await boss.waitForFunction(() => innerWidth === 375);
  await boss.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))); // laid out, charts redrawn
  assert.deepEqual(await axe(boss), [], "phone: axe");
  assert.deepEqual(await contrastFailures(boss), [], "phone: contrast");
  assert.ok(await boss.evaluate(() => document.body.scrollWidth <= innerWidth), "no sideways scrolling at 375 px");
  await boss.screenshot({ path: join(shots, "admin-phone.png"), fullPage: true });

  assert.ok(!boss.sawDialog, "no confirm() or prompt()");
  assert.deepEqual([...boss.errors, ...newbie.errors, ...late.errors], []);
  nora.close();
  for (const p of [boss, newbie, late]) await p.context().close();
});
