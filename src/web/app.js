"use strict";
// Chatterbox web client: plain DOM, one WebSocket, no libraries. Message text is only
// ever set with textContent; links are built as elements for http(s) URLs only.

const $ = (id) => document.getElementById(id);
const el = (tag, cls, text) => {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
};

const state = {
  token: localStorage.getItem("chatterbox.token"),
  me: localStorage.getItem("chatterbox.user"),
  rooms: new Map(),
  current: "general",
  ws: null,
  backoff: 1000,
  pending: new Map(), // client_id -> {room, text, dmTo}
  typingTimers: new Map(),
  lastTypingSent: 0,
  typingIdle: null,
};

function room(name) {
  let r = state.rooms.get(name);
  if (!r) {
    r = { name, private: name.startsWith("dm:"), member: true, unread: 0, msgs: new Map(),
      hasMore: true, loadingOlder: false, members: [], online: new Set(), cursors: {},
      lastSeen: {}, owner: null, typing: new Map(), dmTo: null, joined: false };
    state.rooms.set(name, r);
  }
  return r;
}
const lastId = (r) => Math.max(0, ...r.msgs.keys());
const dmPeer = (name) => name.split(":").slice(1).find((n) => n !== state.me.toLowerCase()) || name;
const label = (name) => (name.startsWith("dm:") ? "@ " + dmPeer(name) : "# " + name);

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
  };
  return messages[r.data && r.data.error] || (r.data && r.data.message) || "Something went wrong.";
}

async function signIn(register) {
  const username = $("auth-user").value.trim();
  const password = $("auth-pass").value;
  $("auth-error").textContent = "";
  if (register) {
    const r = await api("POST", "/register", { username, password });
    if (r.status !== 201) { $("auth-error").textContent = authError(r); return; }
  }
  const r = await api("POST", "/login", { username, password });
  if (r.status !== 200) { $("auth-error").textContent = authError(r); return; }
  state.token = r.data.token;
  state.me = r.data.username;
  localStorage.setItem("chatterbox.token", state.token);
  localStorage.setItem("chatterbox.user", state.me);
  start();
}

async function logout(callServer) {
  if (callServer && state.token) await api("POST", "/logout").catch(() => {});
  localStorage.removeItem("chatterbox.token");
  localStorage.removeItem("chatterbox.user");
  state.token = null;
  if (state.ws) { state.ws.onclose = null; state.ws.close(); state.ws = null; }
  state.rooms.clear();
  $("app").hidden = true;
  $("auth").hidden = false;
  $("auth-user").focus();
}

// ---- connection -------------------------------------------------------------------

async function start() {
  $("auth").hidden = true;
  $("app").hidden = false;
  $("me-name").textContent = state.me;
  const r = await api("GET", "/rooms").catch(() => null);
  if (r && r.status === 401) return logout(false);
  if (r && r.status === 200) {
    for (const info of r.data) {
      const rm = room(info.name);
      rm.private = info.private; rm.member = info.member; rm.unread = info.unread;
    }
  }
  renderRooms();
  connect();
}

function connect() {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(`${proto}//${location.host}/ws?token=${encodeURIComponent(state.token)}`);
  state.ws = ws;
  ws.onmessage = (ev) => { try { handle(JSON.parse(ev.data)); } catch (e) { console.error(e); } };
  ws.onopen = () => { state.backoff = 1000; setConn(""); };
  ws.onclose = (ev) => {
    state.ws = null;
    if (ev.code === 4001) return logout(false);
    for (const r of state.rooms.values()) r.joined = false;
    setConn("reconnecting…");
    setTimeout(connect, state.backoff);
    state.backoff = Math.min(state.backoff * 2, 15000);
  };
}

function send(obj) {
  if (state.ws && state.ws.readyState === WebSocket.OPEN) { state.ws.send(JSON.stringify(obj)); return true; }
  return false;
}

function setConn(text) { $("conn-state").textContent = text; }

function joinRoom(name) {
  const r = room(name);
  const since = lastId(r);
  send(since ? { type: "join", room: name, since } : { type: "join", room: name });
}

// ---- server events ----------------------------------------------------------------

function handle(m) {
  switch (m.type) {
    case "hello": {
      for (const name of m.rooms) joinRoom(name);
      if (!m.rooms.includes(state.current)) joinRoom(state.current);
      // Messages sent while offline are retried with the same client_id (stored once).
      for (const [cid, p] of state.pending) sendPending(cid, p);
      break;
    }
    case "joined": {
      const r = room(m.room);
      Object.assign(r, { private: m.private, owner: m.owner, members: m.members,
        online: new Set(m.online), cursors: m.cursors || {}, lastSeen: m.last_seen || {},
        member: true, joined: true });
      const fresh = r.msgs.size === 0;
      for (const msg of m.history) r.msgs.set(msg.id, msg);
      if (fresh) r.hasMore = m.history.length >= 50;
      if (!m.complete) r.hasMore = true;
      renderRooms();
      if (m.room === state.current) { renderAll(); markSeen(); }
      break;
    }
    case "left": state.rooms.delete(m.room); if (state.current === m.room) switchRoom("general"); renderRooms(); break;
    case "message": onMessage(m); break;
    case "edited": case "deleted": {
      const r = room(m.room);
      const msg = r.msgs.get(m.id);
      if (msg) {
        if (m.type === "edited") { msg.text = m.text; msg.edited = true; }
        else { msg.text = ""; msg.deleted = true; }
        if (m.room === state.current) renderAll(true);
      }
      break;
    }
    case "typing": onTyping(m); break;
    case "presence": {
      const r = room(m.room);
      if (m.status === "online") r.online.add(m.user); else { r.online.delete(m.user); r.lastSeen[m.user] = m.last_seen; }
      if (!r.members.includes(m.user)) r.members.push(m.user);
      if (m.room === state.current) renderMembers();
      break;
    }
    case "seen": {
      const r = room(m.room);
      r.cursors[m.user] = Math.max(r.cursors[m.user] || 0, m.id);
      if (m.room === state.current) renderAll(true);
      break;
    }
    case "invited": joinRoom(m.room); announce(`${m.by} added you to ${m.room}`); break;
    case "history": {
      const r = room(m.room);
      r.loadingOlder = false;
      r.hasMore = m.has_more;
      const box = $("messages");
      const before = box.scrollHeight - box.scrollTop;
      for (const msg of m.messages) r.msgs.set(msg.id, msg);
      if (m.room === state.current) { renderAll(); box.scrollTop = box.scrollHeight - before; }
      if (state.jumpTo) jump(state.jumpTo);
      break;
    }
    case "error":
      // A typing notice past its rate limit is simply dropped; nothing to tell the user.
      if (m.ref !== "typing") flash(m.code === "rate_limited" ? "Slow down a little." : m.message);
      break;
  }
}

function onMessage(m) {
  const r = room(m.room);
  r.member = true;
  const known = r.msgs.has(m.id);
  r.msgs.set(m.id, m);
  if (m.client_id && state.pending.has(m.client_id) && m.user === state.me) {
    const p = state.pending.get(m.client_id);
    state.pending.delete(m.client_id);
    if (p.dmTo) room(m.room).dmTo = null;
  }
  r.typing.delete(m.user);
  if (m.room === state.current) {
    const box = $("messages");
    const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 80;
    renderAll(!atBottom);
    if (atBottom) box.scrollTop = box.scrollHeight;
    markSeen();
    renderTyping();
  } else if (!known && m.user !== state.me) {
    r.unread += 1;
  }
  if (!known && m.user !== state.me) announce(`${m.user} in ${label(m.room)}: ${m.deleted ? "message deleted" : m.text}`);
  renderRooms();
}

function onTyping(m) {
  const r = room(m.room);
  clearTimeout(state.typingTimers.get(m.room + "/" + m.user));
  if (m.active) {
    r.typing.set(m.user, true);
    state.typingTimers.set(m.room + "/" + m.user, setTimeout(() => { r.typing.delete(m.user); renderTyping(); }, 6000));
  } else {
    r.typing.delete(m.user);
  }
  renderTyping();
}

function markSeen() {
  const r = room(state.current);
  const id = lastId(r);
  if (!id || document.hidden || (r.cursors[state.me] || 0) >= id) return;
  r.cursors[state.me] = id;
  send({ type: "seen", room: r.name, id });
  r.unread = 0;
  renderRooms();
}

// ---- rendering --------------------------------------------------------------------

function renderRooms() {
  for (const [listId, dms] of [["room-list", false], ["dm-list", true]]) {
    const ul = $(listId);
    ul.replaceChildren();
    const names = [...state.rooms.values()]
      .filter((r) => r.member && r.name.startsWith("dm:") === dms)
      .map((r) => r.name).sort();
    for (const name of names) {
      const r = state.rooms.get(name);
      const li = el("li");
      const b = el("button");
      b.type = "button";
      b.append(el("span", "", label(name) + (r.private && !dms ? " 🔒" : "")));
      if (r.unread > 0 && name !== state.current) {
        b.append(el("span", "badge", String(r.unread)));
        b.setAttribute("aria-label", `${label(name)}, ${r.unread} unread`);
      }
      if (name === state.current) b.setAttribute("aria-current", "true");
      b.onclick = () => switchRoom(name);
      li.append(b);
      ul.append(li);
    }
  }
}

function dayLabel(d) {
  const today = new Date(); today.setHours(0, 0, 0, 0);
  const day = new Date(d); day.setHours(0, 0, 0, 0);
  const diff = Math.round((today - day) / 86400000);
  if (diff === 0) return "Today";
  if (diff === 1) return "Yesterday";
  return d.toLocaleDateString(undefined, { weekday: "short", year: "numeric", month: "short", day: "numeric" });
}

function linkify(parent, text) {
  const re = /https?:\/\/[^\s<>"']+/g;
  let last = 0;
  for (const m of text.matchAll(re)) {
    parent.append(document.createTextNode(text.slice(last, m.index)));
    const a = el("a", "", m[0]);
    a.href = m[0];
    a.target = "_blank";
    a.rel = "noopener noreferrer";
    parent.append(a);
    last = m.index + m[0].length;
  }
  parent.append(document.createTextNode(text.slice(last)));
}

function receipt(r, msg) {
  const seenBy = Object.entries(r.cursors)
    .filter(([u, c]) => u !== state.me && c >= msg.id).map(([u]) => u);
  const s = el("span", "receipt", seenBy.length ? "●" : "○");
  s.title = seenBy.length ? "Seen by " + seenBy.join(", ") : "Delivered";
  s.setAttribute("aria-label", s.title);
  return s;
}

function renderAll(keepScroll) {
  const r = room(state.current);
  const box = $("messages");
  const prev = box.scrollTop;
  box.replaceChildren();
  const ids = [...r.msgs.keys()].sort((a, b) => a - b);
  let lastDay = "";
  if (!r.hasMore && ids.length) box.append(el("div", "day", "Beginning of " + label(r.name)));
  for (const id of ids) {
    const msg = r.msgs.get(id);
    const when = new Date(msg.ts);
    const day = dayLabel(when);
    if (day !== lastDay) { box.append(el("div", "day", day)); lastDay = day; }
    box.append(renderMessage(r, msg, when));
  }
  for (const [cid, p] of state.pending) {
    if (p.room !== r.name) continue;
    const d = el("div", "msg mine pending");
    d.dataset.cid = cid;
    d.append(el("div", "bubble", p.text), el("div", "tools", "sending…"));
    box.append(d);
  }
  if (keepScroll) box.scrollTop = prev; else box.scrollTop = box.scrollHeight;
}

function renderMessage(r, msg, when) {
  const mine = msg.user === state.me;
  const d = el("div", "msg" + (mine ? " mine" : "") + (msg.deleted ? " deleted" : ""));
  d.id = "m" + msg.id;
  const time = when.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
  d.append(el("div", "meta", (mine ? "" : msg.user + " · ") + time));
  const bubble = el("div", "bubble");
  if (msg.deleted) bubble.textContent = "message deleted";
  else linkify(bubble, msg.text);
  d.append(bubble);
  const tools = el("div", "tools");
  if (msg.edited && !msg.deleted) tools.append(el("span", "", "edited"));
  if (mine && !msg.deleted) {
    const edit = el("button", "", "Edit");
    edit.type = "button";
    edit.onclick = () => {
      const text = prompt("Edit message", msg.text);
      if (text !== null && text.trim()) send({ type: "edit", id: msg.id, text });
    };
    const del = el("button", "", "Delete");
    del.type = "button";
    del.onclick = () => { if (confirm("Delete this message?")) send({ type: "delete", id: msg.id }); };
    tools.append(edit, del, receipt(r, msg));
  }
  if (tools.childNodes.length) d.append(tools);
  return d;
}

function renderTyping() {
  const r = room(state.current);
  const who = [...r.typing.keys()].filter((u) => u !== state.me);
  $("typing").textContent = who.length === 0 ? "" : who.length === 1 ? `${who[0]} is typing…` : `${who.join(", ")} are typing…`;
}

function renderMembers() {
  const r = room(state.current);
  const ul = $("member-list");
  ul.replaceChildren();
  for (const name of [...r.members].sort()) {
    const li = el("li");
    const b = el("button");
    b.type = "button";
    const on = r.online.has(name);
    b.append(el("span", "dot" + (on ? " on" : "")));
    const who = el("span", "", name + (name === state.me ? " (you)" : ""));
    if (!on && r.lastSeen[name]) who.append(el("small", "", "last seen " + new Date(r.lastSeen[name]).toLocaleString()));
    b.append(who);
    b.title = name === state.me ? "You" : `Message ${name} directly`;
    b.onclick = () => { if (name !== state.me) openDm(name); };
    li.append(b);
    ul.append(li);
  }
  $("invite-btn").hidden = !(r.owner === state.me && r.private && !r.name.startsWith("dm:"));
}

function switchRoom(name) {
  state.current = name;
  const r = room(name);
  r.unread = 0;
  $("room-title").textContent = label(name);
  document.querySelector(".sidebar").classList.remove("open");
  if (!r.joined && !r.dmTo) joinRoom(name);
  renderRooms();
  renderAll();
  renderMembers();
  renderTyping();
  markSeen();
  $("text").focus();
}

function openDm(user) {
  const name = "dm:" + [state.me.toLowerCase(), user.toLowerCase()].sort().join(":");
  if (state.rooms.has(name) && state.rooms.get(name).member) return switchRoom(name);
  const r = room(name);
  r.dmTo = user;
  r.members = [state.me, user];
  r.hasMore = false;
  switchRoom(name);
}

function jump(id) {
  const target = document.getElementById("m" + id);
  if (!target) return;
  state.jumpTo = null;
  target.classList.add("highlight");
  target.scrollIntoView({ block: "center" });
  setTimeout(() => target.classList.remove("highlight"), 2500);
}

let flashTimer = null;
function flash(text) {
  $("typing").textContent = text;
  clearTimeout(flashTimer);
  flashTimer = setTimeout(renderTyping, 4000);
}
function announce(text) { $("announce").textContent = text; }

// ---- composing --------------------------------------------------------------------

function sendPending(cid, p) {
  if (p.dmTo) send({ type: "dm", to: p.dmTo, text: p.text, client_id: cid });
  else send({ type: "send", room: p.room, text: p.text, client_id: cid });
}

function submit() {
  const box = $("text");
  const text = box.value;
  if (!text.trim()) return;
  const r = room(state.current);
  const cid = "w" + Date.now().toString(36) + Math.random().toString(36).slice(2, 8);
  const p = { room: r.name, text, dmTo: r.msgs.size === 0 && r.dmTo ? r.dmTo : null };
  state.pending.set(cid, p);
  sendPending(cid, p);
  box.value = "";
  autosize();
  stopTyping();
  renderAll();
}

function stopTyping() {
  if (state.lastTypingSent) send({ type: "typing", room: state.current, active: false, ref: "typing" });
  state.lastTypingSent = 0;
  clearTimeout(state.typingIdle);
}

function typed() {
  autosize();
  const r = room(state.current);
  if (r.dmTo && r.msgs.size === 0) return;
  const now = Date.now();
  if (now - state.lastTypingSent > 2500) {
    send({ type: "typing", room: state.current, active: true, ref: "typing" });
    state.lastTypingSent = now;
  }
  clearTimeout(state.typingIdle);
  state.typingIdle = setTimeout(stopTyping, 3000);
}

function autosize() {
  const t = $("text");
  t.style.height = "auto";
  t.style.height = Math.min(t.scrollHeight, 160) + "px";
}

const EMOJI = "😀 😂 😊 😍 😎 🤔 😢 😡 👍 👎 👏 🙏 🎉 🔥 ❤️ 💯 ✅ ❌ 👀 🚀 ☕ 🍕 🐛 💡 🤝 👋 🙈 🥳 😴 🤯 ✨ 🌟".split(" ");

function buildEmoji() {
  const grid = $("emoji-grid");
  for (const e of EMOJI) {
    const b = el("button", "", e);
    b.type = "button";
    b.setAttribute("role", "menuitem");
    b.setAttribute("aria-label", "Insert " + e);
    b.onclick = () => {
      const t = $("text");
      const at = t.selectionStart ?? t.value.length;
      t.value = t.value.slice(0, at) + e + t.value.slice(t.selectionEnd ?? at);
      toggleEmoji(false);
      t.focus();
      t.selectionStart = t.selectionEnd = at + e.length;
    };
    grid.append(b);
  }
}

function toggleEmoji(open) {
  $("emoji-grid").hidden = !open;
  $("emoji-btn").setAttribute("aria-expanded", String(open));
  if (open) $("emoji-grid").querySelector("button").focus();
}

// ---- wiring -----------------------------------------------------------------------

$("auth-form").onsubmit = (e) => { e.preventDefault(); signIn(false); };
$("register-btn").onclick = () => signIn(true);
$("logout-btn").onclick = () => logout(true);
$("composer").onsubmit = (e) => { e.preventDefault(); submit(); };
$("text").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); submit(); }
});
$("text").addEventListener("input", typed);
$("text").addEventListener("blur", stopTyping);
$("emoji-btn").onclick = () => toggleEmoji($("emoji-grid").hidden);
$("members-btn").onclick = () => {
  const open = $("members").hidden;
  $("members").hidden = !open;
  $("members-btn").setAttribute("aria-expanded", String(open));
  if (open) renderMembers();
};
$("menu-btn").onclick = () => document.querySelector(".sidebar").classList.toggle("open");
$("new-room").onsubmit = (e) => {
  e.preventDefault();
  const name = $("new-room-name").value.trim().toLowerCase();
  if (!name) return;
  const priv = $("new-room-private").checked;
  if (state.rooms.has(name) || !priv) { room(name); switchRoom(name); }
  else { send({ type: "create_room", room: name, private: true }); state.current = name; $("room-title").textContent = label(name); }
  $("new-room-name").value = "";
};
$("invite-btn").onclick = () => {
  const user = prompt("Invite which user to " + state.current + "?");
  if (user && user.trim()) send({ type: "invite", room: state.current, user: user.trim() });
};
$("messages").addEventListener("scroll", () => {
  const r = room(state.current);
  const box = $("messages");
  if (box.scrollTop < 60 && r.hasMore && !r.loadingOlder && r.msgs.size) {
    r.loadingOlder = true;
    send({ type: "history", room: r.name, before: Math.min(...r.msgs.keys()), limit: 50 });
  }
  if (box.scrollHeight - box.scrollTop - box.clientHeight < 40) markSeen();
});
$("search-form").onsubmit = async (e) => {
  e.preventDefault();
  const q = $("search-q").value.trim();
  if (!q) return;
  const r = await api("GET", "/search?q=" + encodeURIComponent(q));
  const ul = $("search-list");
  ul.replaceChildren();
  const results = (r.data && r.data.messages) || [];
  if (!results.length) ul.append(el("li", "muted", "No messages found."));
  for (const m of results) {
    const li = el("li");
    const b = el("button");
    b.type = "button";
    b.append(el("strong", "", `${label(m.room)} · ${m.user}: `), document.createTextNode(m.text));
    b.onclick = () => {
      $("search-results").hidden = true;
      switchRoom(m.room);
      const rm = room(m.room);
      if (rm.msgs.has(m.id)) jump(m.id);
      else { state.jumpTo = m.id; send({ type: "history", room: m.room, before: m.id + 26, limit: 50 }); }
    };
    li.append(b);
    ul.append(li);
  }
  $("search-results").hidden = false;
};
$("search-close").onclick = () => { $("search-results").hidden = true; };
document.addEventListener("keydown", (e) => {
  if (e.key !== "Escape") return;
  if (!$("emoji-grid").hidden) { toggleEmoji(false); $("emoji-btn").focus(); }
  else if (!$("search-results").hidden) $("search-results").hidden = true;
  else if (!$("members").hidden) $("members-btn").click();
  document.querySelector(".sidebar").classList.remove("open");
});
document.addEventListener("visibilitychange", () => { if (!document.hidden) markSeen(); });

buildEmoji();
if (state.token && state.me) start(); else { $("auth").hidden = false; $("auth-user").focus(); }
