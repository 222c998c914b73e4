// Shared by the browser tests: the release server on port 0 with a temp database,
// Debian's headless Chromium through playwright-core (one per file, or one for all under
// all.mjs), sign-up through the page or (enter) over HTTP, seeding over the HTTP and
// WebSocket API, a WCAG contrast computation and an axe-core pass.
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, mkdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";
import assert from "node:assert/strict";
import { chromium } from "playwright-core";

export const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const dir = mkdtempSync(join(tmpdir(), "chatterbox-ui-"));
export const shots = join(dir, "screenshots");
mkdirSync(shots);
export const DESKTOP = { width: 1280, height: 800 };
export const PHONE = { width: 375, height: 740 };

export function startServer(port = 0, extra = [], db = "ui.db") {
  return new Promise((resolve, reject) => {
    const p = spawn(join(root, "target/release/chatterbox"),
      ["--listen", `127.0.0.1:${port}`, "--db", join(dir, db), "--auth-per-minute", "10000", ...extra],
      { stdio: ["ignore", "pipe", "ignore"] });
    p.stdout.on("data", (d) => {
      const m = /http:\/\/(\S+)/.exec(String(d));
      if (m) resolve({ p, addr: m[1], base: "http://" + m[1] });
    });
    p.on("exit", (code) => reject(new Error("server exited " + code)));
  });
}

export async function stopServer(p, signal = "SIGKILL") {
  if (!p || p.exitCode !== null) return;
  const gone = new Promise((r) => p.once("exit", r));
  p.kill(signal);
  await gone;
}

// Debian's headless shell (the same Blink as /usr/bin/chromium, without the desktop
// browser around it: about a third less CPU, which is what these tests wait on when the
// machine is busy) when installed; $CHROMIUM picks another.
export const CHROMIUM = process.env.CHROMIUM ||
  (existsSync("/usr/bin/chromium-headless-shell") ? "/usr/bin/chromium-headless-shell" : "/usr/bin/chromium");

function launchChromium() {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
      "--disable-component-update", "--disable-sync", "--no-first-run",
      // A page fulfilled by a route counts as public: let it reach the local server.
      ...(process.env.CHATTERBOX_WEB_FROM_SRC ? ["--disable-features=LocalNetworkAccessChecks"] : [])],
  });
}

// One Chromium for every file that all.mjs runs (started by shareBrowser, which returns
// what closes it); a file run on its own launches its own.
let shared = null;
export function shareBrowser() {
  shared = launchChromium();
  return async () => { const b = await shared; shared = null; await b.close(); };
}

// A browser for one file: its own Chromium, or a share of the common one, whose close()
// closes the contexts this file opened and leaves the browser to the others.
export async function launch() {
  if (!shared) return launchChromium();
  const browser = await shared;
  const contexts = new Set();
  return {
    async newContext(opts) {
      const ctx = await browser.newContext(opts);
      contexts.add(ctx);
      ctx.on("close", () => contexts.delete(ctx));
      return ctx;
    },
    close: () => Promise.all([...contexts].map((c) => c.close())),
  };
}

// While working on the UI, CHATTERBOX_WEB_FROM_SRC=1 serves src/web from the disk (with
// the server's headers) instead of the copy compiled into the binary.
const CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";
async function fromSource(ctx) {
  if (!process.env.CHATTERBOX_WEB_FROM_SRC) return;
  const files = { "/": ["index.html", "text/html"], "/app.js": ["app.js", "text/javascript"], "/style.css": ["style.css", "text/css"],
    "/admin": ["admin.html", "text/html"], "/admin.js": ["admin.js", "text/javascript"], "/admin.css": ["admin.css", "text/css"] };
  await ctx.route((url) => url.pathname in files, (route) => {
    const [f, type] = files[new URL(route.request().url()).pathname];
    route.fulfill({ status: 200, contentType: type + "; charset=utf-8", headers: { "Content-Security-Policy": CSP },
      body: readFileSync(join(root, "src/web", f)) });
  });
}

// A page whose console errors and uncaught exceptions fail the test that checks them.
export async function newPage(browser, opts = {}) {
  const ctx = await browser.newContext({ viewport: opts.viewport || DESKTOP, colorScheme: opts.colorScheme || "light",
    hasTouch: !!opts.hasTouch, isMobile: !!opts.isMobile, storageState: opts.storageState });
  await fromSource(ctx);
  if (opts.axe) await ctx.addInitScript({ path: axePath() });
  const page = await ctx.newPage();
  page.setDefaultTimeout(15000);
  page.errors = [];
  page.on("pageerror", (e) => page.errors.push(String(e)));
  page.on("console", (m) => { if (m.type() === "error" && !/WebSocket|Failed to load resource|ERR_CONNECTION/.test(m.text())) page.errors.push(m.text()); });
  page.on("dialog", (d) => { page.sawDialog = d.type(); d.dismiss().catch(() => {}); });
  return page;
}

export async function signUp(browser, base, name, opts = {}) {
  const page = await newPage(browser, opts);
  await page.goto(base + "/");
  await page.getByLabel("Username").fill(name);
  await page.getByLabel("Password").fill("password-" + name);
  await page.getByRole("button", { name: "Create account" }).click();
  await waitOnline(page);
  return page;
}

export async function signIn(browser, base, name, opts = {}) {
  const page = await newPage(browser, opts);
  await page.goto(base + "/");
  await page.getByLabel("Username").fill(name);
  await page.getByLabel("Password").fill("password-" + name);
  await page.getByRole("button", { name: "Sign in" }).click();
  await waitOnline(page);
  return page;
}

// Signed in without the form, for tests that are not about signing up or in: the account
// made (or, with `existing`, just logged in) over HTTP, its session in localStorage before
// the page first loads. `setup(page)` runs before that load (listeners on the first socket).
export async function enter(browser, base, name, opts = {}) {
  const token = opts.existing ? await login(base, name) : await register(base, name);
  assert.ok(token, `no session for ${name}`);
  const page = await newPage(browser, { ...opts, storageState: { cookies: [], origins: [{ origin: base,
    localStorage: [{ name: "chatterbox.token", value: token }, { name: "chatterbox.user", value: name }] }] } });
  if (opts.setup) await opts.setup(page);
  await page.goto(base + "/");
  await waitOnline(page);
  return page;
}

export async function waitOnline(page) {
  await page.waitForSelector("#app:not([hidden])");
  await page.waitForSelector("html[data-conn=online]", { state: "attached" });
  // Joined the open room: its messages and members are in.
  await page.waitForSelector("#messages[aria-busy=false]", { state: "attached" });
}

// The element (the rooms drawer, say) has finished its transitions.
export const settled = (page, selector) =>
  page.waitForFunction((s) => document.querySelector(s).getAnimations().length === 0, selector);

export async function say(page, text) {
  const box = page.getByRole("textbox", { name: "Message", exact: true });
  await box.fill(text);
  await box.press("Enter");
}

export const stored = (page, text) => page.locator(".msg[id]", { hasText: text }).first();

// ---- the API, from the test ---------------------------------------------------------

export async function register(base, name) {
  await fetch(base + "/register", { method: "POST", body: JSON.stringify({ username: name, password: "password-" + name }) });
  const r = await fetch(base + "/login", { method: "POST", body: JSON.stringify({ username: name, password: "password-" + name }) });
  return (await r.json()).token;
}

// A WebSocket client: `request` sends and waits for the reply with the same ref.
export async function client(base, token) {
  const ws = new WebSocket(base.replace("http", "ws") + "/ws?token=" + token);
  const waiting = new Map();
  const events = [];
  let seq = 0;
  ws.onmessage = (e) => {
    const m = JSON.parse(e.data);
    events.push(m);
    if (m.ref && waiting.has(m.ref)) { waiting.get(m.ref)(m); waiting.delete(m.ref); }
  };
  await new Promise((r, j) => { ws.onopen = r; ws.onerror = j; });
  const request = (obj) => new Promise((r) => { const ref = "t" + ++seq; waiting.set(ref, r); ws.send(JSON.stringify({ ...obj, ref })); });
  return { ws, events, request, close: () => ws.close() };
}

// Every message of a room, oldest first, over HTTP.
export async function history(base, token, roomName) {
  const all = [];
  let before = "";
  for (;;) {
    const r = await fetch(`${base}/rooms/${roomName}/messages?limit=200${before ? "&before=" + before : ""}`,
      { headers: { Authorization: "Bearer " + token } });
    const page = await r.json();
    all.unshift(...page.messages);
    if (!page.has_more || !page.messages.length) return all;
    before = page.messages[0].id;
  }
}

// ---- accessibility ------------------------------------------------------------------

function axePath() {
  return createRequire(import.meta.url).resolve("axe-core/axe.min.js");
}

// axe-core, run in the page (it was loaded by an init script, which the CSP allows).
export async function axe(page) {
  const res = await page.evaluate(() => window.axe.run(document, { resultTypes: ["violations"] }));
  return res.violations.filter((v) => v.impact === "serious" || v.impact === "critical")
    .map((v) => `${v.id} (${v.impact}): ${v.nodes.slice(0, 3).map((n) => n.target.join(" ")).join(" | ")}`);
}

// WCAG 2 contrast of every visible piece of text against what is behind it (the
// backgrounds of its ancestors, blended). Returns the ones under AA: 4.5:1, or 3:1 for
// large text.
export async function contrastFailures(page, scope = "body", emoji = false) {
  return page.evaluate(([scope, emoji]) => {
    const parse = (c) => {
      const m = /rgba?\(([^)]+)\)/.exec(c);
      if (!m) return [0, 0, 0, 0];
      const p = m[1].split(/[ ,/]+/).filter(Boolean).map(Number);
      return [p[0], p[1], p[2], p[3] === undefined ? 1 : p[3]];
    };
    const over = (top, under) => {
      const a = top[3];
      return [0, 1, 2].map((i) => top[i] * a + under[i] * (1 - a)).concat(1);
    };
    const lum = (c) => {
      const [r, g, b] = c.slice(0, 3).map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
      return 0.2126 * r + 0.7152 * g + 0.0722 * b;
    };
    const ratio = (a, b) => { const [x, y] = [lum(a), lum(b)].sort((p, q) => q - p); return (x + 0.05) / (y + 0.05); };
    const background = (e) => {
      const layers = [];
      for (let n = e; n && n.nodeType === 1; n = n.parentElement) {
        const bg = parse(getComputedStyle(n).backgroundColor);
        if (bg[3] > 0) { layers.push(bg); if (bg[3] >= 1) break; }
        if (n.tagName === "DIALOG" || (n.parentElement === null)) break;
      }
      let c = [255, 255, 255, 1];
      if (layers.length && layers[layers.length - 1][3] >= 1) c = layers.pop();
      while (layers.length) c = over(layers.pop(), c);
      return c;
    };
    const opacity = (e) => { let o = 1; for (let n = e; n && n.nodeType === 1; n = n.parentElement) o *= Number(getComputedStyle(n).opacity); return o; };
    const failures = [];
    const seen = new Set();
    const walker = document.createTreeWalker(document.querySelector(scope), NodeFilter.SHOW_TEXT);
    for (let t = walker.nextNode(); t; t = walker.nextNode()) {
      if (!t.textContent.trim()) continue;
      const e = t.parentElement;
      if (seen.has(e)) continue;
      seen.add(e);
      const r = e.getBoundingClientRect();
      if (!r.width || !r.height || !e.checkVisibility({ visibilityProperty: true, opacityProperty: true })) continue;
      if (e.closest(".sr-only") || e.closest("[aria-hidden=true]") || e.matches(":disabled")) continue;
      const o = opacity(e);
      if (o < 0.1) continue;
      const st = getComputedStyle(e);
      const bg = background(e);
      const fg = over([...parse(st.color).slice(0, 3), parse(st.color)[3] * o], bg);
      const size = parseFloat(st.fontSize);
      const large = size >= 24 || (size >= 18.66 && Number(st.fontWeight) >= 700);
      const need = large ? 3 : 4.5;
      // Emoji are pictures in colour fonts; their colour does not apply.
      // (Unless asked: a glyph without a colour version is drawn in the text colour.)
      if (!emoji && /^[\p{Extended_Pictographic}\uFE0F\u200D\s]+$/u.test(t.textContent.trim())) continue;
      const got = ratio(fg, bg);
      if (got < need) failures.push(`${got.toFixed(2)} < ${need}: "${t.textContent.trim().slice(0, 30)}" (${e.tagName.toLowerCase()}.${e.className})`);
    }
    return failures;
  }, [scope, emoji]);
}

// ---- the admin command line ---------------------------------------------------------

// `chatterbox admin ARGS… --db DB` (with `input` on stdin); resolves to what it printed
// on stdout, trimmed (a code, for `reset-password` and `invite`).
export function adminCli(args, db, input = "") {
  return new Promise((resolve, reject) => {
    const p = spawn(join(root, "target/release/chatterbox"), ["admin", ...args, "--db", join(dir, db)],
      { stdio: [input ? "pipe" : "ignore", "pipe", "pipe"] });
    let out = "", err = "";
    p.stdout.on("data", (d) => { out += d; });
    p.stderr.on("data", (d) => { err += d; });
    p.on("exit", (code) => (code === 0 ? resolve(out.trim()) : reject(new Error(`admin ${args.join(" ")} exited ${code}: ${err}`))));
    if (input) { p.stdin.on("error", () => {}); p.stdin.end(input); }
  });
}

// A token for an existing account, over HTTP.
export async function login(base, name, password = "password-" + name) {
  const r = await fetch(base + "/login", { method: "POST", body: JSON.stringify({ username: name, password }) });
  return r.status === 200 ? (await r.json()).token : null;
}
