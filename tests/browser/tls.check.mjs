// The web UI over https in headless Chromium that trusts the test CA through an NSS
// database in a temporary HOME (no --ignore-certificate-errors): the page loads with a
// valid certificate and two people chat over wss.
// Usage (from tools/test.d/tls.sh, not browser.sh): TLS_BASE=https://127.0.0.1:PORT TLS_HOME=DIR node --test tls.check.mjs
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { chromium } from "playwright-core";

const base = process.env.TLS_BASE;
let browser;
after(async () => { if (browser) await browser.close(); });

async function signIn(name) {
  const ctx = await browser.newContext();
  const page = await ctx.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  const resp = await page.goto(base + "/");
  assert.equal(resp.status(), 200);
  const sec = await resp.securityDetails();
  assert.ok(sec && /TLS 1\.[23]/.test(sec.protocol), "served over TLS: " + (sec && sec.protocol));
  await page.getByLabel("Username").fill(name);
  await page.getByLabel("Password").fill("wonderland");
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("textbox", { name: "Message" }).waitFor();
  return { page, errors };
}

test("the UI over https with a trusted certificate, chatting over wss", async () => {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    env: { ...process.env, HOME: process.env.TLS_HOME },
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
      "--disable-component-update", "--disable-sync", "--no-first-run"],
  });
  const alice = await signIn("alice");
  const bob = await signIn("bob");
  const text = "over https " + Date.now();
  await alice.page.getByRole("textbox", { name: "Message" }).fill(text);
  await alice.page.keyboard.press("Enter");
  await bob.page.getByRole("region", { name: "Messages" }).getByText(text).waitFor({ timeout: 10000 })
    .catch(async () => { await bob.page.getByText(text).first().waitFor({ timeout: 5000 }); });
  assert.deepEqual(alice.errors, []);
  assert.deepEqual(bob.errors, []);
});
