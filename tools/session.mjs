// A scripted session (issue 14, "Done when"): two people in headless Chromium (alice,
// bob) and one in `chatterbox-cli chat` on a pseudo-terminal (carol), against a fresh
// release server at its default limits, for N minutes of a seeded random mix: bursts of
// 30 typed fast, normal chat, inline edits and deletes (and /edit, /delete), reloads right
// after sending, scrolling up to the beginning, direct messages, and once in the middle a
// server restart (SIGTERM, same port and database). Then it checks that every message sent
// is stored exactly once (HTTP history), nothing is left "sending…" or failed, edits and
// deletes reached the other clients, no browser console or page error, and the CLI printed
// each message once. Prints a summary; exits 1 on any failure.
//
//   tools/session [--minutes N] [--seed S] [--keep] [--inject-duplicate]
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, createWriteStream, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { root, dir as helperDir, launch, newPage, waitOnline, say, history, login, client } from "../tests/browser/helpers.mjs";

// ---- options -------------------------------------------------------------------------
const argv = process.argv.slice(2);
const opt = (name, dflt) => { const i = argv.indexOf(name); return i >= 0 ? argv[i + 1] : dflt; };
const MINUTES = Number(opt("--minutes", "10"));
const SEED = Number(opt("--seed", String(Date.now() % 1000000)));
const KEEP = argv.includes("--keep");
// Self-test of the checks: store one of alice's messages a second time behind the
// clients' backs; the run must then fail.
const INJECT_DUPLICATE = argv.includes("--inject-duplicate");
if (!(MINUTES > 0) || !Number.isFinite(SEED)) { console.error("usage: tools/session [--minutes N] [--seed S] [--keep]"); process.exit(1); }

// mulberry32: the same seed, the same choices (timing still differs run to run).
let s = SEED >>> 0;
const rand = () => { s = (s + 0x6d2b79f5) >>> 0; let t = s; t = Math.imul(t ^ (t >>> 15), t | 1); t ^= t + Math.imul(t ^ (t >>> 7), t | 61); return ((t ^ (t >>> 14)) >>> 0) / 4294967296; };
const pick = (xs) => xs[Math.floor(rand() * xs.length)];
const WORDS = "the a deploy lunch coffee build green red merge ship review later now ok sure why not maybe tomorrow".split(" ");
const words = (n) => Array.from({ length: n }, () => pick(WORDS)).join(" ");

const work = mkdtempSync(join(tmpdir(), "chatterbox-session-"));
const DB = join(work, "session.db");
const started = Date.now();
const elapsed = () => ((Date.now() - started) / 1000).toFixed(1) + "s";
const log = (...a) => console.log(`[${elapsed()}]`, ...a);
const failures = [];
const fail = (what) => { failures.push(what); log("FAIL:", what); };
const counts = {};
const count = (k, n = 1) => { counts[k] = (counts[k] || 0) + n; };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---- processes, always cleaned up -----------------------------------------------------
const children = new Set();
let browser = null;
let server = null;
let port = 0;
let cleaning = null;
function cleanup() {
  if (cleaning) return cleaning;
  cleaning = (async () => {
    await browser?.close().catch(() => {});
    for (const p of children) if (p.exitCode === null && p.signalCode === null) p.kill("SIGKILL");
    if (!KEEP && !failures.length) { rmSync(work, { recursive: true, force: true }); rmSync(helperDir, { recursive: true, force: true }); }
  })();
  return cleaning;
}
for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, async () => { await cleanup(); process.exit(130); });
process.on("exit", () => { for (const p of children) if (p.exitCode === null && p.signalCode === null) p.kill("SIGKILL"); });

function track(p) { children.add(p); p.on("exit", () => children.delete(p)); return p; }

const serverLog = createWriteStream(join(work, "server.log"));
function startServer() {
  return new Promise((resolve, reject) => {
    const p = track(spawn(join(root, "target/release/chatterbox"), ["--listen", `127.0.0.1:${port}`, "--db", DB],
      { stdio: ["ignore", "pipe", "pipe"] }));
    let done = false;
    p.stderr.pipe(serverLog, { end: false });
    p.stdout.on("data", (d) => {
      serverLog.write(d);
      const m = /http:\/\/(\S+)/.exec(String(d));
      if (m && !done) { done = true; resolve({ p, base: "http://" + m[1] }); }
    });
    p.on("exit", (code) => { if (!done) reject(new Error("server exited " + code)); });
    setTimeout(() => { if (!done) reject(new Error("server did not start in 15 s")); }, 15000);
  });
}

// ---- carol: chatterbox-cli chat on a pseudo-terminal ----------------------------------
const cliEnv = () => ({ ...process.env, CHATTERBOX_SERVER: base, CHATTERBOX_CONFIG_DIR: join(work, "carol-config") });
function cliRun(args, input) {
  return new Promise((resolve, reject) => {
    const p = track(spawn(join(root, "target/release/chatterbox-cli"), args, { env: cliEnv(), stdio: ["pipe", "pipe", "pipe"] }));
    let out = "";
    p.stdout.on("data", (d) => { out += d; });
    p.stderr.on("data", (d) => { out += d; });
    p.on("exit", (code) => (code === 0 ? resolve(out) : reject(new Error(`chatterbox-cli ${args.join(" ")}: ${code} ${out}`))));
    p.stdin.end(input);
  });
}
let screen = "";
let cli = null;
// What the terminal shows, line by line: a `\r` starts the line over (the prompt is
// redrawn that way), escape sequences go.
const plain = (t) => t.split("\n").map((l) => l.replace(/\r+$/, "")).map((l) => l.slice(l.lastIndexOf("\r") + 1))
  .map((l) => l.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, "")).join("\n");
// Lines `[hh:mm] #ID ROOM <user> text`, as chat prints messages.
const MSG_LINE = /^\[[^\]]+\] #(\d+) (\S+) <([^>]+)> (.*)$/;
function cliLines() { return plain(screen).split("\n"); }
async function cliWait(pred, what, ms = 20000) {
  const until = Date.now() + ms;
  for (;;) {
    const found = cliLines().find(pred);
    if (found) return found;
    if (Date.now() > until || cli.exitCode !== null) throw new Error(`the CLI never printed ${what}; its last lines:\n${cliLines().slice(-15).join("\n")}`);
    await sleep(50);
  }
}
function cliType(text) { cli.stdin.write(text + "\r"); }

// ---- the session ----------------------------------------------------------------------
let base = "";
const sent = []; // { who, token, room, text, id?, edited?, deleted? }
let seq = 0;
const token = (who) => `${who[0]}${++seq}`;
const pages = {};

async function domMsgs(page) {
  return page.$$eval("#messages .msg[id]", (els) => els.map((e) => ({ id: e.id, mine: e.classList.contains("mine"),
    deleted: e.classList.contains("deleted"), text: (e.querySelector(".bubble")?.textContent || "") })));
}
const inGeneral = (page) => page.waitForSelector("#room-title:text('# general')");
async function toGeneral(page) {
  await page.locator("#room-list").getByRole("button", { name: "# general" }).click();
  await inGeneral(page);
  await page.waitForSelector("#messages[aria-busy=false]", { state: "attached" });
}
async function scrollToBottom(page) {
  await page.locator("#messages").evaluate((b) => { b.scrollTop = b.scrollHeight; });
}

async function browserSay(who, text, room = "general") {
  const t = token(who);
  await say(pages[who], `${t} ${text}`);
  sent.push({ who, token: t, room, text: `${t} ${text}` });
  count(`${who} messages`);
}

async function carolSay(text) {
  const t = token("carol");
  cliType(`${t} ${text}`);
  sent.push({ who: "carol", token: t, room: "general", text: `${t} ${text}` });
  count("carol messages");
  const line = await cliWait((l) => { const m = MSG_LINE.exec(l); return m && m[3] === "carol" && m[4].startsWith(t + " "); }, `carol's ${t}`);
  sent[sent.length - 1].id = Number(MSG_LINE.exec(line)[1]);
}

// The change of message `id` reaches `who`'s page (if it holds that message at all).
async function shownIn(who, id, what) {
  const el = pages[who].locator("#m" + id);
  if (!(await el.count())) { count("changes to a message not loaded in the other page"); return; }
  await what(el).waitFor({ state: "attached" });
}

const actions = {
  async chat() {
    const who = pick(["alice", "bob", "carol"]);
    if (who === "carol") await carolSay(words(3 + Math.floor(rand() * 6)));
    else await browserSay(who, words(3 + Math.floor(rand() * 6)));
    count("chat");
  },
  async burst() {
    const who = pick(["alice", "bob"]);
    const first = seq + 1;
    const texts = Array.from({ length: 30 }, (_, i) => { const t = token(who); sent.push({ who, token: t, room: "general", text: `${t} burst ${i + 1}` }); return `${t} burst ${i + 1}`; });
    await pages[who].getByRole("textbox", { name: "Message", exact: true }).evaluate((box, texts) => {
      for (const t of texts) {
        box.value = t;
        box.dispatchEvent(new Event("input", { bubbles: true }));
        box.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter", bubbles: true, cancelable: true }));
      }
    }, texts);
    count(`${who} messages`, 30);
    count("burst");
    log(`${who} burst ${who[0]}${first}..${who[0]}${seq}`);
  },
  async edit() {
    const who = pick(["alice", "bob", "carol"]);
    const others = ["alice", "bob"].filter((w) => w !== who);
    if (who === "carol") {
      const mine = sent.filter((m) => m.who === "carol" && m.room === "general" && m.id && !m.deleted && !m.edited);
      if (!mine.length) return;
      const m = pick(mine.slice(-5));
      const text = `${m.token} edited by cli ${words(2)}`;
      cliType(`/edit ${m.id} ${text}`);
      m.edited = text;
      await cliWait((l) => l.includes(`* message #${m.id} in general edited: ${text}`), `the edit of #${m.id}`);
      for (const o of others) await shownIn(o, m.id, (l) => l.locator(".bubble", { hasText: text }));
    } else {
      const page = pages[who];
      await scrollToBottom(page);
      const mine = (await domMsgs(page)).filter((d) => d.mine && !d.deleted).slice(-8)
        .map((d) => ({ d, m: sent.find((x) => x.who === who && x.room === "general" && !x.deleted && !x.edited && d.text === x.text) })).filter((x) => x.m);
      if (!mine.length) return;
      const { d, m } = pick(mine);
      const text = `${m.token} edited ${words(2)}`;
      const el = page.locator("#" + d.id);
      await el.getByRole("button", { name: "Edit message" }).click();
      const editor = page.getByRole("textbox", { name: "Edit message" });
      await editor.fill(text);
      await editor.press("Enter");
      m.edited = text;
      m.id = Number(d.id.slice(1));
      await el.locator(".bubble", { hasText: text }).waitFor();
      for (const o of others) await shownIn(o, m.id, (l) => l.locator(".bubble", { hasText: text }));
      await cliWait((l) => l.includes(`* message #${m.id} in general edited: ${text}`), `the edit of #${m.id}`);
    }
    count(`${who} edits`);
    count("edit");
  },
  async delete() {
    const who = pick(["alice", "bob", "carol"]);
    const others = ["alice", "bob"].filter((w) => w !== who);
    let m;
    if (who === "carol") {
      const mine = sent.filter((x) => x.who === "carol" && x.room === "general" && x.id && !x.deleted);
      if (!mine.length) return;
      m = pick(mine.slice(-5));
      cliType(`/delete ${m.id}`);
    } else {
      const page = pages[who];
      await scrollToBottom(page);
      const mine = (await domMsgs(page)).filter((d) => d.mine && !d.deleted).slice(-8)
        .map((d) => ({ d, m: sent.find((x) => x.who === who && x.room === "general" && !x.deleted && d.text === (x.edited || x.text)) })).filter((x) => x.m);
      if (!mine.length) return;
      const c = pick(mine);
      m = c.m;
      m.id = Number(c.d.id.slice(1));
      const el = page.locator("#" + c.d.id);
      await el.getByRole("button", { name: "Delete message" }).click();
      await el.getByRole("button", { name: "Confirm delete" }).click();
      await page.locator(`#${c.d.id}.deleted`).waitFor({ state: "attached" });
    }
    m.deleted = true;
    for (const o of others) await shownIn(o, m.id, (l) => l.and(pages[o].locator(".deleted")));
    await cliWait((l) => l.includes(`* message #${m.id} in general deleted`), `the delete of #${m.id}`);
    count(`${who} deletes`);
    count("delete");
  },
  async reload() {
    const who = pick(["alice", "bob"]);
    const n = 1 + Math.floor(rand() * 3);
    for (let i = 0; i < n; i++) await browserSay(who, "just before a reload " + words(2));
    await pages[who].reload();
    await waitOnline(pages[who]);
    count("reload");
  },
  async scroll(who = pick(["alice", "bob"]), counted = true) {
    const page = pages[who];
    const beginning = page.getByText("This is the beginning of # general");
    const box = await page.locator("#messages").boundingBox();
    await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
    let steps = 0;
    for (; steps < 200 && !(await beginning.isVisible()); steps++) {
      await page.mouse.wheel(0, -1500);
      await sleep(150);
    }
    if (!(await beginning.isVisible())) fail(`${who}: scrolling up never reached the beginning of #general (${steps} wheel steps)`);
    if (counted) { count("scroll to the beginning"); count("scroll wheel steps", steps); }
    await scrollToBottom(page);
  },
  async dm() {
    const kind = pick(["alice→bob", "bob→alice", "carol→alice"]);
    if (kind === "carol→alice") {
      const t = token("carol");
      const text = `${t} psst ${words(3)}`;
      cliType(`/dm alice ${text}`);
      sent.push({ who: "carol", token: t, room: "dm:alice:carol", text });
      count("carol messages");
      const line = await cliWait((l) => { const m = MSG_LINE.exec(l); return m && m[3] === "carol" && m[4] === text; }, `carol's DM ${t}`);
      sent[sent.length - 1].id = Number(MSG_LINE.exec(line)[1]);
      await pages.alice.locator("#dm-list").getByRole("button", { name: /carol/ }).waitFor();
    } else {
      const [from, to] = kind.split("→");
      const page = pages[from];
      const existing = page.locator("#dm-list").getByRole("button", { name: new RegExp(to) });
      if (await existing.count()) await existing.click();
      else {
        await page.getByRole("button", { name: "Members" }).click();
        await page.locator("#member-list").getByRole("button", { name: new RegExp("^" + to) }).click();
      }
      await page.waitForSelector(`#room-title:text('${to}')`);
      await page.waitForSelector("#messages[aria-busy=false]", { state: "attached" });
      const t = token(from);
      const text = `${t} direct ${words(3)}`;
      await say(page, text);
      sent.push({ who: from, token: t, room: "dm:alice:bob", text });
      count(`${from} messages`);
      await page.locator("#messages .msg[id]", { hasText: text }).waitFor();
      await pages[to].locator("#dm-list").getByRole("button", { name: new RegExp(from) }).waitFor();
      await toGeneral(page);
    }
    count("dm");
  },
};

let restarting = false;
function watchServer() {
  server.p.on("exit", (code, sig) => { if (!restarting && !cleaning) fail(`the server exited unexpectedly (${code ?? sig})`); });
}

async function restart() {
  log("restart: SIGTERM to the server");
  // A burst in flight and a message written while the server is away.
  await actions.burst();
  const exited = new Promise((r) => server.p.once("exit", r));
  restarting = true;
  server.p.kill("SIGTERM");
  const code = await Promise.race([exited, sleep(15000).then(() => "timeout")]);
  if (code === "timeout") { fail("the server did not exit within 15 s of SIGTERM"); server.p.kill("SIGKILL"); await exited; }
  await pages.alice.locator("#conn").waitFor();
  await browserSay("alice", "written while the server is down");
  // carol too, once her chat has noticed (typed lines wait for the reconnect).
  await cliWait((l) => l.includes("reconnecting…"), "that it is reconnecting", 15000);
  const t = token("carol");
  cliType(`${t} typed while the server is down`);
  sent.push({ who: "carol", token: t, room: "general", text: `${t} typed while the server is down` });
  count("carol messages");
  await sleep(1500);
  server = await startServer();
  restarting = false;
  watchServer();
  log("restart: up again on", server.base);
  for (const who of ["alice", "bob"]) {
    await pages[who].waitForSelector("html[data-conn=online]", { state: "attached", timeout: 60000 });
    await pages[who].locator("#conn").waitFor({ state: "hidden", timeout: 60000 });
  }
  await cliWait((l) => l.startsWith("! reconnected"), "that it reconnected", 60000);
  count("server restart");
}

async function main() {
  server = await startServer();
  base = server.base;
  port = Number(base.split(":").pop());
  watchServer();
  log(`server ${base}, seed ${SEED}, ${MINUTES} min, work dir ${work}`);
  for (const who of ["alice", "bob", "carol"]) {
    const r = await fetch(base + "/register", { method: "POST", body: JSON.stringify({ username: who, password: "password-" + who }) });
    if (r.status !== 200 && r.status !== 201) throw new Error(`register ${who}: ${r.status}`);
  }
  browser = await launch();
  for (const who of ["alice", "bob"]) {
    const page = await newPage(browser);
    await page.goto(base + "/");
    await page.getByLabel("Username").fill(who);
    await page.getByLabel("Password").fill("password-" + who);
    await page.getByRole("button", { name: "Sign in" }).click();
    await waitOnline(page);
    pages[who] = page;
  }
  await cliRun(["login", "carol"], "password-carol\n");
  cli = track(spawn("python3", [join(root, "tools/on-pty.py"), join(root, "target/release/chatterbox-cli"), "chat", "general"],
    { env: { ...cliEnv(), TERM: "xterm" }, stdio: ["pipe", "pipe", "inherit"] }));
  cli.stdout.on("data", (d) => { screen += d; });
  cli.on("exit", (code) => log("the CLI exited", code));
  await cliWait((l) => l.includes("joined general"), "joined general");

  // The mix: weights per action; the restart once, halfway.
  const menu = [["chat", 40], ["burst", 6], ["edit", 12], ["delete", 8], ["reload", 8], ["scroll", 5], ["dm", 6]];
  const total = menu.reduce((a, [, w]) => a + w, 0);
  const end = started + MINUTES * 60000;
  let restarted = false;
  while (Date.now() < end) {
    if (!restarted && Date.now() > started + MINUTES * 30000) { restarted = true; await restart(); continue; }
    let r = rand() * total;
    const [name] = menu.find(([, w]) => (r -= w) < 0) || menu[0];
    await actions[name]();
    await sleep(100 + rand() * 900);
  }
  if (!restarted) await restart();
  log("the mix is over: checking");
  await check();
}

async function check() {
  if (INJECT_DUPLICATE) {
    const m = sent.find((x) => x.who === "alice" && x.room === "general" && !x.edited && !x.deleted);
    const c = await client(base, await login(base, "alice"));
    await c.request({ type: "send", room: "general", text: m.text });
    c.close();
    log(`injected a second copy of "${m.text}"`);
  }
  // Everything sent settles: nothing pending in either browser.
  for (const who of ["alice", "bob"]) {
    const page = pages[who];
    await page.waitForFunction(() => document.querySelectorAll(".msg.pending").length === 0, null, { timeout: 90000 })
      .catch(() => fail(`${who}: messages still pending after 90 s`));
    const stuck = await page.getByText("sending…").count();
    if (stuck) fail(`${who}: ${stuck} message(s) shown as "sending…"`);
    const failed = await page.locator(".msg.failed").count();
    if (failed) fail(`${who}: ${failed} message(s) marked failed`);
    const outbox = await page.evaluate((w) => localStorage.getItem("chatterbox.outbox." + w), who);
    if (outbox && outbox !== "[]") fail(`${who}: outbox not empty: ${outbox.slice(0, 200)}`);
  }
  await sleep(2000); // the last edits and messages reach carol

  // Stored exactly once: the HTTP history of each room.
  const rooms = { general: "alice", "dm:alice:bob": "alice", "dm:alice:carol": "carol" };
  const stored = {};
  for (const [room, who] of Object.entries(rooms)) {
    const tok = await login(base, who);
    stored[room] = await history(base, tok, encodeURIComponent(room)).catch(() => []);
  }
  let checked = 0;
  for (const room of Object.keys(rooms)) {
    const byToken = new Map();
    for (const m of stored[room]) {
      const t = m.text.split(" ")[0];
      if (!m.deleted) byToken.set(t, [...(byToken.get(t) || []), m]);
    }
    for (const [t, ms] of byToken) if (ms.length > 1) fail(`${room}: "${t}" stored ${ms.length} times (ids ${ms.map((m) => m.id)})`);
    for (const m of sent.filter((x) => x.room === room)) {
      checked++;
      const got = byToken.get(m.token) || [];
      if (m.deleted) {
        const row = stored[room].find((x) => x.id === m.id);
        if (!row || !row.deleted) fail(`${room}: ${m.token} (#${m.id}) was deleted but history has ${JSON.stringify(row)}`);
        if (got.length) fail(`${room}: ${m.token} deleted yet stored again as #${got.map((x) => x.id)}`);
        continue;
      }
      if (got.length !== 1) { fail(`${room}: ${m.who}'s "${m.text}" stored ${got.length} times`); continue; }
      const want = m.edited || m.text;
      if (got[0].text !== want) fail(`${room}: #${got[0].id} is "${got[0].text}", expected "${want}"`);
      if (got[0].user !== m.who) fail(`${room}: #${got[0].id} by ${got[0].user}, expected ${m.who}`);
      m.id = got[0].id;
    }
  }

  // Each browser shows #general once each, with the edits and deletes: scrolled up to the
  // beginning, it holds every message of the history, once, in order.
  const historyIds = stored.general.map((m) => "m" + m.id);
  for (const who of ["alice", "bob"]) {
    const page = pages[who];
    await actions.scroll(who, false);
    const dom = await domMsgs(page);
    const shownIds = dom.map((d) => d.id);
    if (JSON.stringify(shownIds) !== JSON.stringify(historyIds)) {
      const missing = historyIds.filter((i) => !shownIds.includes(i)), extra = shownIds.filter((i) => !historyIds.includes(i));
      fail(`${who}: the page's #general differs from the history: ${shownIds.length} shown, ${historyIds.length} stored; missing ${missing.slice(0, 10)}; extra ${extra.slice(0, 10)}`);
    }
    const ids = dom.map((d) => d.id);
    if (new Set(ids).size !== ids.length) fail(`${who}: duplicate message ids in the page`);
    const tokens = dom.filter((d) => !d.deleted).map((d) => d.text.split(" ")[0]);
    const dup = tokens.filter((t, i) => tokens.indexOf(t) !== i);
    if (dup.length) fail(`${who}: shown twice: ${dup.slice(0, 5)}`);
    const byId = new Map(dom.map((d) => [d.id, d]));
    for (const m of sent.filter((x) => x.room === "general" && x.id)) {
      const d = byId.get("m" + m.id);
      if (!d) continue; // (reported above)
      if (m.deleted && !d.deleted) fail(`${who}: #${m.id} deleted but shown as "${d.text}"`);
      if (!m.deleted && d.text !== (m.edited || m.text)) fail(`${who}: #${m.id} shows "${d.text}", expected "${m.edited || m.text}"`);
    }
    if (page.errors.length) fail(`${who}: console or page errors: ${page.errors.slice(0, 5).join(" | ")}`);
  }

  // The CLI printed each message of its rooms once.
  const seenIds = new Map();
  for (const l of cliLines()) {
    const m = MSG_LINE.exec(l);
    if (m) seenIds.set(m[1], (seenIds.get(m[1]) || 0) + 1);
  }
  let cliChecked = 0;
  for (const room of ["general", "dm:alice:carol"]) {
    for (const m of stored[room]) {
      cliChecked++;
      const n = seenIds.get(String(m.id)) || 0;
      if (n !== 1) fail(`carol's chat printed #${m.id} (${room}, "${m.text.slice(0, 30)}") ${n} times`);
    }
  }
  for (const m of sent.filter((x) => x.room === "general" && x.edited && !x.deleted && x.who !== "carol"))
    if (!cliLines().some((l) => l.includes(`* message #${m.id} in general edited: ${m.edited}`))) fail(`carol's chat never showed the edit of #${m.id}`);
  if (cli.exitCode !== null) fail(`the CLI exited early (${cli.exitCode})`);
  writeFileSync(join(work, "cli-screen.txt"), plain(screen));

  const secs = ((Date.now() - started) / 1000).toFixed(0);
  console.log("\n== a scripted session ==");
  console.log(`seed ${SEED}; ran ${secs} s (${MINUTES} min of actions, then the checks)`);
  console.log("actions: " + Object.entries(counts).map(([k, v]) => `${k} ${v}`).join(", "));
  console.log(`messages sent ${sent.length} (general ${sent.filter((m) => m.room === "general").length}, DMs ${sent.filter((m) => m.room !== "general").length}); ` +
    `checked stored once: ${checked}; in history: general ${stored.general.length}, dm:alice:bob ${stored["dm:alice:bob"].length}, dm:alice:carol ${stored["dm:alice:carol"].length}; ` +
    `edited ${sent.filter((m) => m.edited).length}, deleted ${sent.filter((m) => m.deleted).length}; CLI lines checked ${cliChecked}`);
}

const watchdog = setTimeout(() => { fail(`still running after ${MINUTES + 5} minutes`); finish(); }, (MINUTES + 5) * 60000);
async function finish() {
  clearTimeout(watchdog);
  if (failures.length) {
    console.log(`\nFAILED (${failures.length}):\n  ` + failures.join("\n  "));
    console.log(`work dir kept: ${work}`);
    await cleanup().catch(() => {});
    rmSync(helperDir, { recursive: true, force: true });
    process.exit(1);
  }
  console.log("\nOK");
  await cleanup();
  process.exit(0);
}
main().catch(async (e) => {
  fail(String(e.stack || e));
  try { writeFileSync(join(work, "cli-screen.txt"), plain(screen)); for (const [w, p] of Object.entries(pages)) await p.screenshot({ path: join(work, `${w}.png`) }).catch(() => {}); } catch {}
}).then(finish);
