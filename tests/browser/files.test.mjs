// File sharing in the web UI: a PNG attached through the attach button's file chooser
// and a PDF dropped on the conversation upload at once with a progress bar, wait as
// chips and go with the message; the other side sees the thumbnail (the image really
// loads), opens it full size and closes it with Escape, and downloads the PDF's very
// bytes; an image pasted into the composer is attached and sent without words; an upload
// in flight is cancelled and leaves nothing; a file over 10 MiB and the server's
// refusals are said in words; a deleted message loses its files; axe and contrast with
// files shown, light and dark; a phone.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { deflateSync } from "node:zlib";
import { startServer, stopServer, launch, enter, say, stored, axe, contrastFailures, shots, dir, PHONE } from "./helpers.mjs";

let server, base, browser;

before(async () => {
  server = await startServer(0, [], "files.db");
  base = server.base;
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await stopServer(server?.p);
});

// A real PNG, w×h, RGB: a gradient (CRC-32 by hand: node 20 has no zlib.crc32).
function crc32(buf) {
  let crc = 0xffffffff;
  for (const b of buf) {
    let c = (crc ^ b) & 0xff;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    crc = (crc >>> 8) ^ c;
  }
  return (crc ^ 0xffffffff) >>> 0;
}
function png(w, h, tint = 0) {
  const chunk = (type, data) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const body = Buffer.concat([Buffer.from(type, "latin1"), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(body));
    return Buffer.concat([len, body, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // RGB
  const raw = Buffer.alloc((w * 3 + 1) * h);
  for (let y = 0; y < h; y++) {
    const row = y * (w * 3 + 1);
    for (let x = 0; x < w; x++) {
      raw[row + 1 + x * 3] = (x * 255) / w;
      raw[row + 2 + x * 3] = (y * 255) / h;
      raw[row + 3 + x * 3] = tint;
    }
  }
  return Buffer.concat([Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]), chunk("IHDR", ihdr),
    chunk("IDAT", deflateSync(raw)), chunk("IEND", Buffer.alloc(0))]);
}
// Something PDF-shaped of about 40 KB (its bytes are what matters).
const pdf = Buffer.concat([Buffer.from("%PDF-1.4\n% chatterbox test\n"),
  Buffer.from(Array.from({ length: 40000 }, (_, i) => (i * 7919) % 251)), Buffer.from("\n%%EOF\n")]);

const composer = (page) => page.getByRole("textbox", { name: "Message", exact: true });
const upload = (page, name) => page.locator("#uploads li", { hasText: name });
// Files dropped (as the browser's drag and drop would) or pasted, from bytes.
async function dataTransfer(page, files) {
  return page.evaluateHandle((files) => {
    const dt = new DataTransfer();
    for (const f of files) dt.items.add(new File([Uint8Array.from(atob(f.b64), (c) => c.charCodeAt(0))], f.name, { type: f.type }));
    return dt;
  }, files.map((f) => ({ name: f.name, type: f.type, b64: f.bytes.toString("base64") })));
}
// Every progress bar that ever showed in the uploads list (uploads of a few KB are over
// in a blink: a MutationObserver sees the bar anyway).
async function watchProgress(page) {
  await page.evaluate(() => {
    window.sawProgress = [];
    new MutationObserver(() => {
      for (const p of document.querySelectorAll("#uploads progress")) {
        const l = p.getAttribute("aria-label");
        if (!window.sawProgress.includes(l)) window.sawProgress.push(l);
      }
    }).observe(document.getElementById("uploads"), { childList: true, subtree: true });
  });
}
const imageLoaded = (loc) => loc.evaluate((img) => new Promise((ok) => {
  const done = () => ok({ w: img.naturalWidth, h: img.naturalHeight });
  if (img.complete && img.naturalWidth) done(); else { img.addEventListener("load", done); img.addEventListener("error", done); }
}));
// File chooser interception is switched on by the first listener, without waiting for
// the browser to confirm it: a listener from before the page loads, so that no click races it.
const interceptChooser = (page) => page.on("filechooser", () => {});
const focusedLabel = (page) => page.evaluate(() => document.activeElement.getAttribute("aria-label"));

test("attach by button and by drop, progress, send; the other side sees, views and downloads", async () => {
  const [alice, bob] = await Promise.all([enter(browser, base, "alice", { axe: true, setup: interceptChooser }),
    enter(browser, base, "bob", { axe: true })]);
  await watchProgress(alice);
  const posts = [];
  alice.on("request", (r) => { if (r.method() === "POST" && new URL(r.url()).pathname === "/files") posts.push(r.headers()["x-filename"]); });

  // The attach button (a real button, reached by Tab from the emoji button) opens the
  // file chooser.
  await alice.getByRole("button", { name: "Insert emoji" }).focus();
  await alice.keyboard.press("Tab");
  assert.equal(await focusedLabel(alice), "Attach files");
  const [chooser] = await Promise.all([alice.waitForEvent("filechooser"), alice.keyboard.press("Enter")]);
  assert.ok(chooser.isMultiple(), "several files at once");
  const sunset = png(64, 48);
  await chooser.setFiles({ name: "sunset.png", mimeType: "image/png", buffer: sunset });
  await upload(alice, "sunset.png").getByRole("button", { name: "Remove sunset.png" }).waitFor();

  // A PDF dropped on the conversation: the drop target shows while dragging.
  const dt = await dataTransfer(alice, [{ name: "Q3 report.pdf", type: "application/pdf", bytes: pdf }]);
  await alice.dispatchEvent("#messages", "dragenter", { dataTransfer: dt });
  await alice.dispatchEvent("#messages", "dragover", { dataTransfer: dt });
  assert.ok(await alice.locator("#drop-zone").isVisible(), "drop target shown");
  assert.equal(await alice.locator("#drop-zone").innerText(), "Drop files to attach them");
  await alice.screenshot({ path: join(shots, "files-drop.png") });
  await alice.dispatchEvent("#messages", "drop", { dataTransfer: dt });
  assert.ok(await alice.locator("#drop-zone").isHidden(), "drop target gone after the drop");
  await upload(alice, "Q3 report.pdf").getByRole("button", { name: "Remove Q3 report.pdf" }).waitFor();
  assert.deepEqual(await alice.evaluate(() => window.sawProgress), ["Uploading sunset.png", "Uploading Q3 report.pdf"]);
  assert.deepEqual(posts, ["sunset.png", "Q3%20report.pdf"]);
  assert.equal(await alice.locator("#uploads progress").count(), 0, "both finished");
  assert.equal(await alice.locator("#uploads-note").innerText(), "2 files will go with your next message.");
  assert.equal(await alice.locator("#send-btn").isEnabled(), true);
  // The uploader's own chip shows the image from the server.
  assert.ok((await imageLoaded(upload(alice, "sunset.png").locator("img"))).w > 0);

  await say(alice, "holiday pics and the report");
  await upload(alice, "sunset.png").waitFor({ state: "detached" });
  assert.ok(await alice.locator("#uploads-box").isHidden(), "the chips went with the message");
  const mine = stored(alice, "holiday pics and the report");
  await mine.locator("img[alt='sunset.png']").waitFor();

  // bob: the thumbnail (loaded, lazily, sized by CSS) and the PDF's chip.
  const msg = stored(bob, "holiday pics and the report");
  await msg.waitFor();
  const thumb = msg.getByRole("button", { name: "View sunset.png full size" });
  const img = thumb.locator("img");
  assert.equal(await img.getAttribute("alt"), "sunset.png");
  assert.equal(await img.getAttribute("loading"), "lazy");
  assert.deepEqual(await imageLoaded(img), { w: 64, h: 48 });
  const box = await thumb.boundingBox();
  assert.ok(box.height <= 160 && box.width <= 260, `thumbnail within bounds: ${JSON.stringify(box)}`);
  const link = msg.getByRole("link", { name: /Q3 report\.pdf/ });
  assert.equal(await link.locator(".file-name").innerText(), "Q3 report.pdf");
  assert.equal(await link.locator(".file-size").innerText(), "39 KB");
  assert.equal(await link.getAttribute("download"), "Q3 report.pdf");
  assert.match(await link.getAttribute("href"), /^\/files\/[0-9a-f]+\?token=/);

  // Full size in a dialog; Escape closes it and the focus is back on the thumbnail.
  await thumb.click();
  const viewer = bob.getByRole("dialog", { name: "sunset.png" });
  await viewer.waitFor();
  assert.deepEqual(await imageLoaded(viewer.locator("img")), { w: 64, h: 48 });
  assert.match(await viewer.locator(".muted").innerText(), /^\d+(\.\d)? (bytes|KB)$/);
  await bob.screenshot({ path: join(shots, "files-viewer.png") });
  assert.deepEqual(await axe(bob), [], "axe with the viewer open");
  await bob.keyboard.press("Escape");
  await viewer.waitFor({ state: "hidden" });
  assert.equal(await focusedLabel(bob), "View sunset.png full size");
  // And with the keyboard: Enter opens it, its close button closes it.
  await bob.keyboard.press("Enter");
  await viewer.waitFor();
  await viewer.getByRole("button", { name: "Close image" }).click();
  await viewer.waitFor({ state: "hidden" });

  // The link downloads the very bytes that were uploaded.
  const [download] = await Promise.all([bob.waitForEvent("download"), link.click()]);
  assert.equal(download.suggestedFilename(), "Q3 report.pdf");
  assert.ok(readFileSync(await download.path()).equals(pdf), "the same bytes");

  // A pasted image is attached; sent without words, it shows without an empty bubble.
  const clip = await dataTransfer(alice, [{ name: "image.png", type: "image/png", bytes: png(32, 32, 200) }]);
  await composer(alice).focus();
  await alice.evaluate((dt) => document.getElementById("text").dispatchEvent(new ClipboardEvent("paste", { clipboardData: dt, bubbles: true, cancelable: true })), clip);
  await upload(alice, "image.png").getByRole("button", { name: "Remove image.png" }).waitFor();
  assert.equal(await composer(alice).inputValue(), "", "the image is not pasted as text");
  await composer(alice).press("Enter");
  await upload(alice, "image.png").waitFor({ state: "detached" });
  const only = bob.locator(".msg[id]").last();
  await only.getByRole("button", { name: "View image.png full size" }).waitFor();
  assert.equal(await only.locator(".bubble").count(), 0, "no empty bubble");
  assert.deepEqual(await imageLoaded(only.locator("img")), { w: 32, h: 32 });
  const id = await only.getAttribute("id");
  await alice.locator("#" + id).getByRole("button", { name: "View image.png full size" }).waitFor();

  // Light and dark, with files in messages and waiting in the composer (one finished,
  // one refused): no axe or contrast failure.
  await chooserFiles(alice, [{ name: "notes.txt", mimeType: "text/plain", buffer: Buffer.from("remember the milk\n") }]);
  await upload(alice, "notes.txt").getByRole("button", { name: "Remove notes.txt" }).waitFor();
  for (const theme of ["light", "dark"]) {
    if (theme === "dark") await alice.getByRole("button", { name: "Dark mode" }).click();
    await alice.locator("#messages").evaluate((b) => { b.scrollTop = b.scrollHeight; });
    await alice.screenshot({ path: join(shots, `files-${theme}.png`) });
    assert.deepEqual(await contrastFailures(alice), [], `${theme}: contrast`);
    assert.deepEqual(await axe(alice), [], `${theme}: axe`);
  }
  await alice.getByRole("button", { name: "Dark mode" }).click();
  await upload(alice, "notes.txt").getByRole("button", { name: "Remove notes.txt" }).click();
  await upload(alice, "notes.txt").waitFor({ state: "detached" });
  assert.equal(await focusedLabel(alice), null, "the focus went back to the text box");
  assert.equal(await alice.evaluate(() => document.activeElement.id), "text");

  // A deleted message shows no files (for either side).
  await alice.locator("#" + id).getByRole("button", { name: "Delete message" }).click();
  await alice.locator("#" + id).getByRole("button", { name: "Confirm delete" }).click();
  await bob.locator("#" + id).locator(".bubble", { hasText: "message deleted" }).waitFor();
  assert.equal(await bob.locator("#" + id).locator(".files, img").count(), 0);
  assert.equal(await alice.locator("#" + id).locator(".files, img").count(), 0);

  assert.deepEqual([...alice.errors, ...bob.errors], []);
  await alice.context().close();
  await bob.context().close();
});

// A big file is chosen from the disk, by its path: handed over as bytes it would cross the
// protocol base64-encoded (seconds of CPU for 12 MB on a busy machine).
function onDisk(name, bytes) {
  mkdirSync(join(dir, "files"), { recursive: true });
  const path = join(dir, "files", name);
  writeFileSync(path, bytes);
  return path;
}

async function chooserFiles(page, files) {
  const [chooser] = await Promise.all([page.waitForEvent("filechooser"), page.getByRole("button", { name: "Attach files" }).click()]);
  await chooser.setFiles(files);
}

test("cancel an upload in flight; too big, refused, and Send waits for uploads", async () => {
  const carol = await enter(browser, base, "carol", { setup: interceptChooser });
  const posts = [];
  carol.on("request", (r) => { if (r.method() === "POST" && new URL(r.url()).pathname === "/files") posts.push(r.headers()["x-filename"]); });

  // Over 10 MiB: refused on the spot, in words, without a byte sent.
  await chooserFiles(carol, [onDisk("huge.bin", Buffer.alloc(12 << 20, 1))]);
  const huge = upload(carol, "huge.bin");
  await huge.locator(".up-error").filter({ hasText: "Not uploaded: Too big (12 MB): a file can be at most 10 MB." }).waitFor();
  assert.equal(await huge.getByRole("button", { name: /Retry/ }).count(), 0, "no retry for a file too big");
  assert.deepEqual(posts, []);
  await huge.getByRole("button", { name: "Dismiss huge.bin" }).click();
  await huge.waitFor({ state: "detached" });
  assert.ok(await carol.locator("#uploads-box").isHidden());

  // A slow link: 5 MB at 256 KB/s is in flight for a while. Its bar moves, Send is
  // disabled (Enter says why), and its × cancels it: no chip, nothing sent with the message.
  const cdp = await carol.context().newCDPSession(carol);
  await cdp.send("Network.enable");
  await cdp.send("Network.emulateNetworkConditions", { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: 256 * 1024 });
  await chooserFiles(carol, [onDisk("video.mp4", Buffer.alloc(5 << 20, 7))]);
  const slow = upload(carol, "video.mp4");
  const bar = slow.getByRole("progressbar", { name: "Uploading video.mp4" });
  await bar.waitFor();
  await carol.waitForFunction(() => { const p = document.querySelector("#uploads progress"); return p && p.value > 0; });
  const [value, max] = await bar.evaluate((p) => [p.value, p.max]);
  assert.ok(value > 0 && value < max, `partly sent: ${value} of ${max}`);
  assert.match(await slow.locator(".up-pct").innerText(), /^\d+%$/);
  await carol.screenshot({ path: join(shots, "files-uploading.png") });
  assert.equal(await carol.locator("#send-btn").isDisabled(), true, "Send waits for the upload");
  assert.equal(await carol.locator("#uploads-note").innerText(), "Uploading 1 file… Send waits until it finishes.");
  await composer(carol).fill("wait for it");
  await composer(carol).press("Enter");
  await carol.locator("#status", { hasText: "Send waits until the uploads finish (or cancel them)." }).waitFor();
  assert.equal(await composer(carol).inputValue(), "wait for it", "nothing sent");
  await slow.getByRole("button", { name: "Cancel upload of video.mp4" }).click();
  await slow.waitFor({ state: "detached" });
  assert.ok(await carol.locator("#uploads-box").isHidden(), "no chip left");
  assert.equal(await carol.locator("#send-btn").isEnabled(), true);
  assert.deepEqual(posts, ["video.mp4"]);
  await cdp.send("Network.emulateNetworkConditions", { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
  await composer(carol).press("Enter");
  const sent = stored(carol, "wait for it");
  await sent.waitFor();
  assert.equal(await sent.locator(".files").count(), 0, "the cancelled file did not go");

  // The server's refusals, in words (answered here in its words: 429 and 507).
  const answers = [
    [429, { error: "rate_limited", message: "too many uploads", retry_after_ms: 2500 }, "Not uploaded: Too many uploads in a short time: try again in 3 s.", true],
    [507, { error: "quota_exceeded", message: "over" }, "Not uploaded: Your files take all the room you have: delete messages with files to make room.", false],
    [507, { error: "storage_full", message: "full" }, "Not uploaded: The server's file storage is full.", false],
  ];
  for (const [status, body, words, retry] of answers) {
    await carol.route("**/files", (route) => route.fulfill({ status, contentType: "application/json", body: JSON.stringify(body) }));
    await chooserFiles(carol, [{ name: "a.txt", mimeType: "text/plain", buffer: Buffer.from("a") }]);
    const item = upload(carol, "a.txt");
    await item.locator(".up-error").filter({ hasText: words }).waitFor();
    assert.equal(await item.getByRole("button", { name: "Retry uploading a.txt" }).count(), retry ? 1 : 0);
    await carol.unroute("**/files");
    if (retry) {
      // Retry, now that the server takes it: the chip is ready to send.
      await item.getByRole("button", { name: "Retry uploading a.txt" }).click();
      await item.getByRole("button", { name: "Remove a.txt" }).waitFor();
    }
    await item.getByRole("button", { name: /^(Dismiss|Remove) a.txt$/ }).click();
    await item.waitFor({ state: "detached" });
  }
  assert.deepEqual(carol.errors, []);
  await carol.context().close();
});

test("a phone: the attach button, thumbnails and chips fit", async () => {
  const dana = await enter(browser, base, "dana", { viewport: PHONE, hasTouch: true, isMobile: true, setup: interceptChooser });
  await chooserFiles(dana, [
    { name: "wide.png", mimeType: "image/png", buffer: png(900, 300) },
    { name: "a very long file name for a phone screen, really quite long.pdf", mimeType: "application/pdf", buffer: pdf },
  ]);
  await upload(dana, "wide.png").getByRole("button", { name: "Remove wide.png" }).waitFor();
  await upload(dana, "really quite long").getByRole("button", { name: /^Remove / }).waitFor();
  assert.ok(await dana.evaluate(() => document.body.scrollWidth <= innerWidth), "no sideways scroll with chips waiting");
  await say(dana, "from my phone");
  const m = stored(dana, "from my phone");
  await imageLoaded(m.locator("img"));
  const [list, msg] = [await dana.locator("#messages").boundingBox(), await m.boundingBox()];
  assert.ok(msg.x >= list.x && msg.x + msg.width <= list.x + list.width + 1, "the message fits the list");
  for (const b of [await m.locator(".thumb").boundingBox(), await m.locator("a.file").boundingBox()]) {
    assert.ok(b.x >= list.x && b.x + b.width <= list.x + list.width + 1, `fits: ${JSON.stringify(b)}`);
  }
  assert.ok(await dana.evaluate(() => document.body.scrollWidth <= innerWidth), "no sideways page scroll");
  await dana.screenshot({ path: join(shots, "files-phone.png") });
  assert.deepEqual(dana.errors, []);
  await dana.context().close();
});
