// Issue 18 items 4 and 5 in the browser: "Download my data" saves the export as
// chatterbox-export.json (fetched with the token, saved from a blob: URL under the real
// CSP) holding the user's messages; "Delete account" asks for the password and confirms
// inline (no confirm()), refuses a wrong password, and on success lands on the sign-in
// screen; another user then sees the account's messages as "deleted user" placeholders
// with no text and no actions.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { startServer, stopServer, launch, enter, say, stored, login, register } from "./helpers.mjs";

let server, base, browser;

before(async () => {
  server = await startServer(0, [], "account-data.db");
  base = server.base;
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await stopServer(server?.p);
});

async function openAccount(page) {
  await page.getByRole("button", { name: "Account", exact: true }).click();
  await page.getByRole("dialog", { name: "Account" }).waitFor();
}

test("download my data saves chatterbox-export.json holding the user's messages", async () => {
  const page = await enter(browser, base, "dora");
  for (const t of ["first from dora", "second from dora"]) { await say(page, t); await stored(page, t).waitFor(); }
  await openAccount(page);
  const [download] = await Promise.all([
    page.waitForEvent("download"),
    page.getByRole("button", { name: "Download my data" }).click(),
  ]);
  assert.equal(download.suggestedFilename(), "chatterbox-export.json");
  const doc = JSON.parse(readFileSync(await download.path(), "utf8"));
  assert.equal(doc.user.username, "dora");
  assert.deepEqual(doc.messages.map((m) => m.text), ["first from dora", "second from dora"]);
  assert.ok(doc.messages.every((m) => m.room === "general" && m.user === "dora"));
  await page.getByRole("status").filter({ hasText: "Saved chatterbox-export.json (2 messages)" }).waitFor();
  assert.deepEqual(page.errors, [], "no console error (a CSP refusal would be one)");
  await page.context().close();
});

test("delete account: password, inline confirmation, wrong password refused; then gone, and shown to others as deleted user", async () => {
  await register(base, "finn");
  const page = await enter(browser, base, "gina");
  await say(page, "gina says bye soon");
  await stored(page, "gina says bye soon").waitFor();
  await openAccount(page);
  const del = () => page.getByRole("button", { name: "Delete account", exact: true });
  const status = page.locator("#delete-status");

  await del().click();
  await status.filter({ hasText: "Enter your password" }).waitFor();

  await page.getByLabel("Your password, to delete the account").fill("not-the-password");
  await del().click();
  await page.getByText("Delete the account gina for good? This cannot be undone.").waitFor();
  await page.getByRole("button", { name: "Cancel" }).click();
  assert.equal(await page.getByText("for good?").count(), 0);
  assert.equal(await page.evaluate(() => document.activeElement.id), "delete-btn");
  await del().click();
  await page.getByRole("button", { name: "Delete my account" }).click();
  await status.filter({ hasText: "The password is wrong; the account was not deleted." }).waitFor();
  assert.ok(await login(base, "gina"), "still there");
  assert.equal(await page.evaluate(() => document.documentElement.dataset.conn), "online");

  await page.getByLabel("Your password, to delete the account").fill("password-gina");
  await del().click();
  await page.getByRole("button", { name: "Delete my account" }).click();
  await page.waitForSelector("#auth:not([hidden])");
  await page.locator("#auth-error").filter({ hasText: "The account gina was deleted." }).waitFor();
  assert.equal(await page.getByLabel("Username").inputValue(), "");
  assert.equal(await page.evaluate(() => localStorage.getItem("chatterbox.token")), null);
  assert.equal(await login(base, "gina"), null, "a deleted account cannot sign in");
  assert.ok(!page.sawDialog, "no confirm()");
  assert.deepEqual(page.errors, []);
  await page.context().close();

  // Another user: the message is a placeholder, without text or actions.
  const finn = await enter(browser, base, "finn", { existing: true });
  const msg = finn.locator(".msg[id]", { hasText: "deleted user" });
  await msg.waitFor();
  assert.equal(await msg.locator(".bubble").textContent(), "message deleted");
  assert.equal(await msg.getByRole("button").count(), 0, "no Edit or Delete on a placeholder");
  assert.equal(await finn.getByText("gina says bye soon").count(), 0);
  assert.equal(await finn.getByText("gina", { exact: true }).count(), 0);
  assert.deepEqual(finn.errors, []);
  await finn.context().close();
});
