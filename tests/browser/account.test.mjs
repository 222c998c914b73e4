// Issue 18 in the browser: the sign-in screen follows GET /registration (open and closed
// here; invite in admin.test.mjs), a reset code sets a new password and signs in, and the
// account panel changes the password (ending the other sessions), lists the sessions and
// ends one, and signs out everywhere. The panel closes with Esc, its button and a tap
// outside on a phone, and passes axe-core and the contrast check in both themes.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { startServer, stopServer, launch, newPage, signUp, signIn, enter, waitOnline, adminCli, login, shots, axe, contrastFailures, PHONE } from "./helpers.mjs";

let server, base, browser;

before(async () => {
  server = await startServer(0, [], "account.db");
  base = server.base;
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await stopServer(server?.p);
});

const onSignIn = (page) => page.waitForSelector("#auth:not([hidden])");
const authError = (page) => page.locator("#auth-error");

async function openAccount(page) {
  await page.getByRole("button", { name: "Account", exact: true }).click();
  await page.getByRole("dialog", { name: "Account" }).waitFor();
}

test("open registration: sign in and create account, no invite field; closed: no sign-up, and it says who makes accounts", async () => {
  const page = await newPage(browser);
  await page.goto(base + "/");
  await page.waitForSelector("#auth[data-registration=open]");
  assert.ok(await page.getByRole("button", { name: "Create account" }).isVisible());
  assert.ok(await page.getByRole("button", { name: "Sign in" }).isVisible());
  assert.equal(await page.getByRole("textbox", { name: /Invite code/ }).count(), 0);
  assert.equal(await page.getByText("made by an admin").isVisible(), false);
  await page.context().close();

  const closed = await startServer(0, ["--registration", "closed"], "closed.db");
  try {
    await adminCli(["add-user", "cleo"], "closed.db", "password-cleo");
    // The running server learns of accounts added outside it within about a second.
    for (let i = 0; i < 100; i++) {
      const r = await fetch(closed.base + "/login", {
        method: "POST", body: JSON.stringify({ username: "cleo", password: "password-cleo" }),
      });
      if (r.status === 200) break;
      await new Promise((res) => setTimeout(res, 100));
    }
    const p = await newPage(browser);
    await p.goto(closed.base + "/");
    await p.waitForSelector("#auth[data-registration=closed]");
    assert.equal(await p.getByRole("button", { name: "Create account" }).count(), 0);
    assert.ok(await p.getByText("New accounts on this server are made by an admin").isVisible());
    await p.getByLabel("Username").fill("cleo");
    await p.getByLabel("Password").fill("password-cleo");
    await p.getByRole("button", { name: "Sign in" }).click();
    await waitOnline(p);
    assert.deepEqual(p.errors, []);
    await p.context().close();
  } finally {
    await stopServer(closed.p);
  }
});

test("a reset code from the admin command sets a new password and signs in; a wrong code is refused readably", async () => {
  const page = await enter(browser, base, "rita");
  await page.getByRole("button", { name: "Log out" }).click();
  await onSignIn(page);
  const code = await adminCli(["reset-password", "rita"], "account.db");
  assert.match(code, /^[0-9a-f]{16,}$/);

  await page.getByRole("button", { name: "Forgot password? Have a reset code" }).click();
  await page.getByLabel("Username").fill("rita");
  await page.getByLabel("Reset code").fill("0".repeat(code.length));
  await page.getByLabel("New password").fill("brand-new-rita");
  await page.getByRole("button", { name: "Save new password" }).click();
  await authError(page).filter({ hasText: "That reset code is not valid" }).waitFor();

  await page.getByLabel("Reset code").fill(code);
  await page.getByLabel("New password").fill("brand-new-rita");
  await page.getByRole("button", { name: "Save new password" }).click();
  await waitOnline(page);
  assert.equal(await login(base, "rita"), null, "the old password no longer works");
  assert.ok(await login(base, "rita", "brand-new-rita"));
  assert.deepEqual(page.errors, []);
  await page.context().close();
});

test("changing the password ends the other browser's session; it lands on the sign-in screen saying so", async () => {
  const a = await enter(browser, base, "pat");
  const b = await enter(browser, base, "pat", { existing: true });
  await openAccount(a);
  await a.getByLabel("Current password").fill("password-pat");
  await a.getByLabel("New password", { exact: true }).fill("another-pat");
  await a.getByLabel("Confirm new password").fill("another-pat!");
  await a.getByRole("button", { name: "Change password" }).click();
  await a.getByRole("status").filter({ hasText: "The two new passwords differ." }).waitFor();
  await a.getByLabel("Current password").fill("wrong-password");
  await a.getByLabel("Confirm new password").fill("another-pat");
  await a.getByRole("button", { name: "Change password" }).click();
  await a.getByRole("status").filter({ hasText: "The current password is wrong." }).waitFor();
  await a.getByLabel("Current password").fill("password-pat");
  await a.getByRole("button", { name: "Change password" }).click();
  await a.getByRole("status").filter({ hasText: "Your other sessions were signed out" }).waitFor();

  await onSignIn(b);
  await authError(b).filter({ hasText: "Your session ended" }).waitFor();
  assert.equal(await b.getByLabel("Username").inputValue(), "pat");
  // This one stays signed in, on one session now.
  await a.locator("#sessions-list li").first().waitFor();
  assert.equal(await a.locator("#sessions-list li").count(), 1);
  assert.equal(await a.evaluate(() => document.documentElement.dataset.conn), "online");
  assert.ok(await login(base, "pat", "another-pat"));
  assert.deepEqual([...a.errors, ...b.errors], []);
  await a.context().close();
  await b.context().close();
});

test("the sessions list shows both devices and ending the other signs it out; Esc closes the panel; axe and contrast pass", async () => {
  // Made and signed in through the form (the sessions then name this browser); elsewhere
  // the accounts come over HTTP, as the form is not what those tests are about.
  const a = await signUp(browser, base, "sam", { axe: true });
  const b = await signIn(browser, base, "sam");
  await openAccount(a);
  const rows = a.locator("#sessions-list li");
  await a.waitForFunction(() => document.querySelectorAll("#sessions-list li").length === 2);
  assert.equal(await rows.filter({ hasText: "This device" }).count(), 1);
  assert.match(await rows.first().textContent(), /Chrome on Linux.*127\.0\.0\.1.*signed in .*last used/s);
  assert.deepEqual(await axe(a), [], "account panel: axe");
  assert.deepEqual(await contrastFailures(a, "#account"), [], "account panel: contrast, light");
  await a.getByRole("button", { name: "Dark mode" }).evaluate((btn) => btn.click()); // behind the modal
  assert.deepEqual(await contrastFailures(a, "#account"), [], "account panel: contrast, dark");
  await a.screenshot({ path: join(shots, "account.png") });

  const other = rows.filter({ hasNotText: "This device" });
  await other.getByRole("button", { name: /^End session:/ }).click();
  await other.getByText("End this session?").waitFor();
  await other.getByRole("button", { name: "Cancel" }).click();
  assert.equal(await a.evaluate(() => document.activeElement.textContent), "End");
  await other.getByRole("button", { name: /^End session:/ }).click();
  await other.getByRole("button", { name: /^End session:/ }).click(); // the confirming one, focused
  await onSignIn(b);
  await authError(b).filter({ hasText: "Your session ended" }).waitFor();
  await a.waitForFunction(() => document.querySelectorAll("#sessions-list li").length === 1);

  await a.keyboard.press("Escape");
  await a.waitForFunction(() => !document.querySelector("#account").open);
  assert.equal(await a.evaluate(() => document.activeElement.id), "account-btn");
  assert.equal(await a.locator("#pw-old").count(), 0, "no password field left in the page");
  assert.ok(!a.sawDialog, "no confirm()");
  assert.deepEqual([...a.errors, ...b.errors], []);
  await a.context().close();
  await b.context().close();
});

test("on a phone the panel opens from the room drawer and closes with a tap outside; sign out everywhere ends both sessions", async () => {
  const a = await enter(browser, base, "eve", { viewport: PHONE, hasTouch: true, isMobile: true });
  const b = await enter(browser, base, "eve", { existing: true });
  await a.getByRole("button", { name: /Show rooms/ }).click();
  await openAccount(a);
  await a.mouse.click(3, 3); // the backdrop
  await a.waitForFunction(() => !document.querySelector("#account").open);
  await openAccount(a);
  await a.getByRole("button", { name: "Close account" }).click();
  await a.waitForFunction(() => !document.querySelector("#account").open);

  await openAccount(a);
  await a.getByRole("button", { name: "Sign out everywhere", exact: true }).click();
  await a.getByText("Sign out on every device, this one too?").waitFor();
  await a.getByRole("button", { name: "Sign out everywhere now" }).click();
  await onSignIn(a);
  await authError(a).filter({ hasText: "You signed out on every device." }).waitFor();
  await onSignIn(b);
  await authError(b).filter({ hasText: "Your session ended" }).waitFor();
  assert.equal(await a.evaluate(() => localStorage.getItem("chatterbox.token")), null);
  assert.deepEqual([...a.errors, ...b.errors], []);
  await a.context().close();
  await b.context().close();
});
