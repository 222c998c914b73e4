"use strict";
// Chatterbox web client: plain DOM, one WebSocket, no libraries. Message text is only
// ever set with textContent; links are built as elements for http(s) URLs only.
//
// Map of this file: theme; accounts; the outbox (messages not yet stored, kept in
// localStorage and paced within the server's budget); the connection (reconnect with
// jittered backoff, catch-up once per reconnect); server events; the message list
// (keyed rendering, stick-to-bottom, older pages, inline edit/delete); reactions (chips,
// who reacted, the picker); files (uploads from the composer, attachments in messages,
// the image viewer); rooms (browser, create, invite, leave, invitations); drawers and
// dialogs; moderation; wiring.

const $ = (id) => document.getElementById(id);
const el = (tag, cls, text) => {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
};
const button = (text, cls, onclick, labelText) => {
  const b = el("button", cls || "", text);
  b.type = "button";
  if (onclick) b.onclick = onclick;
  if (labelText) b.setAttribute("aria-label", labelText);
  return b;
};

// The server's defaults; a server with other limits says so with `rate_limited`.
const MSG_RATE = 10, MSG_BURST = 20, MAX_CHARS = 4000, MAX_FRAME_TEXT = 60000;
const PAGE = 50;
const DELETED_USER = "deleted user"; // who a deleted account's messages are shown as
const ROOM_NAME = /^[a-z0-9_-]{1,64}$/;

const state = {
  token: localStorage.getItem("chatterbox.token"),
  me: localStorage.getItem("chatterbox.user"),
  rooms: new Map(),
  current: "general",
  ws: null,
  epoch: 0, // one per connection: replies to an older connection are ignored
  attempt: 0, // reconnect attempts since the last hello
  reconnectTimer: null,
  reconnectAt: 0,
  connectedBefore: false,
  outbox: [], // {cid, room, text, files, dmTo, status: queued|inflight|failed, reason, sentAt}
  pumpTimer: null,
  pausedUntil: 0,
  bucket: { tokens: MSG_BURST - 2, at: Date.now() },
  invites: new Map(), // room -> who invited me, oldest first
  accepting: null,
  refs: new Map(), // ref -> {kind, room, ...}
  refSeq: 0,
  typingTimers: new Map(),
  typing: { room: null, active: false, lastSent: 0, idle: null, due: null },
  admin: false,
  suspended: new Set(),
  audit: [],
  stick: true, // the message list follows new messages
  unseenBelow: 0,
  editing: null, // {id, draft}
  confirming: null, // id of the message whose delete awaits confirmation
  picking: null, // {id, more}: the message whose reaction picker is open
  tip: null, // "id emoji": the reaction chip whose names are shown
  uploads: [], // files for the next message: {key, file, name, size, type, status: uploading|done|failed, loaded, xhr, id, error, retry}
  viewing: null, // {msg, file}: the image open in the viewer (to give the focus back)
  known: new Set(), // usernames this client has met (for invite completion)
  inviteRoom: null,
  leaveRoom: null,
};

function room(name) {
  let r = state.rooms.get(name);
  if (!r) {
    r = { name, private: name.startsWith("dm:"), member: true, unread: 0, msgs: new Map(),
      hasMore: true, loadingOlder: false, members: [], online: new Set(), cursors: {},
      lastSeen: {}, owner: null, typing: new Map(), dmTo: null, joined: false, joining: 0,
      memberCount: 0, onlineCount: 0, membersMore: false, membersAfter: "", loadingMembers: false,
      catchFrom: 0, delivered: {}, acks: {}, nodes: new Map() };
    state.rooms.set(name, r);
  }
  return r;
}
const lastId = (r) => { let m = 0; for (const k of r.msgs.keys()) if (k > m) m = k; return m; };
const firstId = (r) => { let m = Infinity; for (const k of r.msgs.keys()) if (k < m) m = k; return m === Infinity ? 0 : m; };
const dmPeer = (name) => name.split(":").slice(1).find((n) => n !== state.me.toLowerCase()) || name;
const label = (name) => (name.startsWith("dm:") ? "@ " + dmPeer(name) : "# " + name);
const same = (a, b) => String(a).toLowerCase() === String(b).toLowerCase();
const isNarrow = () => matchMedia("(max-width: 700px)").matches;
function know(name) { if (name && state.me && !same(name, state.me)) state.known.add(name); }

// ---- theme ------------------------------------------------------------------------

// Follows prefers-color-scheme unless the toggle chose; the choice is remembered.
function effectiveDark() {
  const t = document.documentElement.dataset.theme;
  if (t) return t === "dark";
  return matchMedia("(prefers-color-scheme: dark)").matches;
}
function applyTheme() {
  const saved = localStorage.getItem("chatterbox.theme");
  if (saved === "dark" || saved === "light") document.documentElement.dataset.theme = saved;
  else delete document.documentElement.dataset.theme;
  $("theme-btn").setAttribute("aria-pressed", String(effectiveDark()));
}
applyTheme();
matchMedia("(prefers-color-scheme: dark)").addEventListener("change", applyTheme);

// ---- accounts ---------------------------------------------------------------------

async function api(method, path, body) {
  const headers = { "Content-Type": "application/json" };
  if (state.token) headers.Authorization = "Bearer " + state.token;
  const res = await fetch(path, { method, headers, body: body ? JSON.stringify(body) : undefined });
  let data = null;
  try { data = await res.json(); } catch (_) { /* 204 or not JSON */ }
  return { status: res.status, data, retryAfter: res.headers.get("Retry-After") };
}

function authError(r) {
  if (r.status === 429) return `Too many attempts; try again in ${r.retryAfter || "a few"} seconds.`;
  const messages = {
    invalid_credentials: "Wrong username or password.",
    username_taken: "That username is taken.",
    invalid_username: "Usernames are 3–32 letters, digits, '_', '.' or '-'.",
    invalid_password: "Passwords need at least 8 characters.",
    suspended: "This account is suspended.",
    invite_required: "Creating an account on this server needs an invite code.",
    invalid_invite: "That invite code is not valid: it is unknown, used up or expired.",
    registration_closed: "This server does not take new sign-ups: an admin makes accounts.",
    invalid_code: "That reset code is not valid: check the name and the code (a code works once, for an hour).",
  };
  return messages[r.data && r.data.error] || (r.data && r.data.message) || "Something went wrong.";
}

async function signIn(register) {
  const username = $("auth-user").value.trim();
  const password = $("auth-pass").value;
  const invite = $("auth-invite").value.trim();
  $("auth-error").textContent = "";
  try {
    if (register) {
      if (registration === "invite" && !invite) { $("auth-error").textContent = authError({ data: { error: "invite_required" } }); $("auth-invite").focus(); return; }
      const body = { username, password };
      if (invite) body.invite = invite;
      const r = await api("POST", "/register", body);
      if (r.status !== 201) {
        $("auth-error").textContent = authError(r);
        // The server's mode changed since the form was drawn: draw the right one.
        if (r.data && ["invite_required", "registration_closed"].includes(r.data.error)) loadRegistration();
        return;
      }
    }
    const r = await api("POST", "/login", { username, password });
    if (r.status !== 200) { $("auth-error").textContent = authError(r); return; }
    state.token = r.data.token;
    state.me = r.data.username;
  } catch (_) {
    $("auth-error").textContent = "Could not reach the server.";
    return;
  }
  localStorage.setItem("chatterbox.token", state.token);
  localStorage.setItem("chatterbox.user", state.me);
  $("auth-form").reset(); // the password does not stay in the page
  start();
}

// Who may register (GET /registration): `open` shows "Create account"; `invite` adds an
// invite-code field for it; `closed` has no sign-up, and says who makes accounts.
let registration = "open";
async function loadRegistration() {
  const r = await api("GET", "/registration").catch(() => null);
  if (r && r.status === 200 && r.data && ["open", "invite", "closed"].includes(r.data.mode)) registration = r.data.mode;
  renderAuthMode();
}
let resetting = false;
function renderAuthMode() {
  const closed = registration === "closed";
  $("auth").dataset.registration = registration;
  $("auth-intro").textContent = resetting
    ? "Enter your username, the reset code an admin gave you, and a new password."
    : closed ? "Sign in." : "Sign in, or create an account.";
  $("auth-code-row").hidden = !resetting;
  $("auth-pass-label").textContent = resetting ? "New password" : "Password";
  $("auth-pass").autocomplete = resetting ? "new-password" : "current-password";
  $("auth-invite-row").hidden = resetting || registration !== "invite";
  $("auth-closed").hidden = resetting || !closed;
  $("auth-buttons").hidden = resetting;
  $("register-btn").hidden = closed;
  $("reset-buttons").hidden = !resetting;
  $("forgot-btn").hidden = resetting;
}
function setResetting(on) {
  resetting = on;
  $("auth-error").textContent = "";
  $("auth-pass").value = "";
  renderAuthMode();
  (on && $("auth-user").value ? $("auth-code") : $("auth-user")).focus();
}
// POST /account/reset with a code from `chatterbox admin reset-password`, then sign in.
async function resetPassword() {
  const name = $("auth-user").value.trim();
  const code = $("auth-code").value.trim();
  const password = $("auth-pass").value;
  $("auth-error").textContent = "";
  if (!name || !code) { $("auth-error").textContent = "Enter your username and the reset code."; return; }
  const r = await api("POST", "/account/reset", { name, code, new: password }).catch(() => null);
  if (!r) { $("auth-error").textContent = "Could not reach the server."; return; }
  if (r.status !== 204) { $("auth-error").textContent = authError(r); return; }
  resetting = false;
  $("auth-code").value = "";
  renderAuthMode();
  await signIn(false);
}
function showAuth(why) {
  $("app").hidden = true;
  $("auth").hidden = false;
  resetting = false;
  renderAuthMode();
  loadRegistration();
  $("auth-error").textContent = why || "";
}

// `why`, when given, is shown on the sign-in form (the session was ended by the server).
async function logout(callServer, why) {
  if (callServer && state.token) await api("POST", "/logout").catch(() => {});
  if (callServer && state.me) localStorage.removeItem(outboxKey());
  localStorage.removeItem("chatterbox.token");
  localStorage.removeItem("chatterbox.user");
  state.token = null;
  clearTimeout(state.reconnectTimer);
  clearTimeout(state.pumpTimer);
  if (state.ws) { state.ws.onclose = null; state.ws.close(); state.ws = null; }
  state.epoch++;
  state.rooms.clear();
  state.outbox = [];
  state.invites.clear();
  state.known.clear();
  state.current = "general";
  state.connectedBefore = false;
  state.editing = state.confirming = state.picking = state.tip = null;
  reactorsCache.clear();
  for (const u of state.uploads) if (u.xhr) u.xhr.abort();
  state.uploads = [];
  renderUploads();
  $("messages").replaceChildren();
  $("text").value = "";
  for (const d of ["search-dialog", "rooms-dialog", "audit", "account", "viewer"]) if ($(d).open) $(d).close();
  closeDrawers();
  setAdmin(false);
  hideNotice();
  setConn(null);
  $("auth-form").reset(); // no username or password left in the form
  showAuth(why);
  if (why && state.me) { $("auth-user").value = state.me; $("auth-pass").focus(); }
  else $("auth-user").focus();
}

async function start() {
  $("auth").hidden = true;
  $("app").hidden = false;
  $("me-name").textContent = state.me;
  $("room-title").textContent = label(state.current);
  $("text").placeholder = "Message " + label(state.current);
  loadOutbox();
  renderAll();
  const r = await loadRooms(false);
  if (r && r.status === 401) return logout(false, "Your session ended. Sign in again.");
  renderRooms();
  connect();
}

// Rooms from GET /rooms (by name, a page at a time): privacy, membership, unread counts.
const ROOMS_PAGE = 1000;
async function loadRooms(all) {
  let after = "";
  for (let n = 0; n < 1000; n++) {
    const q = `/rooms?limit=${ROOMS_PAGE}` + (after ? "&after=" + encodeURIComponent(after) : "");
    const r = await api("GET", q).catch(() => null);
    if (!r || r.status !== 200 || !Array.isArray(r.data)) return r;
    for (const info of r.data) {
      if (!info.member && !state.rooms.has(info.name)) continue;
      const rm = room(info.name);
      rm.private = info.private; rm.member = info.member;
      if (info.name !== state.current) rm.unread = info.unread || 0;
    }
    if (!all || r.data.length < ROOMS_PAGE) return r;
    after = r.data[r.data.length - 1].name;
  }
  return null;
}

// ---- the outbox -------------------------------------------------------------------
// Every message written goes here first, is saved in localStorage, and leaves it only
// when the server has stored it (its `message` comes back with our client_id) or when
// the user discards it. Sending is paced by a local copy of the server's budget and,
// when the server still says `rate_limited`, by its `retry_after_ms`; one message is in
// flight at a time so they are stored in the order written. A resend uses the same
// client_id, which the server recognises, so nothing is stored twice.

// Another tab of the same user keeps its own unsent messages under the same key: saving
// keeps theirs (all but those this tab saw stored or discarded).
const outboxKey = () => "chatterbox.outbox." + String(state.me).toLowerCase();
const outboxDone = new Set();
function saveOutbox() {
  const mine = new Set(state.outbox.map((p) => p.cid));
  let others = [];
  try { others = JSON.parse(localStorage.getItem(outboxKey()) || "[]"); } catch (_) { others = []; }
  if (!Array.isArray(others)) others = [];
  others = others.filter((p) => p && p.cid && !mine.has(p.cid) && !outboxDone.has(p.cid));
  const keep = others.concat(state.outbox.map(({ cid, room: rm, text, files, dmTo, status, reason }) =>
    ({ cid, room: rm, text, files, dmTo, failed: status === "failed", reason })));
  try {
    if (keep.length) localStorage.setItem(outboxKey(), JSON.stringify(keep));
    else localStorage.removeItem(outboxKey());
  } catch (_) { /* storage full or denied: still kept in memory */ }
}
function loadOutbox() {
  let saved = [];
  try { saved = JSON.parse(localStorage.getItem(outboxKey()) || "[]"); } catch (_) { saved = []; }
  if (!Array.isArray(saved)) saved = [];
  state.outbox = saved.filter((p) => p && p.cid && p.room && typeof p.text === "string").map((p) => ({
    cid: p.cid, room: p.room, text: p.text, dmTo: p.dmTo || null,
    files: Array.isArray(p.files) ? p.files.filter((f) => f && typeof f.id === "string") : [],
    status: p.failed ? "failed" : "queued", reason: p.reason || null, sentAt: 0,
  }));
  for (const p of state.outbox) { const r = room(p.room); if (p.dmTo) r.dmTo = r.dmTo || p.dmTo; }
}

function takeToken() {
  const b = state.bucket, now = Date.now();
  b.tokens = Math.min(MSG_BURST - 2, b.tokens + ((now - b.at) / 1000) * MSG_RATE);
  b.at = now;
  if (b.tokens >= 1) { b.tokens -= 1; return 0; }
  return Math.ceil(((1 - b.tokens) / MSG_RATE) * 1000);
}

function pump() {
  clearTimeout(state.pumpTimer);
  state.pumpTimer = null;
  if (!online()) return;
  const now = Date.now();
  const inflight = state.outbox.find((p) => p.status === "inflight");
  if (inflight) {
    // No answer in 15 s: send it again (same client_id, stored once).
    const wait = inflight.sentAt + 15000 - now;
    if (wait > 0) { state.pumpTimer = setTimeout(pump, wait); return; }
    inflight.status = "queued";
  }
  const next = state.outbox.find((p) => p.status === "queued");
  if (!next) return;
  if (now < state.pausedUntil) { state.pumpTimer = setTimeout(pump, state.pausedUntil - now); return; }
  const wait = takeToken();
  if (wait) { state.pumpTimer = setTimeout(pump, wait); return; }
  next.status = "inflight";
  next.sentAt = now;
  // The client_id doubles as the ref, so that an error names the message it refuses.
  const r = state.rooms.get(next.room);
  const files = next.files && next.files.length ? { attachments: next.files.map((f) => f.id) } : {};
  if (next.dmTo && !(r && r.msgs.size)) send({ type: "dm", to: next.dmTo, text: next.text, client_id: next.cid, ref: next.cid, ...files });
  else send({ type: "send", room: next.room, text: next.text, client_id: next.cid, ref: next.cid, ...files });
  state.pumpTimer = setTimeout(pump, 15000);
}

function localProblem(text) {
  const n = [...text.trim()].length;
  if (n > MAX_CHARS) return `Too long: ${n} characters; the limit is ${MAX_CHARS}.`;
  if (new TextEncoder().encode(text).length > MAX_FRAME_TEXT) return "Too long to send.";
  return null;
}

// The text and the finished uploads go together; while a file is still uploading, Send
// waits (the button is disabled, and Enter says why).
function submit() {
  const box = $("text");
  const text = box.value;
  if (uploading()) { status("Send waits until the uploads finish (or cancel them)."); return; }
  const files = state.uploads.filter((u) => u.status === "done").map(({ id, name, size, type }) => ({ id, name, size, type }));
  if (!text.trim() && !files.length) return;
  const r = room(state.current);
  const cid = "w" + Date.now().toString(36) + Math.random().toString(36).slice(2, 8);
  const problem = localProblem(text);
  state.outbox.push({ cid, room: r.name, text, files, dmTo: r.msgs.size === 0 && r.dmTo ? r.dmTo : null,
    status: problem ? "failed" : "queued", reason: problem, sentAt: 0 });
  saveOutbox();
  if (problem) showError("Not sent: " + problem);
  if (files.length) { state.uploads = state.uploads.filter((u) => u.status !== "done"); renderUploads(); }
  box.value = "";
  autosize();
  typingSent(); // a stored message tells the others I stopped typing
  state.stick = true;
  renderAll();
  pump();
}

function retryMessage(cid) {
  const p = state.outbox.find((x) => x.cid === cid);
  if (!p) return;
  const problem = localProblem(p.text);
  if (problem) { p.reason = problem; showError("Not sent: " + problem); renderAll(); return; }
  p.status = "queued";
  p.reason = null;
  saveOutbox();
  renderAll();
  pump();
}
function discardMessage(cid) {
  outboxDone.add(cid);
  state.outbox = state.outbox.filter((x) => x.cid !== cid);
  saveOutbox();
  renderAll();
  $("text").focus();
}
function editFailed(cid) {
  const p = state.outbox.find((x) => x.cid === cid);
  if (!p) return;
  const box = $("text");
  box.value = p.text + (box.value ? "\n" + box.value : "");
  // Its files wait in the composer again, ahead of any added since.
  const back = (p.files || []).filter((f) => !state.uploads.some((u) => u.id === f.id))
    .map((f) => ({ key: "u" + ++uploadSeq, file: null, name: f.name, size: f.size, type: f.type, status: "done", loaded: f.size, xhr: null, id: f.id, error: null, retry: false }));
  state.uploads = back.concat(state.uploads);
  renderUploads();
  discardMessage(cid);
  autosize();
}

// ---- connection -------------------------------------------------------------------

const online = () => state.ws && state.ws.readyState === WebSocket.OPEN && state.ws.ready;

function connect() {
  clearTimeout(state.reconnectTimer);
  state.reconnectTimer = null;
  if (!state.token) return;
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(`${proto}//${location.host}/ws?token=${encodeURIComponent(state.token)}`);
  const epoch = ++state.epoch;
  state.ws = ws;
  ws.onmessage = (ev) => {
    if (epoch !== state.epoch) return;
    let m;
    try { m = JSON.parse(ev.data); } catch (_) { return; }
    try { handle(m); } catch (e) { console.error(e); }
  };
  ws.onclose = (ev) => {
    if (epoch !== state.epoch) return;
    state.ws = null;
    document.documentElement.dataset.conn = "offline";
    // 4001: the token is dead (signed out elsewhere, expired, or the account suspended).
    if (ev.code === 4001) {
      if (state.signingOutAll) return;
      return logout(false, ev.reason === "account suspended"
        ? "This account is suspended."
        : "Your session ended (signed out from another device, or the password was changed). Sign in again.");
    }
    for (const r of state.rooms.values()) { r.joined = false; r.joining = 0; r.loadingOlder = false; }
    for (const p of state.outbox) if (p.status === "inflight") p.status = "queued";
    scheduleReconnect(ev.code);
    renderAll();
  };
}

// Jittered exponential backoff: 1 s doubling to 30 s, each wait drawn between half and
// all of it. A server going away (4002) is restarting: the waits start at 2 s (the first
// try after 1–2 s), so that its clients do not all knock at the same instant.
function scheduleReconnect(code) {
  if (code === 4002) state.restarting = true; // until the next hello
  const base = state.restarting ? 2000 : 1000;
  const ceiling = Math.min(30000, base * 2 ** Math.min(state.attempt, 10));
  const delay = Math.round(ceiling / 2 + Math.random() * (ceiling / 2));
  state.attempt++;
  state.reconnectAt = Date.now() + delay;
  const why = state.restarting ? "The server is restarting."
    : code === 4003 ? "An admin disconnected you." : "Connection lost.";
  setConn(`${why} Reconnecting in ${Math.ceil(delay / 1000)} s…`);
  clearTimeout(state.reconnectTimer);
  state.reconnectTimer = setTimeout(() => { setConn(`${why} Reconnecting…`); connect(); }, delay);
}

function send(obj) {
  if (state.ws && state.ws.readyState === WebSocket.OPEN) { state.ws.send(JSON.stringify(obj)); return true; }
  return false;
}

// A ref (at most 64 bytes) for a request whose reply or error needs to be told apart.
function ref(kind, roomName, extra) {
  const r = "r" + (++state.refSeq);
  state.refs.set(r, { kind, room: roomName, epoch: state.epoch, ...extra });
  return r;
}
function takeRef(r) {
  const v = r && state.refs.get(r);
  if (v) state.refs.delete(r);
  return v || null;
}

function setConn(text) {
  $("conn").hidden = !text;
  $("conn-state").textContent = text || "";
}

// One join per room per connection: with `since` when we hold messages (a catch-up).
function joinRoom(name, kind) {
  const r = room(name);
  if (r.joining === state.epoch) return;
  r.joining = state.epoch;
  const since = lastId(r);
  r.catchFrom = since;
  const msg = { type: "join", room: name, ref: ref(kind || "join", name) };
  if (since) msg.since = since;
  send(msg);
}

// A catch-up that did not hold everything: page forward from where it stopped.
function catchUp(r, after) {
  send({ type: "history", room: r.name, after, limit: 200, ref: ref("catchup", r.name) });
}

// ---- server events ----------------------------------------------------------------

function handle(m) {
  switch (m.type) {
    case "hello": {
      state.ws.ready = true;
      state.attempt = 0;
      state.restarting = false;
      document.documentElement.dataset.conn = "online";
      renderAll();
      setConn(null);
      setAdmin(!!m.admin);
      if (m.max_file_bytes > 0) maxFileBytes = m.max_file_bytes;
      for (const name of m.rooms) room(name).member = true;
      // Every room we hold messages of catches up once; the open one is joined for its
      // history and members.
      for (const r of state.rooms.values()) {
        if (r.member && r.msgs.size > 0 && r.name !== state.current) joinRoom(r.name);
      }
      const cur = room(state.current);
      if (!(cur.dmTo && cur.msgs.size === 0)) joinRoom(cur.name);
      // Rooms with unread messages this client holds none of are joined as well (DMs
      // first, a few), so that what waited reaches this device: it shows at once when
      // opened, and the senders see it delivered.
      const waiting = [...state.rooms.values()]
        .filter((r) => r.member && r.unread > 0 && r.msgs.size === 0 && r.name !== state.current && r.joining !== state.epoch)
        .sort((a, b) => Number(b.name.startsWith("dm:")) - Number(a.name.startsWith("dm:")));
      for (const r of waiting.slice(0, 20)) joinRoom(r.name);
      if (m.rooms_more || state.connectedBefore) loadRooms(!!m.rooms_more).then(renderRooms);
      state.connectedBefore = true;
      state.invites.clear();
      for (const i of m.invitations || []) { state.invites.set(i.room, i.by); know(i.by); }
      renderInvites();
      renderRooms();
      pump();
      break;
    }
    case "joined": onJoined(m); break;
    case "declined": takeRef(m.ref); if (state.invites.delete(m.room)) renderInvites(); break;
    case "members": {
      takeRef(m.ref);
      const r = room(m.room);
      const known = new Set(r.members);
      for (const x of m.members) {
        know(x.name);
        if (!known.has(x.name)) { r.members.push(x.name); known.add(x.name); }
        if (x.online) r.online.add(x.name); else r.online.delete(x.name);
        r.cursors[x.name] = Math.max(r.cursors[x.name] || 0, x.cursor || 0);
        if (x.last_seen) r.lastSeen[x.name] = x.last_seen;
      }
      if (m.members.length) r.membersAfter = m.members[m.members.length - 1].name;
      r.membersMore = !!m.more && m.members.length > 0;
      r.loadingMembers = false;
      if (m.room === state.current) renderMembers();
      break;
    }
    case "left": {
      const asked = takeRef(m.ref);
      state.rooms.delete(m.room);
      if (state.invites.delete(m.room)) renderInvites();
      if (m.removed_by) showError(`You were removed from #${m.room} by ${m.removed_by}.`);
      else if (asked) status(`You left ${label(m.room)}.`);
      for (const p of state.outbox) if (p.room === m.room) outboxDone.add(p.cid);
      state.outbox = state.outbox.filter((p) => p.room !== m.room);
      saveOutbox();
      if (state.current === m.room) switchRoom("general");
      renderRooms();
      break;
    }
    case "message": onMessage(m); break;
    case "edited": case "deleted": {
      const asked = takeRef(m.ref);
      const r = room(m.room);
      const msg = r.msgs.get(m.id);
      if (msg) {
        if (m.type === "edited") { msg.text = m.text; msg.edited = true; if (m.edited_at) msg.edited_at = m.edited_at; }
        else {
          msg.text = ""; msg.deleted = true; msg.reactions = {}; delete msg.mine; delete msg.attachments;
          if (state.picking && state.picking.id === m.id) state.picking = null;
        }
        if (m.room === state.current) renderAll();
      }
      if (asked && asked.kind === "delete") status("Message deleted.");
      break;
    }
    case "typing": onTyping(m); break;
    case "reacted": onReacted(m); break;
    case "reactors": onReactors(m); break;
    case "presence": {
      const r = room(m.room);
      know(m.user);
      if (m.status === "online") {
        if (!r.online.has(m.user)) r.onlineCount += 1;
        r.online.add(m.user);
      } else {
        r.online.delete(m.user);
        r.onlineCount = Math.max(0, r.onlineCount - 1);
        r.lastSeen[m.user] = m.last_seen;
        r.typing.delete(m.user);
      }
      r.onlineCount = Math.max(r.onlineCount, r.online.size);
      if (m.status === "online" && !r.members.includes(m.user) && !r.membersMore) { r.members.push(m.user); r.memberCount += 1; }
      if (m.room === state.current) { renderMembers(); renderTyping(); }
      break;
    }
    case "seen": case "delivered": {
      takeRef(m.ref);
      const r = room(m.room);
      const cursors = m.type === "seen" ? r.cursors : r.delivered;
      cursors[m.user] = Math.max(cursors[m.user] || 0, m.id);
      if (m.room === state.current && !same(m.user, state.me)) renderAll();
      break;
    }
    case "invited": {
      takeRef(m.ref);
      // The inviter gets the same event (naming the invitee) as the reply.
      if (m.user && !same(m.user, state.me)) {
        $("invite-status").textContent = `Invited ${m.user}.`;
        status(`Invited ${m.user} to ${label(m.room)}.`);
        break;
      }
      know(m.by);
      state.invites.set(m.room, m.by);
      renderInvites();
      announce(`${m.by} invited you to ${m.room}`);
      break;
    }
    case "history": onHistory(m); break;
    case "error": onError(m); break;
  }
}

function onJoined(m) {
  const asked = takeRef(m.ref);
  const r = room(m.room);
  Object.assign(r, { private: m.private, owner: m.owner, members: m.members,
    online: new Set(m.online), cursors: m.cursors || {}, delivered: m.delivered || {}, lastSeen: m.last_seen || {},
    member: true, joined: true, loadingMembers: false,
    memberCount: m.member_count ?? m.members.length, onlineCount: m.online_count ?? m.online.length,
    membersMore: !!m.members_more, membersAfter: m.members.length ? m.members[m.members.length - 1] : "" });
  for (const n of m.members) know(n);
  const fresh = r.msgs.size === 0;
  const before = new Set(r.msgs.keys());
  for (const msg of m.history) r.msgs.set(msg.id, msg);
  // What the server already holds of my cursors is not sent again.
  if (r.cursors[state.me] !== undefined) ackState(r, "seen").sent = r.cursors[state.me];
  if (r.delivered[state.me] !== undefined) ackState(r, "delivered").sent = r.delivered[state.me];
  // A catch-up (a reconnect) counts towards the room's unread badge like live messages.
  if (m.room !== state.current && r.catchFrom) {
    const mine = r.cursors[state.me];
    if (mine !== undefined) r.unread = Math.max(r.unread, unreadAfter(r, mine));
    else r.unread += m.history.filter((x) => !before.has(x.id) && counts(x)).length;
  }
  received(r);
  if (fresh) r.hasMore = m.history.length >= PAGE;
  if (m.complete === false) {
    r.hasMore = true;
    if (m.continue_after !== undefined && r.catchFrom) catchUp(r, m.continue_after);
  }
  if (state.invites.delete(m.room)) renderInvites();
  renderRooms();
  const open = (asked && (asked.kind === "accept" || asked.kind === "open" || asked.kind === "create"))
    || state.accepting === m.room;
  if (asked && asked.kind === "accept") state.accepting = null;
  if (m.room === state.current) $("messages").setAttribute("aria-busy", "false");
  if (open && state.current !== m.room) switchRoom(m.room);
  else if (m.room === state.current) {
    $("room-title").textContent = label(m.room);
    renderAll(); renderMembers(); renderHead(); markSeen(); fillIfShort();
    if (state.jumpTo) jump(state.jumpTo);
  }
  if (asked && asked.kind === "create" && m.private) openInvite(m.room);
  // Messages written in this room before it was joined (a reload) can go now.
  pump();
}

function onHistory(m) {
  const asked = takeRef(m.ref);
  if (asked && asked.epoch !== state.epoch) return;
  const r = room(m.room);
  let fresh = 0;
  for (const msg of m.messages) { if (!r.msgs.has(msg.id) && counts(msg)) fresh++; r.msgs.set(msg.id, msg); know(msg.user); }
  if (asked && asked.kind === "catchup") {
    if (m.room !== state.current) r.unread += fresh;
    received(r);
    const last = m.messages.length ? m.messages[m.messages.length - 1].id : 0;
    if (m.has_more && last) catchUp(r, last);
  } else {
    r.loadingOlder = false;
    r.hasMore = !!m.has_more;
  }
  if (m.room === state.current) {
    renderAll();
    if (state.jumpTo) jump(state.jumpTo);
    markSeen();
    // Still not enough to scroll (or the user kept scrolling up): the next page.
    fillIfShort();
  }
  renderRooms();
}

function onError(m) {
  if (m.ref === "typing") return; // a typing notice past its budget is simply dropped
  const p = m.ref && state.outbox.find((x) => x.cid === m.ref);
  if (p) {
    if (m.code === "rate_limited" || m.code === "overloaded") {
      // Goes again once the server says it may (same client_id: stored once).
      p.status = "queued";
      const wait = Math.max(50, Number(m.retry_after_ms) || 1000) + Math.floor(Math.random() * 30);
      state.pausedUntil = Date.now() + wait;
      state.bucket.tokens = 0;
      state.bucket.at = Date.now();
      pump();
      return;
    }
    p.status = "failed";
    p.reason = m.code === "too_long" ? `Too long; the limit is ${MAX_CHARS} characters.` : (m.message || m.code);
    saveOutbox();
    if (p.room === state.current) renderAll();
    showError("Not sent: " + p.reason);
    pump();
    return;
  }
  const asked = takeRef(m.ref);
  if (asked && asked.epoch !== state.epoch) return;
  if (asked && (asked.kind === "seen" || asked.kind === "delivered")) {
    // A receipt past the budget goes again later; any other refusal is not news.
    if (m.code === "rate_limited") {
      const r = room(asked.room), a = ackState(r, asked.kind);
      a.sent = Math.min(a.sent, asked.prev);
      setTimeout(() => ack(r, asked.kind, 0), Math.max(100, Number(m.retry_after_ms) || 1000));
    }
    return;
  }
  if (asked && (asked.kind === "edit" || asked.kind === "delete") && m.code === "rate_limited") {
    setTimeout(() => send({ ...asked.req, ref: ref(asked.kind, asked.room, { req: asked.req, was: asked.was }) }),
      Math.max(50, Number(m.retry_after_ms) || 1000));
    return;
  }
  if (asked && asked.kind === "edit") {
    // Refused: the message shows what the server holds again.
    const msg = room(asked.room).msgs.get(asked.req.id);
    if (msg && asked.was && msg.text === asked.req.text.trim()) Object.assign(msg, asked.was);
    if (asked.room === state.current) renderAll();
    showError("Not saved: " + (m.message || m.code));
    return;
  }
  if (asked && asked.kind === "reactors") {
    // The names are not news worth an error: the tooltip says they could not be had.
    reactorsCache.set(asked.key, { failed: true, at: Date.now() });
    refreshTip(asked.key);
    return;
  }
  if (asked && asked.kind === "react" && m.code !== "rate_limited") {
    showError("Reaction not saved: " + (m.code === "bad_request" && /reactions/.test(m.message || "")
      ? "this message has as many different reactions as it can take."
      : m.code === "no_such_message" ? "the message was deleted." : (m.message || m.code)));
    return;
  }
  if (asked && asked.kind === "older") {
    const r = room(asked.room);
    r.loadingOlder = false;
    if (m.code === "rate_limited") setTimeout(loadOlder, Math.max(100, Number(m.retry_after_ms) || 1000));
    return;
  }
  if (asked && asked.kind === "catchup" && m.code === "rate_limited") {
    const r = room(asked.room);
    const from = lastId(r) || r.catchFrom;
    setTimeout(() => catchUp(r, from), Math.max(100, Number(m.retry_after_ms) || 1000));
    return;
  }
  if (asked && (asked.kind === "join" || asked.kind === "open") && m.code === "rate_limited") {
    const r = room(asked.room);
    r.joining = 0;
    setTimeout(() => joinRoom(asked.room, asked.kind), Math.max(100, Number(m.retry_after_ms) || 1000));
    return;
  }
  if (asked && asked.kind === "decline" && m.code === "no_such_room") {
    if (state.invites.delete(asked.room)) renderInvites();
    return;
  }
  if (asked && asked.kind === "accept") { state.accepting = null; renderInvites(); }
  if (asked && asked.kind === "members") room(asked.room).loadingMembers = false;
  if (asked && asked.kind === "invite") {
    $("invite-status").textContent = m.code === "bad_request" ? `No user named “${asked.user}”.` : m.message;
    showError(`Could not invite ${asked.user}: ${m.message}`);
    return;
  }
  if (asked && asked.kind === "create") {
    showError(m.code === "bad_request" ? `Could not create #${asked.room}: the name is taken.` : `Could not create #${asked.room}: ${m.message}`);
    return;
  }
  if (asked && (asked.kind === "join" || asked.kind === "open") && state.rooms.has(asked.room)) {
    const r = state.rooms.get(asked.room);
    if (!r.msgs.size && !r.joined) { state.rooms.delete(asked.room); if (state.current === asked.room) switchRoom("general"); renderRooms(); }
  }
  if (m.code === "rate_limited") { status("Slow down a little."); return; }
  showError(m.message || m.code);
}

function onMessage(m) {
  const r = room(m.room);
  r.member = true;
  know(m.user);
  const known = r.msgs.has(m.id);
  // A live `message` carries no reactions: one this client holds keeps what it knows.
  const old = r.msgs.get(m.id);
  if (old && !m.mine && !Object.keys(m.reactions || {}).length) { m.reactions = old.reactions; if (old.mine) m.mine = old.mine; }
  r.msgs.set(m.id, m);
  if (m.client_id && same(m.user, state.me)) {
    const i = state.outbox.findIndex((p) => p.cid === m.client_id);
    if (i >= 0) {
      const p = state.outbox[i];
      state.outbox.splice(i, 1);
      outboxDone.add(p.cid);
      saveOutbox();
      // A conversation started by this message: joined now for its members and receipts.
      if (p.dmTo) { r.dmTo = null; if (m.room === state.current) joinRoom(m.room); }
      pump();
    }
  }
  if (!same(m.user, state.me)) received(r);
  if (m.room === state.current) {
    if (!known && !state.stick && !same(m.user, state.me)) state.unseenBelow += 1;
    if (r.typing.delete(m.user)) renderTyping();
    renderAll();
    markSeen();
  } else {
    r.typing.delete(m.user);
    if (!known && counts(m)) r.unread += 1;
  }
  if (!known && !same(m.user, state.me)) announce(`${m.user} in ${label(m.room)}: ${m.deleted ? "message deleted" : withFiles(m)}`);
  renderRooms();
}

function onTyping(m) {
  const r = room(m.room);
  const key = m.room + "/" + m.user;
  clearTimeout(state.typingTimers.get(key));
  if (m.active) {
    r.typing.set(m.user, true);
    // Someone typing says so again every ~3 s; silence for 7 s means they stopped.
    state.typingTimers.set(key, setTimeout(() => { r.typing.delete(m.user); renderTyping(); }, 7000));
  } else {
    r.typing.delete(m.user);
  }
  if (m.room === state.current) renderTyping();
}

// ---- receipts ---------------------------------------------------------------------
// Two cumulative cursors per room, each sent at most once a second per room (a burst of
// messages becomes one frame for the latest): `delivered` for what reached this client
// (live or caught up), `seen` for what was actually on screen: an IntersectionObserver
// watches other people's messages in the list, and only those at least half in view
// (or filling half the list) while the page is visible count. Opening a room scrolled
// away from a message does not mark it seen.
const ACK_INTERVAL = 1000;
const RECEIPTS_MAX_MEMBERS = 50; // the server tells receipts only in rooms this small
const counts = (msg) => !msg.deleted && !same(msg.user, state.me);
function unreadAfter(r, cursor) {
  let n = 0;
  for (const msg of r.msgs.values()) if (msg.id > cursor && counts(msg)) n++;
  return n;
}
function ackState(r, kind) {
  return r.acks[kind] || (r.acks[kind] = { sent: 0, want: 0, at: 0, timer: null });
}
function ack(r, kind, id) {
  const a = ackState(r, kind);
  if (id > a.want) a.want = id;
  if (a.want <= a.sent || a.timer) return;
  const flush = () => {
    a.timer = null;
    if (a.want <= a.sent || !r.member || !online()) return; // the next join sends it
    a.at = Date.now();
    send({ type: kind, room: r.name, id: a.want, ref: ref(kind, r.name, { prev: a.sent }) });
    a.sent = a.want;
  };
  const wait = a.at + ACK_INTERVAL - Date.now();
  if (wait <= 0) flush(); else a.timer = setTimeout(flush, wait);
}
// Everything held of the room has reached this client.
function received(r) {
  let top = 0;
  for (const msg of r.msgs.values()) if (msg.id > top && !same(msg.user, state.me)) top = msg.id;
  if (top) ack(r, "delivered", top);
}

const inView = new Set(); // message elements of others at least half in view
const seenObserver = new IntersectionObserver((entries) => {
  for (const e of entries) {
    const rootH = e.rootBounds ? e.rootBounds.height : Infinity;
    if (e.isIntersecting && (e.intersectionRatio >= 0.5 || e.intersectionRect.height >= rootH / 2)) inView.add(e.target);
    else inView.delete(e.target);
  }
  markSeen();
}, { root: $("messages"), threshold: [0, 0.25, 0.5, 0.75, 1] });
const observed = new Set();
function observeMessages() {
  for (const n of observed) if (!n.isConnected) { seenObserver.unobserve(n); observed.delete(n); inView.delete(n); }
  for (const n of $("messages").querySelectorAll(".msg[id]:not(.mine)")) {
    if (!observed.has(n)) { seenObserver.observe(n); observed.add(n); }
  }
}

// The open room: its badge is cleared, and the newest message of someone else that is
// in view moves the read cursor.
function markSeen() {
  const r = room(state.current);
  if (r.unread) { r.unread = 0; renderRooms(); }
  if (document.hidden || !r.joined) return;
  let top = 0;
  for (const n of inView) {
    if (!n.isConnected || n.dataset.room !== r.name) continue;
    const id = Number(n.id.slice(1));
    if (id > top) top = id;
  }
  if (!top || (r.cursors[state.me] || 0) >= top) return;
  r.cursors[state.me] = top;
  ack(r, "seen", top);
}

// Ticks on my messages, in DMs and rooms of at most 50 members: ✓ stored, ✓✓ reached
// every other member's delivery cursor, ✓✓ in colour once every other member has seen
// it. The accessible text names who has seen it.
function receiptInfo(r, msg) {
  const dm = r.name.startsWith("dm:");
  const count = Math.max(r.memberCount || 0, r.members.length);
  if (!dm && (count > RECEIPTS_MAX_MEMBERS || r.membersMore)) return null;
  const others = r.members.filter((u) => !same(u, state.me) && u !== DELETED_USER);
  const seen = others.filter((u) => (r.cursors[u] || 0) >= msg.id).sort();
  const delivered = others.length > 0 && others.every((u) => Math.max(r.delivered[u] || 0, r.cursors[u] || 0) >= msg.id);
  const level = others.length > 0 && seen.length === others.length ? "seen" : delivered ? "delivered" : "sent";
  return { level, seen };
}
function receipt(info) {
  const s = el("span", "receipt " + info.level, info.level === "sent" ? "✓" : "✓✓");
  const who = info.seen.join(", ");
  s.title = info.level === "seen" ? "Seen by " + who
    : (info.level === "sent" ? "Sent" : "Delivered") + (who ? ". Seen by " + who : "");
  s.setAttribute("role", "img");
  s.setAttribute("aria-label", s.title);
  return s;
}

// ---- typing -----------------------------------------------------------------------
// `active: true` when typing starts and again every 3 s while it goes on (never more
// than one notice per 500 ms, the server's 2/s); `active: false` after 4 s without a keystroke, when the box
// is emptied, or the room changes. Sending a message needs no notice: the stored
// message tells the others.

function sendTyping(roomName, active) {
  const t = state.typing;
  t.lastSent = Date.now();
  t.active = active;
  t.room = roomName;
  send({ type: "typing", room: roomName, active, ref: "typing" });
}
function typingSent() {
  const t = state.typing;
  t.active = false;
  clearTimeout(t.idle);
  clearTimeout(t.due);
  t.due = null;
}
function stopTyping() {
  const t = state.typing;
  clearTimeout(t.idle);
  clearTimeout(t.due);
  t.due = null;
  if (t.active) sendTyping(t.room, false);
}
function typed() {
  autosize();
  const r = room(state.current);
  if (r.dmTo && r.msgs.size === 0) return;
  const t = state.typing;
  if (!$("text").value.trim()) { stopTyping(); return; }
  if (t.active && t.room !== r.name) stopTyping();
  const now = Date.now();
  const due = !t.active || now - t.lastSent >= 3000;
  if (due && !t.due) {
    const wait = Math.max(0, t.lastSent + 500 - now);
    const go = () => { t.due = null; if ($("text").value.trim()) sendTyping(state.current, true); };
    if (wait === 0) go(); else t.due = setTimeout(go, wait);
  }
  clearTimeout(t.idle);
  t.idle = setTimeout(stopTyping, 4000);
}

// ---- the message list -------------------------------------------------------------

function dayLabel(d) {
  const today = new Date(); today.setHours(0, 0, 0, 0);
  const day = new Date(d); day.setHours(0, 0, 0, 0);
  const diff = Math.round((today - day) / 86400000);
  if (diff === 0) return "Today";
  if (diff === 1) return "Yesterday";
  return d.toLocaleDateString(undefined, { weekday: "short", year: "numeric", month: "short", day: "numeric" });
}
const fullDate = (d) => d.toLocaleString(undefined, { weekday: "long", year: "numeric", month: "long", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit" });

// A URL ends before trailing punctuation, and before a closing bracket it did not open.
function linkify(parent, text) {
  const re = /https?:\/\/[^\s<>"]+/g;
  let last = 0;
  for (const m of text.matchAll(re)) {
    let url = m[0];
    for (;;) {
      const c = url[url.length - 1];
      if (".,;:!?'*".includes(c)) { url = url.slice(0, -1); continue; }
      const pairs = { ")": "(", "]": "[", "}": "{" };
      if (pairs[c] && url.split(pairs[c]).length <= url.split(c).length - 1) { url = url.slice(0, -1); continue; }
      break;
    }
    if (url.length <= "https://".length) continue;
    parent.append(document.createTextNode(text.slice(last, m.index)));
    const a = el("a", "", url);
    a.href = url;
    a.target = "_blank";
    a.rel = "noopener noreferrer";
    parent.append(a);
    last = m.index + url.length;
  }
  parent.append(document.createTextNode(text.slice(last)));
}

const atBottom = (box) => box.scrollHeight - box.scrollTop - box.clientHeight < 40;

// The list is rendered by key: a message whose look did not change keeps its element, so
// an edit box, a confirmation or the focus survive new messages, and older pages are
// inserted above without touching the rest. The view stays anchored on the first
// message in sight unless it follows the bottom.
function renderAll() {
  const r = room(state.current);
  const box = $("messages");
  let anchorId = null, anchorTop = 0;
  if (!state.stick) {
    const top = box.getBoundingClientRect().top;
    for (const n of box.querySelectorAll(".msg[id]")) {
      const b = n.getBoundingClientRect();
      if (b.bottom > top) { anchorId = n.id; anchorTop = b.top - top; break; }
    }
  }
  // A reaction control that had the focus has it again in its message's new element.
  const active = document.activeElement;
  const fkey = active && active.dataset ? active.dataset.fkey : null;
  const fmsg = fkey ? active.closest(".msg[id]") : null;
  const nodes = [];
  const keep = (key, sig, build) => {
    const c = r.nodes.get(key);
    if (c && c.sig === sig) { nodes.push(c.node); return; }
    const node = build();
    r.nodes.set(key, { node, sig });
    nodes.push(node);
  };
  if (!r.hasMore && r.msgs.size) keep("begin", "b" + r.name, () => el("div", "day begin", "This is the beginning of " + label(r.name)));
  else if (r.msgs.size) keep("loader", "l", () => el("div", "day loader", "Scroll up for older messages"));
  const ids = [...r.msgs.keys()].sort((a, b) => a - b);
  let lastDay = "", prev = null;
  const live = new Set(["begin", "loader"]);
  for (const id of ids) {
    const msg = r.msgs.get(id);
    const when = new Date(msg.ts);
    const day = dayLabel(when);
    if (day !== lastDay) { keep("day:" + day, day, () => el("div", "day", day)); live.add("day:" + day); lastDay = day; prev = null; }
    const first = !prev || prev.user !== msg.user || when - new Date(prev.ts) > 5 * 60000;
    const editing = state.editing && state.editing.id === id;
    const mine = same(msg.user, state.me);
    const sig = JSON.stringify([first, mine, msg.deleted, editing || msg.text, msg.edited, state.admin,
      state.confirming === id, mine && !msg.deleted ? receiptInfo(r, msg) : 0,
      msg.deleted ? 0 : [msg.reactions, msg.mine, state.picking && state.picking.id === id ? state.picking.more : null, msg.attachments]]);
    keep("m" + id, sig, () => renderMessage(r, msg, when, first));
    live.add("m" + id);
    prev = msg;
  }
  const pending = state.outbox.filter((p) => p.room === r.name);
  if (!r.msgs.size && !pending.length && (r.joined || r.dmTo)) {
    keep("empty", "e" + r.name, () => el("div", "day", r.dmTo ? `This is the start of your conversation with ${r.dmTo}.` : `No messages in ${label(r.name)} yet. Say hello!`));
    live.add("empty");
  }
  for (const p of pending) {
    keep("p" + p.cid, JSON.stringify([p.status, p.reason, p.text, p.files, online()]), () => renderPending(p));
    live.add("p" + p.cid);
  }
  for (const k of r.nodes.keys()) if (!live.has(k)) r.nodes.delete(k);
  // Keyed reconciliation: only nodes out of place are moved.
  let cur = box.firstChild;
  for (const n of nodes) {
    if (n === cur) { cur = cur.nextSibling; continue; }
    box.insertBefore(n, cur);
  }
  while (cur) { const next = cur.nextSibling; cur.remove(); cur = next; }
  if (fmsg && !active.isConnected) {
    const again = document.getElementById(fmsg.id);
    const to = again && (again.querySelector(`[data-fkey="${CSS.escape(fkey)}"]`) || again.querySelector(".react-add"));
    if (to) to.focus(); else box.focus();
  }
  observeMessages();
  if (state.stick) box.scrollTop = box.scrollHeight;
  else if (anchorId && document.getElementById(anchorId)) {
    box.scrollTop += document.getElementById(anchorId).getBoundingClientRect().top - box.getBoundingClientRect().top - anchorTop;
  }
  renderPill();
}

// Fewer messages than fill the list: no scrolling is possible, so the next page comes now.
function fillIfShort() {
  const box = $("messages");
  const r = room(state.current);
  if (r.hasMore && box.scrollHeight <= box.clientHeight + 20) loadOlder();
}

function renderPill() {
  const pill = $("new-pill");
  pill.hidden = state.stick || state.unseenBelow === 0;
  const n = state.unseenBelow;
  pill.textContent = n === 1 ? "1 new message ↓" : `${n} new messages ↓`;
}

function renderPending(p) {
  const d = el("div", "msg mine first pending" + (p.status === "failed" ? " failed" : ""));
  d.dataset.cid = p.cid;
  const files = p.files || [];
  const line = el("div", "line");
  if (p.text.trim() || !files.length) {
    const bubble = el("div", "bubble");
    linkify(bubble, p.text);
    line.append(bubble);
  }
  if (files.length) line.append(attachmentList(files));
  const tools = el("div", "tools");
  if (p.status === "failed") {
    tools.append(el("span", "reason", "Not sent: " + (p.reason || "failed")));
    tools.append(button("Retry", "", () => retryMessage(p.cid), "Retry sending this message"),
      button("Edit", "", () => editFailed(p.cid), "Edit this message in the composer"),
      button("Discard", "", () => discardMessage(p.cid), "Discard this message"));
  } else {
    tools.append(el("span", "sending", online() ? "sending…" : "not sent yet: waiting for the connection"));
  }
  d.append(line, tools);
  return d;
}

function timeEl(when, cls) {
  const t = el("time", "when" + (cls ? " " + cls : ""));
  t.dateTime = when.toISOString();
  t.tabIndex = 0;
  const full = fullDate(when);
  t.title = full;
  t.setAttribute("aria-label", full);
  t.append(el("span", "short", when.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" })),
    el("span", "full", full));
  return t;
}

function renderMessage(r, msg, when, first) {
  const mine = same(msg.user, state.me);
  const d = el("div", "msg" + (mine ? " mine" : "") + (msg.deleted ? " deleted" : "") + (first ? " first" : ""));
  d.id = "m" + msg.id;
  d.dataset.room = r.name;
  if (first) {
    const meta = el("div", "meta");
    // A deleted account's messages come back as "deleted user" placeholders.
    const gone = msg.user === DELETED_USER;
    meta.append(el("span", "who" + (gone ? " gone" : ""), mine ? "You" : msg.user), document.createTextNode(" "), timeEl(when));
    d.append(meta);
  }
  // The words in a bubble (none when a message is only files), its files under them.
  const files = msg.deleted ? [] : msg.attachments || [];
  const editing = state.editing && state.editing.id === msg.id;
  if (editing) {
    d.append(editBox(msg));
    if (files.length) d.append(attachmentList(files));
    return d;
  }
  const line = el("div", "line");
  if (msg.deleted || msg.text || !files.length) {
    const bubble = el("div", "bubble");
    if (msg.deleted) bubble.textContent = "message deleted";
    else linkify(bubble, msg.text);
    line.append(bubble);
  }
  if (files.length) line.append(attachmentList(files));
  // Beside the bubble, shown on hover or focus: the time (after the first of a group) and,
  // while there are no reactions, the add-reaction button.
  const rail = el("div", "rail");
  const chips = reactionList(msg);
  if (!msg.deleted && !chips.length) rail.append(addReactionButton(msg));
  if (!first) rail.append(timeEl(when, "ghost"));
  if (rail.childNodes.length) line.append(rail);
  d.append(line);
  if (!msg.deleted && chips.length) d.append(reactionBar(msg, chips));
  if (!msg.deleted && state.picking && state.picking.id === msg.id) d.append(reactionPicker(msg));
  const tools = el("div", "tools");
  if (msg.edited && !msg.deleted) tools.append(el("span", "", "edited"));
  if (state.confirming === msg.id && !msg.deleted) {
    const q = el("span", "confirm-q", mine ? "Delete this message?" : `Delete ${msg.user}'s message? (admin, audited)`);
    const yes = button("Delete", "danger-link", () => deleteMessage(msg), "Confirm delete");
    const no = button("Cancel", "", () => { state.confirming = null; renderAll(); focusIn(msg.id, ".del"); });
    no.onkeydown = yes.onkeydown = (e) => { if (e.key === "Escape") { e.stopPropagation(); no.click(); } };
    tools.append(q, yes, no);
    queueMicrotask(() => no.focus());
  } else if (!msg.deleted && (mine || state.admin)) {
    if (mine) tools.append(button("Edit", "edit-btn", () => startEdit(msg), "Edit message"));
    const del = button("Delete", "del" + (mine ? "" : " mod"), () => { state.confirming = msg.id; renderAll(); },
      mine ? "Delete message" : `Delete ${msg.user}'s message (admin)`);
    tools.append(del);
  }
  const info = mine && !msg.deleted && receiptInfo(r, msg);
  if (info) tools.append(receipt(info));
  if (tools.childNodes.length) d.append(tools);
  return d;
}

function focusIn(id, sel) {
  const n = document.getElementById("m" + id);
  const t = n && n.querySelector(sel);
  if (t) t.focus(); else $("messages").focus();
}

function editBox(msg) {
  const wrap = el("div", "edit");
  const ta = el("textarea");
  ta.value = state.editing.draft ?? msg.text;
  ta.rows = Math.min(8, ta.value.split("\n").length + 1);
  ta.setAttribute("aria-label", "Edit message");
  ta.oninput = () => { state.editing.draft = ta.value; };
  const save = () => {
    const text = ta.value;
    state.editing = null;
    if (text.trim() && text.trim() !== msg.text) {
      const problem = localProblem(text);
      if (problem) { showError("Not saved: " + problem); state.editing = { id: msg.id, draft: text }; renderAll(); return; }
      const req = { type: "edit", id: msg.id, text };
      send({ ...req, ref: ref("edit", msg.room, { req, was: { text: msg.text, edited: msg.edited } }) });
      msg.text = text.trim();
      msg.edited = true;
    }
    renderAll();
    focusIn(msg.id, ".edit-btn");
  };
  const cancel = () => { state.editing = null; renderAll(); focusIn(msg.id, ".edit-btn"); };
  ta.onkeydown = (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); save(); }
    else if (e.key === "Escape") { e.preventDefault(); e.stopPropagation(); cancel(); }
  };
  const row = el("div", "tools");
  row.append(el("span", "", "Enter saves · Esc cancels"), button("Save", "", save), button("Cancel", "", cancel));
  wrap.append(ta, row);
  queueMicrotask(() => { ta.focus(); ta.selectionStart = ta.selectionEnd = ta.value.length; });
  return wrap;
}

function startEdit(msg) {
  state.editing = { id: msg.id, draft: null };
  state.confirming = state.picking = null;
  renderAll();
}

function deleteMessage(msg) {
  state.confirming = null;
  const req = { type: "delete", id: msg.id };
  send({ ...req, ref: ref("delete", msg.room, { req }) });
  renderAll();
  $("messages").focus();
}

function loadOlder() {
  const r = room(state.current);
  if (!r.hasMore || r.loadingOlder || !r.msgs.size || !online()) return;
  r.loadingOlder = true;
  send({ type: "history", room: r.name, before: firstId(r), limit: PAGE, ref: ref("older", r.name) });
}

function onListScroll() {
  const box = $("messages");
  const was = state.stick;
  state.stick = atBottom(box);
  if (state.stick) { state.unseenBelow = 0; if (!was) markSeen(); }
  renderPill();
  if (box.scrollTop < 300) loadOlder();
}

function scrollToBottom() {
  state.stick = true;
  state.unseenBelow = 0;
  const box = $("messages");
  box.scrollTop = box.scrollHeight;
  renderPill();
  markSeen();
}

function renderTyping() {
  const r = room(state.current);
  const who = [...r.typing.keys()].filter((u) => !same(u, state.me));
  $("typing").textContent = who.length === 0 ? "" : who.length === 1 ? `${who[0]} is typing…`
    : who.length <= 3 ? `${who.join(", ")} are typing…` : "Several people are typing…";
}

// Scroll to message `id` of the open room, loading older pages until it is there.
function jump(id) {
  const target = document.getElementById("m" + id);
  if (!target) {
    state.jumpTo = id;
    const r = room(state.current);
    if (r.joined && r.msgs.size && r.hasMore && firstId(r) > id) loadOlder();
    return;
  }
  state.jumpTo = null;
  state.stick = false;
  target.classList.add("highlight");
  target.scrollIntoView({ block: "center" });
  setTimeout(() => target.classList.remove("highlight"), 2500);
}

// ---- reactions --------------------------------------------------------------------
// Under a message, a chip per emoji with its count, pressed when one of them is mine;
// a click (or Enter, Space) adds or takes back mine. Counts change only when the server
// says so (`reacted`, to the whole room); whether one is mine is known from `mine` in
// history and from `reacted` events naming me. Hovering or focusing a chip shows who
// reacted (one `reactors` page, kept for a little while). The add button opens a picker
// under the message: six quick ones and, behind "More", a few dozen in groups; arrow
// keys move, Enter picks, Escape (or Tab) closes and gives the focus back.

const QUICK_REACTIONS = ["👍", "❤️", "😂", "🎉", "😮", "😢"];
const REACTION_GROUPS = [
  ["Smileys", "😀 😃 😄 😁 😅 🤣 😊 😇 🙂 😉 😍 🥰 😘 😎 🤩 🥳 🤔 🤨 😐 🙄 😏 😴 😬 🤯 😱 😡 🥺 😭"],
  ["Gestures", "👍 👎 👏 🙌 🙏 🤝 👋 ✌️ 🤞 👌 💪 👀"],
  ["Symbols", "❤️ 🧡 💛 💚 💙 💜 💯 ✅ ❌ ⚠️ ❓ ❗ ✨ 🔥 ⭐ 💡"],
  ["Things", "🎉 🎊 🚀 ☕ 🍕 🍺 🐛 🏆 📌 🔔 ⏰ 💻"],
].map(([name, list]) => [name, list.split(" ")]);
const REACTORS_TTL = 30000;
const reactorsCache = new Map(); // "id emoji" -> {users, more, at} | {loading} | {failed, at}

const isMine = (msg, emoji) => (msg.mine || []).includes(emoji);
function reactionList(msg) {
  if (msg.deleted) return [];
  return Object.entries(msg.reactions || {}).filter(([, n]) => n > 0);
}

function react(msg, emoji, on) {
  const req = { type: "react", id: msg.id, emoji, on };
  if (!online()) { showError("Reaction not sent: not connected."); return; }
  send({ ...req, ref: ref("react", msg.room, { req }) });
}

function onReacted(m) {
  takeRef(m.ref);
  const key = m.id + " " + m.emoji;
  reactorsCache.delete(key);
  const r = state.rooms.get(m.room);
  const msg = r && r.msgs.get(m.id);
  if (!msg || msg.deleted) return;
  const reactions = { ...(msg.reactions || {}) };
  if (m.count > 0) reactions[m.emoji] = m.count; else delete reactions[m.emoji];
  msg.reactions = reactions;
  if (same(m.user, state.me)) {
    const mine = new Set(msg.mine || []);
    if (m.on && m.count > 0) mine.add(m.emoji); else mine.delete(m.emoji);
    msg.mine = [...mine];
  }
  if (m.room === state.current) renderAll();
  if (state.tip === key) refreshTip(key);
}

function onReactors(m) {
  const asked = takeRef(m.ref);
  const key = m.id + " " + m.emoji;
  if (asked && asked.key !== key) return;
  reactorsCache.set(key, { users: m.users || [], more: !!m.more, at: Date.now() });
  refreshTip(key);
}

// Who reacted, for the tooltip: asked for when not known or older than REACTORS_TTL.
function reactorsText(msg, emoji, count) {
  const key = msg.id + " " + emoji;
  const c = reactorsCache.get(key);
  if (!c || (c.at && Date.now() - c.at > REACTORS_TTL)) {
    if (online()) {
      reactorsCache.set(key, { loading: true });
      send({ type: "reactors", id: msg.id, emoji, ref: ref("reactors", msg.room, { key }) });
    } else reactorsCache.delete(key);
    return "Loading who reacted…";
  }
  if (c.loading) return "Loading who reacted…";
  if (c.failed) return "Could not load who reacted; try again in a moment.";
  const names = c.users.map((u) => (same(u, state.me) ? "you" : u));
  const rest = c.more ? Math.max(count - names.length, 1) : 0;
  if (!names.length) return `${emoji} ${count}`;
  const list = rest ? `${names.join(", ")} and ${rest} more`
    : names.length === 1 ? names[0] : `${names.slice(0, -1).join(", ")} and ${names[names.length - 1]}`;
  return `${list} reacted with ${emoji}`;
}

// The tooltip of one chip: inside its reaction bar, above the chip (below it when the
// chip is near the top of the list), and named as the chip's description.
function showTip(chip) {
  const bar = chip.parentElement;
  if (!chip.isConnected || !bar) return;
  const msgEl = chip.closest(".msg[id]");
  const r = room(state.current);
  const msg = r.msgs.get(Number(msgEl.id.slice(1)));
  if (!msg) return;
  const emoji = chip.dataset.emoji;
  state.tip = msg.id + " " + emoji;
  for (const old of document.querySelectorAll(".react-tip")) if (old.dataset.key !== state.tip) hideTipEl(old);
  let tip = bar.querySelector(".react-tip");
  if (!tip) {
    tip = el("span", "react-tip");
    tip.setAttribute("role", "tooltip");
    tip.id = "tip-" + msg.id;
    bar.append(tip);
  }
  tip.dataset.key = state.tip;
  tip.textContent = reactorsText(msg, emoji, (msg.reactions || {})[emoji] || 0);
  chip.setAttribute("aria-describedby", tip.id);
  const mine = msgEl.classList.contains("mine");
  tip.style.left = mine ? "auto" : chip.offsetLeft + "px";
  tip.style.right = mine ? Math.max(0, bar.clientWidth - chip.offsetLeft - chip.offsetWidth) + "px" : "auto";
  const nearTop = chip.getBoundingClientRect().top - $("messages").getBoundingClientRect().top < 48;
  tip.classList.toggle("below", nearTop);
}
function hideTipEl(tip) {
  const chip = tip.parentElement && tip.parentElement.querySelector(`[aria-describedby="${tip.id}"]`);
  if (chip) chip.removeAttribute("aria-describedby");
  tip.remove();
}
function hideTip(chip) {
  if (!chip.isConnected) return; // redrawn: the new chip shows it again
  const tip = chip.parentElement.querySelector(".react-tip");
  if (tip && tip.dataset.key === chip.closest(".msg[id]").id.slice(1) + " " + chip.dataset.emoji) hideTipEl(tip);
  state.tip = null;
}
// New names for the tooltip on show, wherever its chip now is.
function refreshTip(key) {
  if (state.tip !== key) return;
  const [id, emoji] = [Number(key.slice(0, key.indexOf(" "))), key.slice(key.indexOf(" ") + 1)];
  const n = document.getElementById("m" + id);
  const chip = n && [...n.querySelectorAll(".chip")].find((c) => c.dataset.emoji === emoji);
  if (chip) showTip(chip);
  else { for (const t of document.querySelectorAll(".react-tip")) hideTipEl(t); state.tip = null; }
}

function reactionChip(msg, emoji, count) {
  const mine = isMine(msg, emoji);
  const b = button("", "chip" + (mine ? " on" : ""), () => react(msg, emoji, !isMine(msg, emoji)),
    `${emoji} ${count} ${count === 1 ? "reaction" : "reactions"}${mine ? ", yours" : ""}`);
  b.append(el("span", "chip-emoji", emoji), el("span", "chip-count", String(count)));
  b.setAttribute("aria-pressed", String(mine));
  b.dataset.emoji = emoji;
  b.dataset.fkey = "chip:" + emoji;
  b.addEventListener("mouseenter", () => showTip(b));
  b.addEventListener("focus", () => { if (b.matches(":focus-visible")) showTip(b); });
  b.addEventListener("mouseleave", () => { if (!b.matches(":focus-visible")) hideTip(b); });
  b.addEventListener("blur", () => hideTip(b));
  b.addEventListener("keydown", (e) => { if (e.key === "Escape" && b.parentElement.querySelector(".react-tip")) { e.stopPropagation(); hideTip(b); } });
  if (state.tip === msg.id + " " + emoji) queueMicrotask(() => { if (b.isConnected) showTip(b); });
  return b;
}

function reactionBar(msg, chips) {
  const bar = el("div", "reactions");
  bar.setAttribute("role", "group");
  bar.setAttribute("aria-label", "Reactions");
  for (const [emoji, count] of chips) bar.append(reactionChip(msg, emoji, count));
  bar.append(addReactionButton(msg));
  return bar;
}

// A smiling face with a plus (no emoji font needed for the control itself).
function reactIcon() {
  return svgIcon("M8.5 2.5a6.5 6.5 0 1 0 6.45 7.3h-1.5A5 5 0 1 1 8.5 4zM6 7.3a1 1 0 1 0 2 0 1 1 0 0 0-2 0zm3.5 0a1 1 0 1 0 2 0 1 1 0 0 0-2 0zM5.6 10.2a3.3 3.3 0 0 0 5.8 0h-1.7a1.9 1.9 0 0 1-2.4 0zM15 1.5h1.5V4H19v1.5h-2.5V8H15V5.5h-2.5V4H15z", { filled: true });
}

function addReactionButton(msg) {
  const open = !!(state.picking && state.picking.id === msg.id);
  const b = button("", "react-add", () => {
    if (state.picking && state.picking.id === msg.id) { closePicker(msg.id); return; }
    state.picking = { id: msg.id, more: false };
    state.confirming = null;
    renderAll();
    focusIn(msg.id, ".react-pop button");
    const pop = document.querySelector("#m" + msg.id + " .react-pop");
    if (pop) pop.scrollIntoView({ block: "nearest" });
  }, "Add reaction");
  b.append(reactIcon());
  b.title = "Add reaction";
  b.setAttribute("aria-expanded", String(open));
  b.dataset.fkey = "add";
  return b;
}

function closePicker(id) {
  state.picking = null;
  renderAll();
  focusIn(id, ".react-add");
}

function pickButton(msg, emoji) {
  const mine = isMine(msg, emoji);
  const b = button(emoji, "emo" + (mine ? " on" : ""), () => {
    react(msg, emoji, !isMine(msg, emoji));
    closePicker(msg.id);
  }, (mine ? "Take back " : "React with ") + emoji);
  b.setAttribute("aria-pressed", String(mine));
  b.dataset.fkey = "pick:" + emoji;
  b.tabIndex = -1;
  return b;
}

function reactionPicker(msg) {
  const pop = el("div", "react-pop");
  pop.setAttribute("role", "dialog");
  pop.setAttribute("aria-label", "Add a reaction");
  const quick = el("div", "react-quick");
  quick.setAttribute("role", "group");
  quick.setAttribute("aria-label", "Frequent reactions");
  for (const e of QUICK_REACTIONS) quick.append(pickButton(msg, e));
  const more = button("More", "react-more-btn", () => {
    state.picking = { id: msg.id, more: !state.picking.more };
    renderAll();
    focusIn(msg.id, state.picking.more ? ".react-grid button" : ".react-more-btn");
  }, "More emoji");
  more.setAttribute("aria-expanded", String(!!state.picking.more));
  more.dataset.fkey = "more";
  more.tabIndex = -1;
  quick.append(more);
  pop.append(quick);
  if (state.picking.more) {
    REACTION_GROUPS.forEach(([name, list], i) => {
      const title = el("div", "react-group-title", name);
      title.id = `react-group-${msg.id}-${i}`;
      const grid = el("div", "react-grid");
      grid.setAttribute("role", "group");
      grid.setAttribute("aria-labelledby", title.id);
      for (const e of list) grid.append(pickButton(msg, e));
      pop.append(title, grid);
    });
  }
  const items = [...pop.querySelectorAll("button")];
  items[0].tabIndex = 0;
  // Roving focus: Left/Right step through every button, Up/Down go to the nearest one in
  // the row above or below (the rows are what is drawn, whatever the width).
  pop.addEventListener("focusin", (e) => {
    if (e.target.tagName !== "BUTTON") return;
    for (const b of pop.querySelectorAll("button")) b.tabIndex = b === e.target ? 0 : -1;
  });
  pop.addEventListener("keydown", (e) => {
    const all = [...pop.querySelectorAll("button")];
    const i = all.indexOf(document.activeElement);
    if (e.key === "Escape" || e.key === "Tab") { e.preventDefault(); e.stopPropagation(); closePicker(msg.id); return; }
    if (i < 0) return;
    let j = null;
    if (e.key === "ArrowRight") j = Math.min(all.length - 1, i + 1);
    else if (e.key === "ArrowLeft") j = Math.max(0, i - 1);
    else if (e.key === "Home") j = 0;
    else if (e.key === "End") j = all.length - 1;
    else if (e.key === "ArrowDown" || e.key === "ArrowUp") {
      const at = all[i].getBoundingClientRect();
      const down = e.key === "ArrowDown";
      const rows = all.map((b) => b.getBoundingClientRect())
        .map((r, k) => ({ k, top: r.top, mid: r.left + r.width / 2 }))
        .filter((x) => (down ? x.top > at.top + 2 : x.top < at.top - 2));
      if (rows.length) {
        const rowTop = down ? Math.min(...rows.map((x) => x.top)) : Math.max(...rows.map((x) => x.top));
        const mid = at.left + at.width / 2;
        j = rows.filter((x) => Math.abs(x.top - rowTop) < 2)
          .reduce((best, x) => (Math.abs(x.mid - mid) < Math.abs(best.mid - mid) ? x : best)).k;
      } else j = i;
    }
    if (j === null) return;
    e.preventDefault();
    all[j].focus();
  });
  return pop;
}

// ---- files ------------------------------------------------------------------------
// Files are attached by the button (a hidden <input type=file multiple>), dropped on the
// conversation, or pasted into the composer. Each one uploads at once (POST /files, with
// XMLHttpRequest for its progress): a bar and a cancel button while it goes, then a
// removable chip until it is sent with the next message (its id in `attachments`); a
// refusal is said in words on its chip (with Retry when trying again may help). In
// messages, images (png, jpeg, gif, webp) are thumbnails that open full size in a
// dialog, other files chips that download; both reach the file with `?token=`, since an
// <img> or a link cannot send the Authorization header.

const MAX_FILE_BYTES = 10 << 20; // the server's default, until its hello says otherwise
let maxFileBytes = MAX_FILE_BYTES;
const MAX_ATTACHMENTS = 10;
const IMAGE_TYPES = ["image/png", "image/jpeg", "image/gif", "image/webp"];
let uploadSeq = 0;

const isImage = (f) => IMAGE_TYPES.includes(f.type);
const fileUrl = (id) => `/files/${encodeURIComponent(id)}?token=${encodeURIComponent(state.token || "")}`;
const uploading = () => state.uploads.some((u) => u.status === "uploading");
function humanSize(n) {
  if (n < 1024) return `${n} byte${n === 1 ? "" : "s"}`;
  const units = ["KB", "MB", "GB"];
  let v = n / 1024, i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${v < 10 ? v.toFixed(1).replace(/\.0$/, "") : Math.round(v)} ${units[i]}`;
}
// A message's words for a notice or a search result: its text, then its files' names.
function withFiles(m) {
  const names = (m.attachments || []).map((f) => f.name);
  if (!names.length) return m.text;
  return (m.text ? m.text + " " : "") + `(${names.length === 1 ? "file" : "files"}: ${names.join(", ")})`;
}

// One path in an SVG icon: stroked line art by default, or `filled`; decorative
// (hidden from screen readers) unless it has a `label`.
function svgIcon(d, opts = {}) {
  const { box = 20, cls, label, filled } = opts;
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${box} ${box}`);
  if (label) {
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", label);
  } else {
    svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("focusable", "false");
  }
  if (cls) svg.setAttribute("class", cls);
  const path = document.createElementNS(ns, "path");
  path.setAttribute("d", d);
  if (filled) {
    path.setAttribute("fill", "currentColor");
  } else {
    path.setAttribute("fill", "none");
    path.setAttribute("stroke", "currentColor");
    path.setAttribute("stroke-width", "1.6");
    path.setAttribute("stroke-linecap", "round");
    path.setAttribute("stroke-linejoin", "round");
  }
  svg.append(path);
  return svg;
}
const clipIcon = () => svgIcon("M14.5 9.2 9.3 14.4a3.3 3.3 0 0 1-4.7-4.7l6-6a2.2 2.2 0 0 1 3.1 3.1l-5.9 5.9a1.1 1.1 0 0 1-1.6-1.6l5.3-5.3");
const docIcon = () => svgIcon("M5 2.5h6.5l3.5 3.5v11.5H5zM11.5 2.5V6H15M7.5 10h5M7.5 13h5", { cls: "file-icon" });

// The files of a message (or of one waiting in the outbox): thumbnails, then chips.
function attachmentList(files) {
  const ul = el("ul", "files");
  ul.setAttribute("aria-label", files.length === 1 ? "Attached file" : `${files.length} attached files`);
  const order = [...files.filter(isImage), ...files.filter((f) => !isImage(f))];
  for (const f of order) {
    const li = el("li");
    li.append(isImage(f) ? thumbnail(f) : fileChip(f));
    ul.append(li);
  }
  return ul;
}

// The frame has a fixed height, so that an image arriving does not move the list.
function thumbnail(f) {
  const b = button("", "thumb", () => openViewer(f, b), `View ${f.name} full size`);
  b.setAttribute("aria-haspopup", "dialog");
  b.title = `${f.name} (${humanSize(f.size)})`;
  b.dataset.file = f.id;
  b.dataset.fkey = "file:" + f.id;
  const img = el("img");
  img.alt = f.name;
  img.loading = "lazy";
  img.decoding = "async";
  img.addEventListener("load", () => { if (state.stick) $("messages").scrollTop = $("messages").scrollHeight; });
  img.src = fileUrl(f.id);
  b.append(img);
  return b;
}

function fileChip(f) {
  const a = el("a", "file");
  a.href = fileUrl(f.id);
  a.download = f.name;
  a.title = "Download " + f.name;
  a.dataset.fkey = "file:" + f.id;
  const text = el("span", "file-text");
  text.append(el("span", "file-name", f.name), el("span", "file-size", humanSize(f.size)));
  a.append(el("span", "sr-only", "Download "), docIcon(), text);
  return a;
}

// The image viewer: a modal dialog (Escape, its button or a click outside close it); the
// focus goes back to the thumbnail that opened it.
function openViewer(f, from) {
  const msgEl = from.closest(".msg");
  state.viewing = { msg: msgEl ? msgEl.id || msgEl.dataset.cid : null, file: f.id };
  $("viewer-title").textContent = f.name;
  $("viewer-size").textContent = humanSize(f.size);
  const img = $("viewer-img");
  img.alt = f.name;
  img.src = fileUrl(f.id);
  const a = $("viewer-download");
  a.href = fileUrl(f.id);
  a.download = f.name;
  a.setAttribute("aria-label", "Download " + f.name);
  const d = $("viewer");
  if (!d.open) d.showModal();
  $("viewer-close").focus();
}
function viewerClosed() {
  $("viewer-img").removeAttribute("src");
  const v = state.viewing;
  state.viewing = null;
  if (!v || $("app").hidden) return;
  const sel = `.thumb[data-file="${CSS.escape(v.file)}"]`;
  const m = v.msg && (document.getElementById(v.msg) || document.querySelector(`.msg[data-cid="${CSS.escape(v.msg)}"]`));
  const b = (m && m.querySelector(sel)) || $("messages").querySelector(sel);
  if (b) b.focus(); else $("text").focus();
}

// Files chosen, dropped or pasted: each starts uploading (or is refused on the spot).
function addFiles(list) {
  const files = [...list];
  if (!files.length) return;
  let free = MAX_ATTACHMENTS - state.uploads.filter((u) => u.status !== "failed").length;
  let over = 0;
  for (const file of files) {
    const u = { key: "u" + ++uploadSeq, file, name: file.name || "file", size: file.size,
      type: file.type || "application/octet-stream", status: "uploading", loaded: 0, xhr: null, id: null, error: null, retry: false };
    if (file.size > maxFileBytes) {
      uploadFailed(u, `Too big (${humanSize(file.size)}): a file can be at most ${humanSize(maxFileBytes)}.`, false);
    } else if (file.size === 0) {
      uploadFailed(u, "This file is empty.", false);
    } else if (free <= 0) {
      over++;
      continue;
    } else {
      free--;
      startUpload(u);
    }
    state.uploads.push(u);
  }
  if (over) showError(`A message carries at most ${MAX_ATTACHMENTS} files: ${over} ${over === 1 ? "was" : "were"} not added.`);
  renderUploads();
}

function startUpload(u) {
  const xhr = new XMLHttpRequest();
  Object.assign(u, { xhr, status: "uploading", loaded: 0, error: null, retry: false });
  xhr.open("POST", "/files");
  xhr.setRequestHeader("Authorization", "Bearer " + state.token);
  xhr.setRequestHeader("Content-Type", u.type);
  xhr.setRequestHeader("X-Filename", encodeURIComponent(u.name));
  xhr.upload.onprogress = (e) => { u.loaded = e.loaded; showProgress(u); };
  xhr.onload = () => {
    if (u.xhr !== xhr) return;
    u.xhr = null;
    let data = null;
    try { data = JSON.parse(xhr.responseText); } catch (_) { /* not JSON */ }
    if (xhr.status === 201 && data && data.id) {
      Object.assign(u, { status: "done", id: data.id, name: data.name || u.name, size: data.size ?? u.size,
        type: data.type || u.type, loaded: u.size, file: null });
      announce(`${u.name} is ready to send.`);
    } else if (xhr.status === 401) {
      logout(false, "Your session ended. Sign in again.");
      return;
    } else {
      const [text, retry] = uploadError(xhr.status, data);
      uploadFailed(u, text, retry);
    }
    renderUploads();
  };
  xhr.onerror = () => {
    if (u.xhr !== xhr) return;
    u.xhr = null;
    uploadFailed(u, "The upload did not get through (the connection failed).", true);
    renderUploads();
  };
  xhr.send(u.file);
}

// What a refusal means, in words, and whether trying again may help.
function uploadError(code, data) {
  const err = data && data.error;
  if (code === 413) return ["Too big for this server.", false];
  if (code === 429) {
    const s = Math.max(1, Math.ceil((Number(data && data.retry_after_ms) || 1000) / 1000));
    return [`Too many uploads in a short time: try again in ${s} s.`, true];
  }
  if (code === 507 && err === "quota_exceeded") return ["Your files take all the room you have: delete messages with files to make room.", false];
  if (code === 507) return ["The server's file storage is full.", false];
  if (code === 408) return ["The upload stalled.", true];
  if (code === 400) return [(data && data.message) || "The server refused this file.", false];
  if (code === 503) return ["File storage is unavailable for now.", true];
  return [`The upload failed (the server said ${code}).`, true];
}
function uploadFailed(u, text, retry) {
  Object.assign(u, { status: "failed", error: text, retry: !!retry && !!u.file, xhr: null });
  announce(`${u.name} not uploaded: ${text}`);
}

// Cancel (×) while uploading, remove when finished, dismiss when refused: the focus goes
// to the next file's button, or back to the text box.
function dropUpload(key) {
  const i = state.uploads.findIndex((u) => u.key === key);
  if (i < 0) return;
  const u = state.uploads[i];
  if (u.xhr) { const x = u.xhr; u.xhr = null; x.abort(); }
  state.uploads.splice(i, 1);
  if (u.status === "uploading") announce(`Upload of ${u.name} cancelled.`);
  renderUploads();
  const next = state.uploads[Math.min(i, state.uploads.length - 1)];
  const b = next && $("uploads").querySelector(`[data-key="${next.key}"] .up-x`);
  if (b) b.focus(); else $("text").focus();
}

function showProgress(u) {
  const li = $("uploads").querySelector(`[data-key="${u.key}"]`);
  if (!li) return;
  const bar = li.querySelector("progress");
  if (bar) bar.value = u.loaded;
  const pct = li.querySelector(".up-pct");
  if (pct) pct.textContent = Math.floor((100 * u.loaded) / Math.max(1, u.size)) + "%";
}

function uploadItem(u) {
  const li = el("li", "upload " + u.status);
  li.dataset.key = u.key;
  if (u.status === "done" && isImage(u)) {
    const img = el("img", "up-thumb");
    img.alt = "";
    img.src = fileUrl(u.id);
    li.append(img);
  } else {
    li.append(docIcon());
  }
  const text = el("span", "up-text");
  text.append(el("span", "up-name", u.name), el("span", "up-size", humanSize(u.size)));
  li.append(text);
  if (u.status === "uploading") {
    const bar = el("progress");
    bar.max = Math.max(1, u.size);
    bar.value = u.loaded;
    bar.setAttribute("aria-label", "Uploading " + u.name);
    li.append(bar, el("span", "up-pct", Math.floor((100 * u.loaded) / Math.max(1, u.size)) + "%"));
  } else if (u.status === "failed") {
    const why = el("span", "up-error", "Not uploaded: " + u.error);
    li.append(why);
    if (u.retry) {
      const again = button("Retry", "up-retry", () => { startUpload(u); renderUploads(); focusUpload(u.key); }, "Retry uploading " + u.name);
      again.dataset.fkey = "retry";
      li.append(again);
    }
  }
  const x = button("✕", "up-x", () => dropUpload(u.key),
    (u.status === "uploading" ? "Cancel upload of " : u.status === "done" ? "Remove " : "Dismiss ") + u.name);
  x.title = u.status === "uploading" ? "Cancel upload" : u.status === "done" ? "Remove" : "Dismiss";
  x.dataset.fkey = "x";
  li.append(x);
  return li;
}
function focusUpload(key) {
  const b = $("uploads").querySelector(`[data-key="${key}"] .up-x`);
  if (b) b.focus();
}

// The files waiting above the composer, redrawn by key (a progress event only moves its
// bar); Send is disabled while any is uploading, and the note under them says so.
const uploadNodes = new Map(); // key -> {node, sig}
function renderUploads() {
  const ul = $("uploads");
  const active = document.activeElement;
  const focus = ul.contains(active) && active.dataset.fkey ? [active.closest("li").dataset.key, active.dataset.fkey] : null;
  const nodes = state.uploads.map((u) => {
    const sig = JSON.stringify([u.status, u.id, u.name, u.size, u.error, u.retry]);
    const c = uploadNodes.get(u.key);
    if (c && c.sig === sig) return c.node;
    const node = uploadItem(u);
    uploadNodes.set(u.key, { node, sig });
    return node;
  });
  const live = new Set(state.uploads.map((u) => u.key));
  for (const k of uploadNodes.keys()) if (!live.has(k)) uploadNodes.delete(k);
  ul.replaceChildren(...nodes);
  if (focus && !ul.contains(document.activeElement)) {
    const li = ul.querySelector(`[data-key="${focus[0]}"]`);
    const to = li && (li.querySelector(`[data-fkey="${focus[1]}"]`) || li.querySelector(".up-x"));
    if (to) to.focus();
  }
  const busy = state.uploads.filter((u) => u.status === "uploading").length;
  const ready = state.uploads.filter((u) => u.status === "done").length;
  $("uploads-box").hidden = state.uploads.length === 0;
  $("uploads-note").textContent = busy
    ? `Uploading ${busy} file${busy === 1 ? "" : "s"}… Send waits until ${busy === 1 ? "it finishes" : "they finish"}.`
    : ready ? `${ready} file${ready === 1 ? "" : "s"} will go with your next message.` : "";
  $("send-btn").disabled = busy > 0;
}

// Dragging files over the conversation shows where to drop them; a file dropped anywhere
// else on the page is ignored rather than opened in place of the app.
let dragDepth = 0;
const dragsFiles = (e) => !!e.dataTransfer && [...e.dataTransfer.types].includes("Files");
function wireFileDrops() {
  const chat = document.querySelector(".chat");
  const zone = $("drop-zone");
  chat.addEventListener("dragenter", (e) => {
    if (!dragsFiles(e)) return;
    e.preventDefault();
    dragDepth++;
    zone.hidden = false;
  });
  chat.addEventListener("dragover", (e) => {
    if (!dragsFiles(e)) return;
    e.preventDefault();
    e.dataTransfer.dropEffect = "copy";
    zone.hidden = false;
  });
  chat.addEventListener("dragleave", (e) => {
    if (!dragsFiles(e)) return;
    dragDepth = Math.max(0, dragDepth - 1);
    if (!dragDepth) zone.hidden = true;
  });
  chat.addEventListener("drop", (e) => {
    if (!dragsFiles(e)) return;
    e.preventDefault();
    dragDepth = 0;
    zone.hidden = true;
    addFiles(e.dataTransfer.files);
    $("text").focus();
  });
  for (const type of ["dragover", "drop"]) {
    window.addEventListener(type, (e) => {
      if (!dragsFiles(e) || e.defaultPrevented) return;
      e.preventDefault();
      e.dataTransfer.dropEffect = "none";
    });
  }
  window.addEventListener("dragend", () => { dragDepth = 0; zone.hidden = true; });
}

// ---- notices ----------------------------------------------------------------------
// Errors stay until dismissed (or 20 s have passed, the newest error replacing an older
// one); information goes in a status line of its own, never in the typing line.

let noticeTimer = null;
function showError(text) {
  $("notice-text").textContent = text;
  $("notice").hidden = false;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(hideNotice, Math.max(20000, text.length * 150));
  announce(text);
}
function hideNotice() { $("notice").hidden = true; clearTimeout(noticeTimer); }
let statusTimer = null;
function status(text) {
  $("status").textContent = text;
  clearTimeout(statusTimer);
  statusTimer = setTimeout(() => { $("status").textContent = ""; }, 8000);
}
function announce(text) { $("announce").textContent = text; }

// ---- rooms ------------------------------------------------------------------------

function renderInvites() {
  const ul = $("invite-list");
  const hadFocus = ul.contains(document.activeElement);
  ul.replaceChildren();
  for (const [name, by] of state.invites) {
    const li = el("li", "invite");
    const text = el("p", "invite-text");
    text.append(el("strong", "", by), document.createTextNode(" invited you to "), el("strong", "", label(name)));
    const row = el("div", "invite-actions");
    const accept = button("Accept", "small", null, `Accept the invitation to ${name} from ${by}`);
    accept.disabled = state.accepting === name;
    accept.onclick = () => {
      state.accepting = name;
      accept.disabled = true;
      send({ type: "join", room: name, ref: ref("accept", name) });
    };
    const decline = button("Decline", "small secondary",
      () => send({ type: "decline", room: name, ref: ref("decline", name) }),
      `Decline the invitation to ${name} from ${by}`);
    row.append(accept, decline);
    li.append(text, row);
    ul.append(li);
  }
  const n = state.invites.size;
  $("invites").hidden = n === 0;
  $("menu-badge").hidden = n === 0;
  $("menu-badge").textContent = String(n);
  $("menu-label").textContent = n ? `Show rooms (${n} invitation${n > 1 ? "s" : ""})` : "Show rooms";
  if (hadFocus && !ul.contains(document.activeElement)) {
    const next = ul.querySelector("button:not(:disabled)");
    if (next) next.focus(); else if (!state.accepting) $("text").focus();
  }
}

function renderRooms() {
  for (const [listId, dms] of [["room-list", false], ["dm-list", true]]) {
    const ul = $(listId);
    const focused = ul.contains(document.activeElement) ? document.activeElement.dataset.room : null;
    ul.replaceChildren();
    const names = [...state.rooms.values()]
      .filter((r) => (r.member || r.name === state.current) && r.name.startsWith("dm:") === dms)
      .map((r) => r.name).sort();
    for (const name of names) {
      const r = state.rooms.get(name);
      const li = el("li");
      const b = button("", "", () => switchRoom(name));
      b.dataset.room = name;
      b.append(el("span", "room-name", label(name)));
      if (r.private && !dms) b.append(lockIcon());
      if (r.unread > 0 && name !== state.current) {
        b.append(el("span", "badge", String(r.unread)));
        b.setAttribute("aria-label", `${label(name)}, ${r.unread} unread`);
      }
      if (name === state.current) b.setAttribute("aria-current", "true");
      li.append(b);
      ul.append(li);
      if (focused === name) b.focus();
    }
  }
}

// A padlock (emoji fonts are not everywhere), named for screen readers.
function lockIcon() {
  return svgIcon("M4 7V5a4 4 0 0 1 8 0v2h1v8H3V7h1zm2 0h4V5a2 2 0 0 0-4 0v2z", { box: 16, cls: "lock", label: "private", filled: true });
}

function renderHead() {
  const r = room(state.current);
  $("invite-btn").hidden = !(same(r.owner, state.me) && r.private && !r.name.startsWith("dm:"));
  $("leave-btn").hidden = r.name === "general" || r.name.startsWith("dm:") || !r.member;
  $("leave-btn").setAttribute("aria-label", `Leave ${label(r.name)}`);
  if (state.inviteRoom && state.inviteRoom !== r.name) closeInvite();
  if (state.leaveRoom && state.leaveRoom !== r.name) closeLeave();
}

function switchRoom(name) {
  if (state.typing.active) stopTyping();
  state.current = name;
  state.jumpTo = null;
  state.stick = true;
  state.unseenBelow = 0;
  state.editing = state.confirming = state.picking = state.tip = null;
  const r = room(name);
  r.unread = 0;
  $("room-title").textContent = label(name);
  $("text").placeholder = "Message " + label(name);
  closeDrawers();
  if (!r.joined && !r.dmTo && online()) joinRoom(name);
  $("messages").setAttribute("aria-busy", String(!r.joined && !r.dmTo));
  renderRooms();
  renderHead();
  renderAll();
  renderMembers();
  renderTyping();
  markSeen();
  if (r.joined) fillIfShort();
  if (!isNarrow() || document.activeElement === document.body) $("text").focus();
}

function openDm(user) {
  const name = "dm:" + [state.me.toLowerCase(), user.toLowerCase()].sort().join(":");
  if (state.rooms.has(name) && state.rooms.get(name).member && state.rooms.get(name).msgs.size) return switchRoom(name);
  const r = room(name);
  r.dmTo = user;
  r.members = [state.me, user];
  r.hasMore = false;
  switchRoom(name);
}

// The room browser: public rooms (and mine) from GET /rooms, by name, paged; a name
// nobody uses is offered for creation instead of being created on a typo.
const browser = { q: "", after: "", seq: 0, exact: false };
async function searchRooms(more) {
  const q = $("rooms-q").value.trim().toLowerCase().replace(/^#/, "");
  const seq = ++browser.seq;
  if (!more) { browser.after = ""; browser.q = q; }
  $("rooms-status").textContent = "Loading…";
  const path = `/rooms?limit=50&q=${encodeURIComponent(q)}` + (browser.after ? "&after=" + encodeURIComponent(browser.after) : "");
  const res = await api("GET", path).catch(() => null);
  if (seq !== browser.seq) return;
  if (!res || res.status !== 200 || !Array.isArray(res.data)) {
    $("rooms-status").textContent = res && res.status === 429 ? "Too many requests; try again in a moment." : "Could not load the rooms.";
    return;
  }
  const ul = $("rooms-results");
  if (!more) { ul.replaceChildren(); browser.exact = false; }
  const list = res.data.filter((x) => !x.name.startsWith("dm:"));
  for (const info of list) {
    if (info.name === q) browser.exact = true;
    const li = el("li", "room-row");
    const text = el("div", "room-info");
    const title = el("strong", "", "# " + info.name);
    if (info.private) title.append(" ", lockIcon());
    text.append(title,
      el("span", "muted", `${info.members} member${info.members === 1 ? "" : "s"} · ${info.online_count ?? info.online} online`));
    const b = info.member
      ? button("Open", "secondary small", () => { $("rooms-dialog").close(); switchRoom(info.name); }, `Open # ${info.name}`)
      : button("Join", "small", () => { $("rooms-dialog").close(); joinExisting(info.name); }, `Join # ${info.name}`);
    li.append(text, b);
    ul.append(li);
  }
  if (res.data.length) browser.after = res.data[res.data.length - 1].name;
  $("rooms-more").hidden = res.data.length < 50;
  const shown = ul.children.length;
  $("rooms-status").textContent = shown ? "" : q ? `No room matches “${q}”.` : "No public rooms yet.";
  const canCreate = ROOM_NAME.test(q) && !browser.exact;
  $("rooms-create").hidden = !canCreate;
  if (canCreate) {
    $("rooms-create-text").textContent = `There is no room #${q}. Create #${q}?`;
    $("rooms-create-btn").textContent = `Create #${q}`;
  } else if (q && !ROOM_NAME.test(q)) {
    $("rooms-status").textContent = (shown ? "" : `No room matches “${q}”. `) + "Room names are 1–64 of a–z, 0–9, '-' and '_'.";
  }
}

function joinExisting(name) {
  const known = state.rooms.get(name);
  if (known && known.joined) return switchRoom(name);
  room(name).joining = state.epoch;
  send({ type: "join", room: name, ref: ref("open", name) });
}

function createRoom() {
  const name = $("rooms-q").value.trim().toLowerCase().replace(/^#/, "");
  if (!ROOM_NAME.test(name)) return;
  const priv = $("rooms-private").checked;
  send({ type: "create_room", room: name, private: priv, ref: ref("create", name) });
  $("rooms-dialog").close();
  $("rooms-private").checked = false;
}

function openRooms() {
  closeDrawers();
  const d = $("rooms-dialog");
  if (!d.open) d.showModal();
  $("rooms-q").focus();
  searchRooms(false);
}

// The invite control: under the header of a private room I own, right after creating it
// or from the Invite button; names complete from the users this client has met.
function openInvite(name) {
  state.inviteRoom = name;
  $("invite-label").textContent = `Invite to ${label(name)}`;
  $("invite-status").textContent = "";
  $("invite-bar").hidden = false;
  $("invite-user").value = "";
  closeOptions();
  $("invite-user").focus();
}
function closeInvite() {
  state.inviteRoom = null;
  $("invite-bar").hidden = true;
  closeOptions();
}
function inviteCandidates(prefix) {
  const r = state.rooms.get(state.inviteRoom);
  const members = new Set((r ? r.members : []).map((x) => x.toLowerCase()));
  const p = prefix.toLowerCase();
  return [...state.known].filter((n) => !members.has(n.toLowerCase()) && n.toLowerCase().startsWith(p))
    .sort((a, b) => a.localeCompare(b)).slice(0, 8);
}
let optionIndex = -1;
function renderOptions() {
  const input = $("invite-user");
  const ul = $("invite-options");
  const list = inviteCandidates(input.value.trim());
  ul.replaceChildren();
  if (!list.length || !input.value.trim()) { closeOptions(); return; }
  optionIndex = Math.min(optionIndex, list.length - 1);
  list.forEach((n, i) => {
    const li = el("li", "option", n);
    li.id = "invite-opt-" + i;
    li.setAttribute("role", "option");
    li.setAttribute("aria-selected", String(i === optionIndex));
    li.onmousedown = (e) => { e.preventDefault(); input.value = n; closeOptions(); };
    ul.append(li);
  });
  ul.hidden = false;
  input.setAttribute("aria-expanded", "true");
  if (optionIndex >= 0) input.setAttribute("aria-activedescendant", "invite-opt-" + optionIndex);
  else input.removeAttribute("aria-activedescendant");
}
function closeOptions() {
  optionIndex = -1;
  $("invite-options").hidden = true;
  $("invite-user").setAttribute("aria-expanded", "false");
  $("invite-user").removeAttribute("aria-activedescendant");
}
function sendInvite() {
  const user = $("invite-user").value.trim();
  if (!user || !state.inviteRoom) return;
  $("invite-status").textContent = `Inviting ${user}…`;
  send({ type: "invite", room: state.inviteRoom, user, ref: ref("invite", state.inviteRoom, { user }) });
  $("invite-user").value = "";
  closeOptions();
}

function askLeave() {
  const r = room(state.current);
  state.leaveRoom = r.name;
  $("leave-text").textContent = r.private
    ? `Leave ${label(r.name)}? It is private: you will need a new invitation to come back.`
    : `Leave ${label(r.name)}?`;
  $("leave-yes").textContent = `Leave ${label(r.name)}`;
  $("leave-bar").hidden = false;
  $("leave-no").focus();
}
function closeLeave() { state.leaveRoom = null; $("leave-bar").hidden = true; }

// ---- members ----------------------------------------------------------------------

function renderMembers() {
  const r = room(state.current);
  const ul = $("member-list");
  const focusKey = ul.contains(document.activeElement) ? document.activeElement.dataset.key : null;
  ul.replaceChildren();
  const count = r.membersMore ? r.memberCount : r.members.length;
  const online = r.membersMore ? r.onlineCount : r.members.filter((n) => r.online.has(n)).length;
  $("member-count").textContent = count ? `${count} · ${online} online` : "";
  $("members-more").hidden = !r.membersMore;
  $("members-more").disabled = r.loadingMembers;
  for (const name of [...r.members].sort()) {
    const li = el("li");
    const on = r.online.has(name);
    const b = button("", "", () => { if (!same(name, state.me)) openDm(name); });
    b.append(el("span", "dot" + (on ? " on" : "")));
    const who = el("span", "", name + (same(name, state.me) ? " (you)" : ""));
    if (!on && r.lastSeen[name]) who.append(el("small", "", "last seen " + new Date(r.lastSeen[name]).toLocaleString()));
    b.append(who);
    b.title = same(name, state.me) ? "You" : `Message ${name} directly`;
    b.dataset.key = "dm:" + name;
    li.append(b);
    if (state.admin && !same(name, state.me)) li.append(memberTools(r, name, who));
    ul.append(li);
  }
  if (focusKey) {
    const again = [...ul.querySelectorAll("button")].find((x) => x.dataset.key === focusKey);
    if (again) again.focus();
  }
  renderHead();
}

// ---- drawers and dialogs ----------------------------------------------------------
// On a phone the room list and the member list are drawers over the chat: each has a
// close button and closes on a tap outside (the scrim). Search results and the room
// browser are modal dialogs (the top layer, above any drawer), closed by their button,
// Escape, or a tap on the backdrop.

function openSidebar() {
  $("sidebar").classList.add("open");
  $("menu-btn").setAttribute("aria-expanded", "true");
  syncScrim();
  $("sidebar-close").focus();
}
function setMembers(open) {
  $("members").hidden = !open;
  $("members-btn").setAttribute("aria-expanded", String(open));
  if (open) { renderMembers(); if (isNarrow()) $("members-close").focus(); }
  syncScrim();
}
function closeDrawers() {
  const wasOpen = $("sidebar").classList.contains("open");
  $("sidebar").classList.remove("open");
  $("menu-btn").setAttribute("aria-expanded", "false");
  if (isNarrow() && !$("members").hidden) setMembers(false);
  syncScrim();
  if (wasOpen && $("sidebar").contains(document.activeElement)) $("menu-btn").focus();
}
function syncScrim() {
  $("scrim").hidden = !isNarrow() || !($("sidebar").classList.contains("open") || !$("members").hidden);
}
function closeOnBackdrop(d) {
  d.addEventListener("click", (e) => { if (e.target === d) d.close(); });
}

async function runSearch() {
  const q = $("search-q").value.trim();
  if (!q) return;
  const d = $("search-dialog");
  const ul = $("search-list");
  ul.replaceChildren();
  $("search-status").textContent = "Searching…";
  if (!d.open) d.showModal();
  const r = await api("GET", "/search?q=" + encodeURIComponent(q)).catch(() => null);
  if (!r || r.status !== 200) {
    $("search-status").textContent = r && r.status === 429 ? "Too many requests; try again in a moment." : "Search failed.";
    return;
  }
  const results = (r.data && r.data.messages) || [];
  $("search-status").textContent = results.length
    ? `${results.length} message${results.length === 1 ? "" : "s"} for “${q}”${r.data.partial ? " (partial)" : ""}.`
    : `No messages found for “${q}”.`;
  for (const m of results) {
    const li = el("li");
    const b = button("", "result", () => {
      d.close();
      closeDrawers();
      switchRoom(m.room);
      jump(m.id);
    });
    b.append(el("strong", "", `${label(m.room)} · ${m.user}: `), document.createTextNode(withFiles(m)));
    li.append(b);
    ul.append(li);
  }
  const first = ul.querySelector("button");
  if (first) first.focus();
}

// ---- the account panel ------------------------------------------------------------
// A dialog from the sidebar: change the password (POST /account/password; the server
// ends every other session), the sessions of this account (GET /account/sessions) with
// an inline-confirmed "End" for each other one, and "Sign out everywhere".

// "Chrome on Linux" from a user agent string; null when there is none.
function shortAgent(ua) {
  if (!ua) return null;
  const browsers = [[/Edg(e|A|iOS)?\//, "Edge"], [/OPR\/|Opera/, "Opera"], [/Firefox\/|FxiOS/, "Firefox"],
    [/Chrome\/|CriOS|Chromium/, "Chrome"], [/Safari\//, "Safari"], [/^curl\//, "curl"],
    [/chatterbox/i, "chatterbox-cli"], [/^node|undici/i, "Node.js"]];
  const systems = [[/iPhone|iPad|iPod/, "iOS"], [/Android/, "Android"], [/Windows/, "Windows"],
    [/Mac OS X|Macintosh/, "macOS"], [/CrOS/, "ChromeOS"], [/Linux/, "Linux"]];
  const b = (browsers.find(([re]) => re.test(ua)) || [null, null])[1];
  const o = (systems.find(([re]) => re.test(ua)) || [null, null])[1];
  if (b && o) return `${b} on ${o}`;
  return b || o || (ua.length > 40 ? ua.slice(0, 40) + "…" : ua);
}
const longTime = (iso) => (iso ? new Date(iso).toLocaleString([], { dateStyle: "medium", timeStyle: "short" }) : "unknown");

function openAccount() {
  const d = $("account");
  const body = $("account-body");
  body.replaceChildren($("account-tpl").content.cloneNode(true));
  body.querySelector(".acct-name").textContent = state.me;
  $("pw-form").onsubmit = (e) => { e.preventDefault(); changePassword(); };
  $("everywhere-btn").onclick = askEverywhere;
  $("export-btn").onclick = exportData;
  $("delete-form").onsubmit = (e) => { e.preventDefault(); askDelete(); };
  if (!d.open) d.showModal();
  $("account-close").focus();
  loadSessions();
}

function acctStatus(id, text, bad) {
  const p = $(id);
  if (!p) return;
  p.textContent = text;
  p.classList.toggle("error", !!bad);
}

async function changePassword() {
  const old = $("pw-old").value, neu = $("pw-new").value, again = $("pw-confirm").value;
  if (!old) { acctStatus("pw-status", "Enter your current password.", true); $("pw-old").focus(); return; }
  if ([...neu].length < 8) { acctStatus("pw-status", "The new password needs at least 8 characters.", true); $("pw-new").focus(); return; }
  if (neu !== again) { acctStatus("pw-status", "The two new passwords differ.", true); $("pw-confirm").focus(); return; }
  $("pw-save").disabled = true;
  acctStatus("pw-status", "Changing…");
  const r = await api("POST", "/account/password", { old, new: neu }).catch(() => null);
  if (!$("pw-form")) return; // the panel was closed meanwhile
  $("pw-save").disabled = false;
  if (!r) { acctStatus("pw-status", "Could not reach the server.", true); return; }
  if (r.status === 204) {
    $("pw-form").reset();
    acctStatus("pw-status", "Password changed. Your other sessions were signed out; this one stays signed in.");
    loadSessions();
    return;
  }
  if (r.status === 401) return logout(false, "Your session ended. Sign in again.");
  const msgs = { invalid_credentials: "The current password is wrong.", invalid_password: "The new password needs 8 to 1024 bytes." };
  acctStatus("pw-status", r.status === 429 ? authError(r) : msgs[r.data && r.data.error] || authError(r), true);
}

async function loadSessions() {
  const r = await api("GET", "/account/sessions").catch(() => null);
  const ul = $("sessions-list");
  if (!ul) return;
  if (!r || r.status !== 200) {
    if (r && r.status === 401) return logout(false, "Your session ended. Sign in again.");
    acctStatus("sessions-status", r && r.status === 429 ? "Too many requests; try again in a moment." : "Could not load the sessions.", true);
    return;
  }
  const list = r.data.sessions || [];
  acctStatus("sessions-status", list.length === 1 ? "Only this device." : `${list.length} sessions, most recently used first.`);
  ul.replaceChildren(...list.map(sessionRow));
}

function sessionRow(sess) {
  const li = el("li", "session");
  const name = shortAgent(sess.user_agent) || "Unknown device";
  const info = el("div", "session-info");
  const head = el("div", "session-name");
  head.append(el("strong", "", name));
  if (sess.current) head.append(el("span", "this-device", "This device"));
  info.append(head, el("span", "session-meta",
    `${sess.ip || "address unknown"} · signed in ${longTime(sess.created_at)} · last used ${longTime(sess.last_used)}`));
  li.append(info);
  if (!sess.current) {
    const actions = el("div", "session-actions");
    const described = `${name}, ${sess.ip || "address unknown"}, signed in ${longTime(sess.created_at)}`;
    const end = button("End", "secondary small", () => {
      const q = el("span", "confirm-q", "End this session?");
      const yes = button("End session", "danger small", () => endSession(sess.id, li), "End session: " + described);
      const no = button("Cancel", "secondary small", () => { actions.replaceChildren(end); end.focus(); });
      actions.replaceChildren(q, yes, no);
      yes.focus();
    }, "End session: " + described);
    actions.append(end);
    li.append(actions);
  }
  return li;
}

async function endSession(id, li) {
  const r = await api("DELETE", "/account/sessions/" + encodeURIComponent(id)).catch(() => null);
  if (r && (r.status === 204 || r.status === 404)) {
    li.remove();
    announce("Session ended.");
    acctStatus("sessions-status", "Session ended.");
    $("account-close").focus();
    loadSessions();
    return;
  }
  if (r && r.status === 401) return logout(false, "Your session ended. Sign in again.");
  acctStatus("sessions-status", r && r.status === 429 ? "Too many requests; try again in a moment." : "Could not end that session.", true);
}

function askEverywhere() {
  const row = $("everywhere-row");
  const q = el("span", "confirm-q", "Sign out on every device, this one too?");
  const yes = button("Sign out everywhere now", "danger small", signOutEverywhere);
  const no = button("Cancel", "secondary small", () => {
    row.replaceChildren(button("Sign out everywhere", "danger", askEverywhere));
    row.firstChild.id = "everywhere-btn";
    row.firstChild.focus();
  });
  row.replaceChildren(q, yes, no);
  yes.focus();
}

// POST /logout?all=1 closes this socket too (4001): that close is expected, not news.
async function signOutEverywhere() {
  state.signingOutAll = true;
  const r = await api("POST", "/logout?all=1").catch(() => null);
  state.signingOutAll = false;
  if (r && (r.status === 204 || r.status === 401)) {
    if (state.me) localStorage.removeItem(outboxKey());
    return logout(false, "You signed out on every device.");
  }
  acctStatus("sessions-status", "Could not sign out everywhere: " + (r ? authError(r) : "could not reach the server."), true);
  if (!state.ws && state.token) connect();
}

// "Download my data": GET /account/export with the token (a link cannot carry it), read
// whole, checked to be one JSON document (a storage failure cuts the stream short, and a
// cut document must not be saved as if it were whole), then saved from a blob: URL
// through a temporary <a download>. The CSP does not restrict downloads (fetch goes to
// 'self'; a blob: link is a navigation, not a fetch).
async function exportData() {
  const btn = $("export-btn");
  btn.disabled = true;
  acctStatus("export-status", "Preparing your data…");
  let res = null, text = null;
  try {
    res = await fetch("/account/export", { headers: { Authorization: "Bearer " + state.token } });
    if (res.status === 200) text = await res.text();
  } catch (_) { /* unreachable, or the stream was cut */ }
  if (!$("export-btn")) return; // the panel was closed meanwhile
  btn.disabled = false;
  if (res && res.status === 401) return logout(false, "Your session ended. Sign in again.");
  if (!res || res.status !== 200 || text === null) {
    acctStatus("export-status", res && res.status === 429
      ? "An export is already running, or too many requests: try again in a moment."
      : "Could not download your data. Try again.", true);
    return;
  }
  let doc;
  try { doc = JSON.parse(text); } catch (_) { doc = null; }
  if (!doc || !Array.isArray(doc.messages)) {
    acctStatus("export-status", "The download was cut short. Try again.", true);
    return;
  }
  const url = URL.createObjectURL(new Blob([text], { type: "application/json" }));
  const a = el("a");
  a.href = url;
  a.download = "chatterbox-export.json";
  a.hidden = true;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
  const n = doc.messages.length;
  acctStatus("export-status", `Saved chatterbox-export.json (${n} message${n === 1 ? "" : "s"}).`);
}

// "Delete account": the password, then an inline confirmation, then DELETE /account. The
// server closes this socket with 4001 too; that close is expected, not news.
function askDelete() {
  if (!$("delete-pass").value) {
    acctStatus("delete-status", "Enter your password to delete the account.", true);
    $("delete-pass").focus();
    return;
  }
  acctStatus("delete-status", "");
  const row = $("delete-row");
  const q = el("span", "confirm-q", `Delete the account ${state.me} for good? This cannot be undone.`);
  const yes = button("Delete my account", "danger small", deleteAccount);
  const no = button("Cancel", "secondary small", () => {
    const b = button("Delete account", "danger");
    b.type = "submit";
    b.id = "delete-btn";
    row.replaceChildren(b);
    b.focus();
  });
  for (const b of [yes, no]) b.onkeydown = (e) => { if (e.key === "Escape") { e.preventDefault(); e.stopPropagation(); no.click(); } };
  row.replaceChildren(q, yes, no);
  yes.focus();
}

async function deleteAccount() {
  const password = $("delete-pass").value;
  for (const b of $("delete-row").querySelectorAll("button")) b.disabled = true;
  acctStatus("delete-status", "Deleting…");
  state.signingOutAll = true;
  const r = await api("DELETE", "/account", { password }).catch(() => null);
  state.signingOutAll = false;
  if (r && r.status === 204) {
    const name = state.me;
    if (name) localStorage.removeItem(outboxKey());
    await logout(false, `The account ${name} was deleted.`);
    $("auth-user").value = "";
    $("auth-user").focus();
    return;
  }
  if (!$("delete-form")) return;
  if (r && r.status === 401) return logout(false, "Your session ended. Sign in again.");
  const bad = r && r.data && r.data.error === "invalid_credentials";
  acctStatus("delete-status", !r ? "Could not reach the server." : bad ? "The password is wrong; the account was not deleted."
    : r.status === 429 ? authError(r) : authError(r), true);
  const b = button("Delete account", "danger");
  b.type = "submit";
  b.id = "delete-btn";
  $("delete-row").replaceChildren(b);
  $("delete-pass").value = "";
  $("delete-pass").focus();
  if (!state.ws && state.token) connect();
}

// ---- moderation (admins) ------------------------------------------------------------

function setAdmin(on) {
  const changed = state.admin !== on;
  state.admin = on;
  $("me-admin").hidden = !on;
  $("audit-btn").hidden = !on;
  $("admin-link").hidden = !on;
  if (!on) {
    state.suspended.clear();
    state.audit = [];
    if ($("audit").open) $("audit").close();
  } else {
    refreshAudit();
  }
  if (changed && !$("app").hidden) { renderAll(); renderMembers(); }
}

function adminError(res) {
  if (!res) return "Could not reach the server.";
  if (res.status === 403) return "Only admins can do that.";
  return (res.data && res.data.message) || `The server said ${res.status}.`;
}

// Destructive member actions ask inline: the first click arms the button (it says
// "Really …?"), the second within 5 s does it. The armed one is remembered by key, so a
// member list redrawn meanwhile (presence) keeps it.
let armedKey = null, armedTimer = null;
function armable(b, key, text, action) {
  const arm = () => { b.textContent = text; b.setAttribute("aria-label", `${text} ${b.getAttribute("aria-label")}`); };
  if (armedKey === key) arm();
  b.onclick = () => {
    clearTimeout(armedTimer);
    if (armedKey === key) { armedKey = null; action(); return; }
    armedKey = key;
    arm();
    armedTimer = setTimeout(() => { armedKey = null; renderMembers(); }, 5000);
  };
}

function memberTools(r, name, who) {
  const tools = el("div", "member-tools");
  const suspended = state.suspended.has(name.toLowerCase());
  if (suspended) who.insertBefore(el("span", "tag", "suspended"), who.querySelector("small"));
  if (r.name !== "general" && !r.name.startsWith("dm:")) {
    const rm = button("Remove from room", "", null, `Remove ${name} from ${label(r.name)}`);
    rm.dataset.key = "remove:" + name;
    armable(rm, rm.dataset.key + "@" + r.name, `Really remove ${name}?`, () => removeMember(r.name, name));
    tools.append(rm);
  }
  const sus = button(suspended ? "Unsuspend" : "Suspend", suspended ? "unsuspend" : "", null,
    `${suspended ? "Unsuspend" : "Suspend"} ${name}`);
  sus.dataset.key = "suspend:" + name;
  if (suspended) sus.onclick = () => suspendUser(name, false);
  else armable(sus, sus.dataset.key, `Really suspend ${name}?`, () => suspendUser(name, true));
  tools.append(sus);
  return tools;
}

async function removeMember(roomName, name) {
  const res = await api("POST", `/admin/rooms/${encodeURIComponent(roomName)}/remove`, { user: name }).catch(() => null);
  if (!res || res.status !== 204) { showError("Not removed: " + adminError(res)); return; }
  const r = state.rooms.get(roomName);
  if (r) {
    const ul = $("member-list");
    const items = [...ul.children];
    const at = items.findIndex((li) => li.querySelector(`button[data-key="remove:${CSS.escape(name)}"]`));
    const hadFocus = ul.contains(document.activeElement);
    r.members = r.members.filter((n) => n !== name);
    r.online.delete(name);
    r.memberCount = Math.max(0, r.memberCount - 1);
    if (state.current === roomName) {
      renderMembers();
      if (hadFocus) {
        const rows = [...ul.querySelectorAll("li > button")];
        (rows[Math.min(Math.max(at, 0), rows.length - 1)] || $("members-btn")).focus();
      }
    }
  }
  status(`Removed ${name} from #${roomName}.`);
  announce(`Removed ${name} from #${roomName}.`);
  refreshAudit();
}

async function suspendUser(name, on) {
  const res = await api("POST", `/admin/users/${encodeURIComponent(name)}/${on ? "suspend" : "unsuspend"}`).catch(() => null);
  if (!res || res.status !== 204) { showError((on ? "Not suspended: " : "Not unsuspended: ") + adminError(res)); return; }
  if (on) state.suspended.add(name.toLowerCase()); else state.suspended.delete(name.toLowerCase());
  renderMembers();
  const text = on ? `Suspended ${name}.` : `Unsuspended ${name}.`;
  status(text);
  announce(text);
  refreshAudit();
}

async function refreshAudit() {
  const res = await api("GET", "/admin/audit").catch(() => null);
  if (!res || res.status !== 200 || !res.data || !Array.isArray(res.data.entries)) {
    if ($("audit").open) $("audit-status").textContent = "Could not load the audit log: " + adminError(res);
    return;
  }
  state.audit = res.data.entries;
  state.suspended.clear();
  for (const e of [...state.audit].reverse()) {
    if (e.action === "suspend") state.suspended.add(String(e.target).toLowerCase());
    if (e.action === "unsuspend") state.suspended.delete(String(e.target).toLowerCase());
  }
  if (!$("app").hidden && !$("members").hidden) renderMembers();
  if ($("audit").open) renderAudit();
}

const AUDIT_ACTIONS = {
  grant_admin: ["granted admin", false], revoke_admin: ["revoked admin", false],
  suspend: ["suspended", true], unsuspend: ["unsuspended", false],
  remove_from_room: ["removed from room", true], delete_message: ["deleted message", true],
};

function renderAudit() {
  const body = $("audit-list");
  body.replaceChildren();
  for (const e of state.audit) {
    const tr = el("tr");
    const at = new Date(e.at);
    const when = el("td", "", isNaN(at) ? String(e.at) : at.toLocaleString());
    when.title = String(e.at);
    const who = el("td", e.actor ? "" : "muted", e.actor || "command line");
    const [text, danger] = AUDIT_ACTIONS[e.action] || [String(e.action), false];
    const act = el("td");
    act.append(el("span", "action" + (danger ? " danger" : ""), text));
    tr.append(when, who, act, el("td", "", String(e.target ?? "")));
    body.append(tr);
  }
  const n = state.audit.length;
  $("audit-status").textContent = n ? `${n} entr${n === 1 ? "y" : "ies"}, newest first.` : "Nothing yet.";
}

async function openAudit() {
  const d = $("audit");
  renderAudit();
  if (!d.open) d.showModal();
  $("audit-status").textContent = "Loading…";
  await refreshAudit();
}

// ---- composing --------------------------------------------------------------------

function autosize() {
  const t = $("text");
  t.style.height = "auto";
  t.style.height = Math.min(t.scrollHeight, 160) + "px";
}

const EMOJI = "😀 😂 😊 😍 😎 🤔 😢 😡 👍 👎 👏 🙏 🎉 🔥 ❤️ 💯 ✅ ❌ 👀 🚀 ☕ 🍕 🐛 💡 🤝 👋 🙈 🥳 😴 🤯 ✨ 🌟".split(" ");
const EMOJI_COLS = 8;

function buildEmoji() {
  const grid = $("emoji-grid");
  EMOJI.forEach((e, i) => {
    const b = button(e, "", () => {
      const t = $("text");
      const at = t.selectionStart ?? t.value.length;
      t.value = t.value.slice(0, at) + e + t.value.slice(t.selectionEnd ?? at);
      toggleEmoji(false);
      t.focus();
      t.selectionStart = t.selectionEnd = at + e.length;
      typed();
    }, "Insert " + e);
    b.setAttribute("role", "menuitem");
    b.tabIndex = i === 0 ? 0 : -1;
    grid.append(b);
  });
  // Arrow keys move in the grid (roving focus), Home/End jump, Escape closes.
  grid.addEventListener("keydown", (e) => {
    const items = [...grid.querySelectorAll("button")];
    const i = items.indexOf(document.activeElement);
    if (i < 0) return;
    const moves = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: EMOJI_COLS, ArrowUp: -EMOJI_COLS };
    let j = null;
    if (e.key in moves) j = i + moves[e.key];
    else if (e.key === "Home") j = 0;
    else if (e.key === "End") j = items.length - 1;
    else if (e.key === "Escape" || e.key === "Tab") { e.preventDefault(); e.stopPropagation(); toggleEmoji(false); $("emoji-btn").focus(); return; }
    if (j === null) return;
    e.preventDefault();
    j = Math.max(0, Math.min(items.length - 1, j));
    items[i].tabIndex = -1;
    items[j].tabIndex = 0;
    items[j].focus();
  });
}

function toggleEmoji(open) {
  $("emoji-grid").hidden = !open;
  $("emoji-btn").setAttribute("aria-expanded", String(open));
  if (open) ($("emoji-grid").querySelector("button[tabindex='0']") || $("emoji-grid").querySelector("button")).focus();
}

// ---- wiring -----------------------------------------------------------------------

$("auth-form").onsubmit = (e) => { e.preventDefault(); if (resetting) resetPassword(); else signIn(false); };
$("forgot-btn").onclick = () => setResetting(true);
$("reset-cancel").onclick = () => setResetting(false);
$("register-btn").onclick = () => signIn(true);
$("logout-btn").onclick = () => logout(true);
$("theme-btn").onclick = () => {
  localStorage.setItem("chatterbox.theme", effectiveDark() ? "light" : "dark");
  applyTheme();
};
$("composer").onsubmit = (e) => { e.preventDefault(); submit(); };
$("text").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); submit(); }
});
$("text").addEventListener("input", typed);
$("emoji-btn").onclick = () => toggleEmoji($("emoji-grid").hidden);
$("attach-btn").append(clipIcon());
$("attach-btn").onclick = () => $("file-input").click();
$("file-input").addEventListener("change", () => {
  addFiles($("file-input").files);
  $("file-input").value = "";
  $("text").focus();
});
// Files (a screenshot, say) pasted into the text box are attached; text pastes as text.
$("text").addEventListener("paste", (e) => {
  const files = e.clipboardData ? [...e.clipboardData.files] : [];
  if (!files.length) return;
  e.preventDefault();
  addFiles(files);
});
wireFileDrops();
$("members-btn").onclick = () => setMembers($("members").hidden);
$("members-close").onclick = () => { setMembers(false); $("members-btn").focus(); };
$("menu-btn").onclick = openSidebar;
$("sidebar-close").onclick = closeDrawers;
$("scrim").onclick = closeDrawers;
$("members-more").onclick = () => {
  const r = room(state.current);
  if (!r.membersMore || r.loadingMembers) return;
  r.loadingMembers = true;
  $("members-more").disabled = true;
  send({ type: "members", room: r.name, after: r.membersAfter, ref: ref("members", r.name) });
};
$("browse-btn").onclick = openRooms;
let roomsDebounce = null;
$("rooms-q").addEventListener("input", () => { clearTimeout(roomsDebounce); roomsDebounce = setTimeout(() => searchRooms(false), 200); });
$("rooms-form").onsubmit = async (e) => {
  e.preventDefault();
  clearTimeout(roomsDebounce);
  await searchRooms(false);
  const q = browser.q;
  if (browser.exact) {
    const b = [...$("rooms-results").querySelectorAll("button")].find((x) => x.getAttribute("aria-label").endsWith("# " + q));
    if (b) b.click();
  } else if (!$("rooms-create").hidden) $("rooms-create-btn").focus();
};
$("rooms-more").onclick = () => searchRooms(true);
$("rooms-create-btn").onclick = createRoom;
$("rooms-close").onclick = () => $("rooms-dialog").close();
$("invite-btn").onclick = () => openInvite(state.current);
$("invite-done").onclick = () => { closeInvite(); $("text").focus(); };
$("invite-bar").onsubmit = (e) => { e.preventDefault(); sendInvite(); };
$("invite-user").addEventListener("input", () => { optionIndex = -1; renderOptions(); });
$("invite-user").addEventListener("blur", () => setTimeout(closeOptions, 100));
$("invite-user").addEventListener("keydown", (e) => {
  const list = inviteCandidates($("invite-user").value.trim());
  if (e.key === "ArrowDown" || e.key === "ArrowUp") {
    if (!list.length) return;
    e.preventDefault();
    optionIndex = e.key === "ArrowDown" ? (optionIndex + 1) % list.length : (optionIndex <= 0 ? list.length - 1 : optionIndex - 1);
    renderOptions();
  } else if ((e.key === "Enter" || e.key === "Tab") && optionIndex >= 0 && !$("invite-options").hidden) {
    e.preventDefault();
    $("invite-user").value = list[optionIndex];
    closeOptions();
  } else if (e.key === "Escape") {
    e.stopPropagation();
    if (!$("invite-options").hidden) closeOptions(); else { closeInvite(); $("text").focus(); }
  }
});
$("leave-btn").onclick = askLeave;
$("leave-no").onclick = () => { closeLeave(); $("leave-btn").focus(); };
$("leave-yes").onclick = () => {
  const name = state.leaveRoom;
  closeLeave();
  if (name) send({ type: "leave", room: name, ref: ref("leave", name) });
};
const box = $("messages");
box.addEventListener("scroll", onListScroll, { passive: true });
// Scrolling up when the list cannot scroll (or is already at the top) fires no scroll
// event: the wheel, a touch drag and the keys ask for older pages themselves.
box.addEventListener("wheel", (e) => { if (e.deltaY < 0 && box.scrollTop < 300) loadOlder(); }, { passive: true });
let touchY = null;
box.addEventListener("touchstart", (e) => { touchY = e.touches[0].clientY; }, { passive: true });
box.addEventListener("touchmove", (e) => { if (touchY !== null && e.touches[0].clientY > touchY && box.scrollTop < 300) loadOlder(); }, { passive: true });
box.addEventListener("keydown", (e) => {
  if (["PageUp", "ArrowUp", "Home"].includes(e.key) && box.scrollTop < 300) loadOlder();
  if (e.key === "Escape" && (state.editing || state.confirming)) { state.editing = state.confirming = null; renderAll(); }
  else if (e.key === "Escape" && state.picking) closePicker(state.picking.id);
});
new ResizeObserver(() => { if (state.stick) box.scrollTop = box.scrollHeight; }).observe(box);
$("new-pill").onclick = () => { scrollToBottom(); $("text").focus(); };
$("search-form").onsubmit = (e) => { e.preventDefault(); runSearch(); };
$("search-close").onclick = () => $("search-dialog").close();
for (const d of ["search-dialog", "rooms-dialog", "audit", "account", "viewer"]) closeOnBackdrop($(d));
$("viewer-close").onclick = () => $("viewer").close();
$("viewer").addEventListener("close", viewerClosed);
$("account-btn").onclick = openAccount;
$("account-close").onclick = () => $("account").close();
$("account").addEventListener("close", () => {
  $("account-body").replaceChildren(); // no password left in the page
  if (!$("app").hidden) $("account-btn").focus();
});
$("audit-btn").onclick = openAudit;
$("audit-refresh").onclick = () => { $("audit-status").textContent = "Loading…"; refreshAudit(); };
$("audit-close").onclick = () => $("audit").close();
$("audit").addEventListener("close", () => { if (!$("audit-btn").hidden) $("audit-btn").focus(); });
$("notice-close").onclick = () => { hideNotice(); $("text").focus(); };
$("conn-retry").onclick = () => { if (!state.ws) { state.attempt = 0; connect(); } };
document.addEventListener("keydown", (e) => {
  if (e.key !== "Escape" || e.defaultPrevented) return;
  if (document.querySelector("dialog[open]")) return; // a dialog closes itself
  if (!$("emoji-grid").hidden) { toggleEmoji(false); $("emoji-btn").focus(); return; }
  if (state.picking) { closePicker(state.picking.id); return; }
  if (!$("leave-bar").hidden) { closeLeave(); $("leave-btn").focus(); return; }
  if ($("sidebar").classList.contains("open")) { closeDrawers(); return; }
  if (!$("members").hidden) { setMembers(false); $("members-btn").focus(); }
});
document.addEventListener("click", (e) => {
  if (!$("emoji-grid").hidden && !$("composer").contains(e.target)) toggleEmoji(false);
  // A click anywhere but in the reaction picker (or on its button) closes it.
  if (state.picking && !(e.target.closest && e.target.closest(".react-pop, .react-add"))) { state.picking = null; renderAll(); }
});
document.addEventListener("visibilitychange", () => { if (!document.hidden) markSeen(); });
window.addEventListener("online", () => { if (!state.ws && state.token) { state.attempt = 0; connect(); } });
matchMedia("(max-width: 700px)").addEventListener("change", syncScrim);
// A tab that signed out signs this one out too.
window.addEventListener("storage", (e) => {
  if (e.key === "chatterbox.token" && !e.newValue && state.token) logout(false, "You signed out in another tab.");
});

buildEmoji();
if (state.token && state.me) start(); else { showAuth(); $("auth-user").focus(); }
