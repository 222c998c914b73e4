// Issue 14, items 6 and 8: the room browser (public rooms with member counts, search by
// name, join), "create #name?" instead of creating on a typo, the invite control with name
// completion right after creating a private room, invitations accepted or declined, leaving;
// and on a phone every drawer and overlay closes with a visible button and a tap outside.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { startServer, stopServer, launch, enter, settled, say, stored, shots, register, client, DESKTOP, PHONE } from "./helpers.mjs";

let server, base, browser, rosa, rosaToken;

before(async () => {
  server = await startServer(0, [], "rooms.db");
  base = server.base;
  browser = await launch();
  rosaToken = await register(base, "rosa");
  rosa = await client(base, rosaToken);
  for (const [room, priv] of [["rust", false], ["rustacean", false], ["python", false], ["hidden-rust", true]]) {
    await rosa.request({ type: "create_room", room, private: priv });
    await rosa.request({ type: "send", room, text: "welcome to " + room });
  }
});

after(async () => {
  rosa?.close();
  await browser?.close();
  await stopServer(server?.p);
});

const rooms = async (q) => (await fetch(`${base}/rooms?q=${q}`, { headers: { Authorization: "Bearer " + rosaToken } })).json();

test("browse, search and join public rooms; a typo asks before creating; invite with completion; accept, decline, leave", async () => {
  const [ted, uma] = await Promise.all([enter(browser, base, "ted"), enter(browser, base, "uma")]);

  // The browser lists public rooms with their member counts; private ones never.
  await ted.getByRole("button", { name: "Browse or create rooms" }).click();
  const dialog = ted.getByRole("dialog", { name: "Rooms" });
  await dialog.getByRole("button", { name: "Join # python" }).waitFor();
  const listed = await dialog.locator(".room-row strong").allTextContents();
  assert.deepEqual(listed, ["# general", "# python", "# rust", "# rustacean"]);
  assert.match(await dialog.locator(".room-row", { hasText: "# rust" }).first().textContent(), /1 member · \d+ online/);
  // Search by name.
  await dialog.getByLabel("Find a room, or name a new one").fill("rust");
  await ted.waitForFunction(() => document.querySelectorAll("#rooms-results li").length === 2);
  assert.deepEqual(await dialog.locator(".room-row strong").allTextContents(), ["# rust", "# rustacean"]);
  await ted.screenshot({ path: join(shots, "room-browser.png") });
  await dialog.getByRole("button", { name: "Join # rust", exact: true }).click();
  await ted.waitForSelector("#room-title:text('# rust')");
  await stored(ted, "welcome to rust").waitFor();
  await ted.locator("#room-list").getByRole("button", { name: "# rust" }).waitFor();

  // A typo is not a new room: it asks first, and nothing is created meanwhile.
  await ted.getByRole("button", { name: "Browse or create rooms" }).click();
  await dialog.getByLabel("Find a room, or name a new one").fill("rsut");
  await dialog.getByLabel("Find a room, or name a new one").press("Enter");
  await dialog.getByText("There is no room #rsut. Create #rsut?").waitFor();
  assert.equal(await ted.evaluate(() => document.activeElement.textContent), "Create #rsut");
  assert.deepEqual(await rooms("rsut"), []);
  await dialog.getByRole("button", { name: "Close room browser" }).click();
  assert.deepEqual(await rooms("rsut"), []);

  // A private room: the invite control is there at once, completing known names.
  await ted.getByRole("button", { name: "Browse or create rooms" }).click();
  await dialog.getByLabel("Find a room, or name a new one").fill("plans");
  await dialog.getByLabel("Private (members join by invitation)").check();
  await dialog.getByRole("button", { name: "Create #plans" }).click();
  await ted.waitForSelector("#room-title:text('# plans')");
  const invite = ted.getByRole("combobox", { name: "Invite to # plans" });
  await invite.waitFor();
  assert.ok(await invite.evaluate((e) => e === document.activeElement), "focused");
  await invite.pressSequentially("u");
  const options = ted.getByRole("listbox", { name: "Known users" });
  await options.getByRole("option", { name: "uma" }).waitFor();
  await invite.press("ArrowDown");
  await invite.press("Enter");
  assert.equal(await invite.inputValue(), "uma");
  await ted.screenshot({ path: join(shots, "invite.png") });
  await invite.press("Enter");
  await ted.getByText("Invited uma.").first().waitFor();
  // An unknown name says so, and stays said.
  await invite.fill("nobody-here");
  await invite.press("Enter");
  await ted.getByRole("alert").getByText(/Could not invite nobody-here/).waitFor();

  // uma sees the invitation, not the room; accepting opens it.
  const offer = uma.locator("#invite-list li", { hasText: "plans" });
  await offer.waitFor();
  assert.equal((await offer.locator(".invite-text").textContent()).trim(), "ted invited you to # plans");
  assert.equal(await uma.locator("#room-list").getByRole("button", { name: /plans/ }).count(), 0);
  await offer.getByRole("button", { name: "Accept the invitation to plans from ted" }).click();
  await uma.waitForSelector("#room-title:text('# plans')");
  await offer.waitFor({ state: "detached" });
  await say(ted, "welcome, uma");
  await stored(uma, "welcome, uma").waitFor();

  // A second invitation, declined: gone here and on the server.
  await ted.getByRole("button", { name: "Done" }).click();
  await ted.getByRole("button", { name: "Browse or create rooms" }).click();
  await dialog.getByLabel("Find a room, or name a new one").fill("plans-b");
  await dialog.getByLabel("Private (members join by invitation)").check();
  await dialog.getByRole("button", { name: "Create #plans-b" }).click();
  const inviteB = ted.getByRole("combobox", { name: "Invite to # plans-b" });
  await inviteB.fill("uma");
  await inviteB.press("Enter");
  const second = uma.locator("#invite-list li", { hasText: "plans-b" });
  await second.getByRole("button", { name: /Decline/ }).click();
  await second.waitFor({ state: "detached" });
  const pending = await uma.evaluate(async () => (await fetch("/invitations", { headers: { Authorization: "Bearer " + localStorage.getItem("chatterbox.token") } })).json());
  assert.deepEqual(pending, []);

  // Leaving, with an inline confirmation.
  await uma.getByRole("button", { name: "Leave # plans" }).click();
  await uma.getByText("Leave # plans? It is private: you will need a new invitation to come back.").waitFor();
  await uma.locator("#leave-bar").getByRole("button", { name: "Leave # plans" }).click();
  await uma.waitForSelector("#room-title:text('# general')");
  await uma.getByText("You left # plans.").waitFor();
  assert.equal(await uma.locator("#room-list").getByRole("button", { name: /plans/ }).count(), 0);
  assert.ok(!ted.sawDialog && !uma.sawDialog, "no prompt() or confirm()");
  assert.deepEqual([...ted.errors, ...uma.errors], []);
  await ted.context().close();
  await uma.context().close();
});

// Whether the element at (x, y) is inside `selector` (what a tap there would hit).
const hit = (page, selector, x, y) => page.evaluate(([s, x, y]) => !!document.elementFromPoint(x, y)?.closest(s), [selector, x, y]);

test("on a phone every drawer and overlay closes with its button and with a tap outside; search results lie above the drawer", async () => {
  const page = await enter(browser, base, "phoebe", { viewport: PHONE, hasTouch: true, isMobile: true });
  await say(page, "findable phrase for phoebe");
  await stored(page, "findable phrase for phoebe").waitFor();
  const sidebar = page.getByRole("complementary", { name: "Rooms" });
  const members = page.getByRole("complementary", { name: /Members/ });
  const menu = page.getByRole("button", { name: /Show rooms/ });

  // Rooms drawer: the close button, then a tap outside.
  await menu.click();
  await sidebar.getByRole("button", { name: "Close rooms" }).waitFor();
  await settled(page, "#sidebar");
  await page.screenshot({ path: join(shots, "phone-drawer.png") });
  await sidebar.getByRole("button", { name: "Close rooms" }).tap();
  await page.waitForFunction(() => !document.querySelector("#sidebar").classList.contains("open"));
  await menu.click();
  await settled(page, "#sidebar");
  assert.ok(!(await hit(page, "#sidebar", 360, 400)), "the right edge is outside the drawer");
  await page.touchscreen.tap(360, 400);
  await page.waitForFunction(() => !document.querySelector("#sidebar").classList.contains("open"));
  assert.ok(await hit(page, ".chat", 360, 400), "the chat is usable again");

  // Members drawer.
  await page.getByRole("button", { name: "Members" }).click();
  await members.getByRole("button", { name: "Close members" }).tap();
  await members.waitFor({ state: "hidden" });
  await page.getByRole("button", { name: "Members" }).click();
  await members.waitFor();
  await page.touchscreen.tap(20, 400);
  await members.waitFor({ state: "hidden" });

  // Search from the drawer: the results are above it, and close both ways.
  const results = page.getByRole("dialog", { name: "Search results" });
  const search = async () => {
    await menu.click();
    await page.getByRole("searchbox", { name: "Search messages" }).fill("findable");
    await page.getByRole("searchbox", { name: "Search messages" }).press("Enter");
    await results.getByRole("button", { name: /findable phrase/ }).waitFor();
  };
  await search();
  const box = await results.boundingBox();
  assert.ok(await hit(page, "#search-dialog", box.x + 20, box.y + 20), "results cover the drawer");
  assert.ok(await hit(page, "#search-dialog", box.x + box.width / 2, box.y + box.height / 2));
  await page.screenshot({ path: join(shots, "phone-search.png") });
  await results.getByRole("button", { name: "Close search results" }).tap();
  await results.waitFor({ state: "hidden" });
  await page.touchscreen.tap(360, 400); // and the drawer
  await search();
  await page.touchscreen.tap(187, 735); // the backdrop below the sheet
  await results.waitFor({ state: "hidden" });
  await page.touchscreen.tap(360, 400);
  // A result opens its message in the chat, with every overlay gone.
  await search();
  await results.getByRole("button", { name: /findable phrase/ }).tap();
  await results.waitFor({ state: "hidden" });
  await page.waitForFunction(() => !document.querySelector("#sidebar").classList.contains("open"));
  await page.locator(".msg.highlight", { hasText: "findable phrase" }).waitFor();

  // The room browser too.
  await menu.click();
  await page.getByRole("button", { name: "Browse or create rooms" }).tap();
  const browserDialog = page.getByRole("dialog", { name: "Rooms" });
  await browserDialog.getByRole("button", { name: "Join # rust", exact: true }).waitFor();
  await browserDialog.getByRole("button", { name: "Close room browser" }).tap();
  await browserDialog.waitFor({ state: "hidden" });
  assert.deepEqual(page.errors, []);
  await page.context().close();
});
