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
  pending: new Map(), // client_id -> {room, text, dmTo, waiting, inFlight, failed}, in order
  retryTimer: null,
  invites: new Map(), // room -> who invited me, oldest first
  accepting: null, // the room whose invitation was just accepted: opened once joined
  refs: new Map(), // ref -> {kind, room} for requests whose answer needs context
  refSeq: 0,
  connectedBefore: false,
  typingTimers: new Map(),
  lastTypingSent: 0,
  typingIdle: null,
  admin: false, // `hello` said so: moderation tools are shown
  suspended: new Set(), // lower-cased names suspended, as the audit log tells (admins only)
  audit: [], // the last GET /admin/audit entries, newest first
};

function room(name) {
  let r = state.rooms.get(name);
  if (!r) {
    r = { name, private: name.startsWith("dm:"), member: true, unread: 0, msgs: new Map(),
      hasMore: true, loadingOlder: false, members: [], online: new Set(), cursors: {},
      lastSeen: {}, owner: null, typing: new Map(), dmTo: null, joined: false,
      memberCount: 0, onlineCount: 0, membersMore: false, membersAfter: "", loadingMembers: false,
      catchFrom: 0, seenSentAt: 0, seenTimer: null };
    state.rooms.set(name, r);
  }
  return r;
}
const lastId = (r) => Math.max(0, ...r.msgs.keys());
const dmPeer = (name) => name.split(":").slice(1).find((n) => n !== state.me.toLowerCase()) || name;
const label = (name) => (name.startsWith("dm:") ? "@ " + dmPeer(name) : "# " + name);
const same = (a, b) => String(a).toLowerCase() === String(b).toLowerCase();

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

// `why`, when given, is shown on the sign-in form (the session was ended by the server).
async function logout(callServer, why) {
  if (callServer && state.token) await api("POST", "/logout").catch(() => {});
  localStorage.removeItem("chatterbox.token");
  localStorage.removeItem("chatterbox.user");
  state.token = null;
  if (state.ws) { state.ws.onclose = null; state.ws.close(); state.ws = null; }
  state.rooms.clear();
  $("app").hidden = true;
  $("auth").hidden = false;
  setAdmin(false);
  hideNotice();
  $("auth-error").textContent = why || "";
  if (why && state.me) { $("auth-user").value = state.me; $("auth-pass").focus(); }
  else $("auth-user").focus();
}

// ---- connection -------------------------------------------------------------------

async function start() {
  $("auth").hidden = true;
  $("app").hidden = false;
  $("me-name").textContent = state.me;
  const r = await loadRooms(false);
  if (r && r.status === 401) return logout(false);
  renderRooms();
  connect();
}

// Rooms from GET /rooms (by name, a page at a time): privacy, membership, unread counts.
// The first page, or every page when `hello` named only some of my rooms (rooms_more).
const ROOMS_PAGE = 1000;
async function loadRooms(all) {
  let after = "";
  for (let n = 0; n < 1000; n++) {
    const q = `/rooms?limit=${ROOMS_PAGE}` + (after ? "&after=" + encodeURIComponent(after) : "");
    const r = await api("GET", q).catch(() => null);
    if (!r || r.status !== 200 || !Array.isArray(r.data)) return r;
    for (const info of r.data) {
      const rm = room(info.name);
      rm.private = info.private; rm.member = info.member;
      if (info.name !== state.current) rm.unread = info.unread || 0;
    }
    if (!all || r.data.length < ROOMS_PAGE) return r;
    after = r.data[r.data.length - 1].name;
  }
  return null;
}

function connect() {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(`${proto}//${location.host}/ws?token=${encodeURIComponent(state.token)}`);
  state.ws = ws;
  ws.onmessage = (ev) => { try { handle(JSON.parse(ev.data)); } catch (e) { console.error(e); } };
  ws.onopen = () => { state.backoff = 1000; setConn(""); };
  ws.onclose = (ev) => {
    state.ws = null;
    // 4001: the token is dead (signed out elsewhere, expired, or the account suspended).
    if (ev.code === 4001) {
      return logout(false, ev.reason === "account suspended"
        ? "This account is suspended." : "Your session ended. Sign in again.");
    }
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

// A ref (at most 64 bytes, whatever the room name) for a request whose reply or error
// needs to be told apart.
function ref(kind, roomName) {
  const r = "r" + (++state.refSeq);
  state.refs.set(r, { kind, room: roomName });
  return r;
}
function takeRef(r) {
  const v = r && state.refs.get(r);
  if (v) state.refs.delete(r);
  return v || null;
}

function setConn(text) { $("conn-state").textContent = text; }

function joinRoom(name) {
  const r = room(name);
  const since = lastId(r);
  r.catchFrom = since;
  send(since ? { type: "join", room: name, since } : { type: "join", room: name });
}

// A catch-up (`join` with `since`) that did not hold everything: page forward from
// where it started until the server has no more. Messages merge by id, so the pages
// may overlap what `joined` brought.
function catchUp(r, after) {
  send({ type: "history", room: r.name, after, limit: 200, ref: ref("catchup", r.name) });
}

// ---- server events ----------------------------------------------------------------

function handle(m) {
  switch (m.type) {
    case "hello": {
      // My rooms; the socket receives them all already. A room is joined (for its
      // history and members) when it is opened, and again after a reconnect to catch up
      // on what it missed, so a user with many rooms does not spend a join on each.
      for (const name of m.rooms) room(name).member = true;
      setAdmin(!!m.admin);
      for (const r of state.rooms.values()) {
        if (r.member && r.msgs.size > 0 && r.name !== state.current) joinRoom(r.name);
      }
      const cur = room(state.current);
      if (!(cur.dmTo && cur.msgs.size === 0)) joinRoom(cur.name); // a DM not started yet has no room
      // `rooms_more`: hello named only some of my rooms; the rest come from GET /rooms.
      // After a reconnect the list is fetched again for fresh unread counts.
      if (m.rooms_more || state.connectedBefore) loadRooms(!!m.rooms_more).then(renderRooms);
      state.connectedBefore = true;
      state.invites.clear();
      for (const i of m.invitations || []) state.invites.set(i.room, i.by);
      renderInvites();
      renderRooms();
      // Messages sent while offline are retried with the same client_id (stored once).
      clearTimeout(state.retryTimer);
      state.retryTimer = null;
      for (const [cid, p] of state.pending) {
        p.waiting = p.inFlight = false;
        if (!p.failed) sendPending(cid, p);
      }
      break;
    }
    case "joined": {
      takeRef(m.ref);
      const r = room(m.room);
      Object.assign(r, { private: m.private, owner: m.owner, members: m.members,
        online: new Set(m.online), cursors: m.cursors || {}, lastSeen: m.last_seen || {},
        member: true, joined: true, loadingMembers: false,
        // Past 100 names the lists are cut short: counts from the server, and a
        // "more…" button pages the rest with `members`.
        memberCount: m.member_count ?? m.members.length, onlineCount: m.online_count ?? m.online.length,
        membersMore: !!m.members_more, membersAfter: m.members.length ? m.members[m.members.length - 1] : "" });
      const fresh = r.msgs.size === 0;
      for (const msg of m.history) r.msgs.set(msg.id, msg);
      if (fresh) r.hasMore = m.history.length >= 50;
      if (!m.complete) {
        r.hasMore = true;
        if (r.catchFrom) catchUp(r, r.catchFrom);
      }
      if (state.invites.delete(m.room)) renderInvites();
      renderRooms();
      if (state.accepting === m.room) { state.accepting = null; switchRoom(m.room); break; }
      if (m.room === state.current) { renderAll(); renderMembers(); markSeen(); }
      break;
    }
    case "declined": takeRef(m.ref); if (state.invites.delete(m.room)) renderInvites(); break;
    case "members": {
      takeRef(m.ref);
      const r = room(m.room);
      const known = new Set(r.members);
      for (const x of m.members) {
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
      takeRef(m.ref);
      state.rooms.delete(m.room);
      if (state.invites.delete(m.room)) renderInvites();
      if (m.removed_by) showNotice(`You were removed from #${m.room} by ${m.removed_by}.`);
      if (state.current === m.room) switchRoom("general");
      renderRooms();
      break;
    }
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
      if (m.status === "online") {
        if (!r.online.has(m.user)) r.onlineCount += 1;
        r.online.add(m.user);
      } else {
        r.online.delete(m.user);
        r.onlineCount = Math.max(0, r.onlineCount - 1);
        r.lastSeen[m.user] = m.last_seen;
      }
      r.onlineCount = Math.max(r.onlineCount, r.online.size);
      // Someone not listed yet coming online: a new member, unless the list is cut short
      // (then the "more…" pages bring them in name order). Going offline unlisted: they
      // left or were removed, and stay off the list.
      if (m.status === "online" && !r.members.includes(m.user) && !r.membersMore) { r.members.push(m.user); r.memberCount += 1; }
      if (m.room === state.current) renderMembers();
      break;
    }
    case "seen": {
      const r = room(m.room);
      r.cursors[m.user] = Math.max(r.cursors[m.user] || 0, m.id);
      if (m.room === state.current) renderAll(true);
      break;
    }
    case "invited": {
      // The inviter gets the same event (naming the invitee) as the reply.
      if (m.user && m.user !== state.me) { flash(`Invited ${m.user} to ${m.room}.`); break; }
      state.invites.set(m.room, m.by);
      renderInvites();
      announce(`${m.by} invited you to ${m.room}`);
      break;
    }
    case "history": {
      const asked = takeRef(m.ref);
      const r = room(m.room);
      if (asked && asked.kind === "catchup") {
        for (const msg of m.messages) r.msgs.set(msg.id, msg);
        const last = Math.max(0, ...m.messages.map((x) => x.id));
        if (m.has_more && last) catchUp(r, last);
        if (m.room === state.current) { renderAll(true); markSeen(); }
        renderRooms();
        break;
      }
      r.loadingOlder = false;
      r.hasMore = m.has_more;
      const box = $("messages");
      const before = box.scrollHeight - box.scrollTop;
      for (const msg of m.messages) r.msgs.set(msg.id, msg);
      if (m.room === state.current) { renderAll(); box.scrollTop = box.scrollHeight - before; }
      if (state.jumpTo) jump(state.jumpTo);
      break;
    }
    case "error": onError(m); break;
  }
}

function onError(m) {
  // A typing notice past its rate limit is simply dropped; nothing to tell the user.
  if (m.ref === "typing") return;
  const p = m.ref && state.pending.get(m.ref);
  if (p) {
    // A message past the rate limit goes again once the server says it may.
    if (m.code === "rate_limited") {
      p.waiting = true;
      p.inFlight = false;
      retryLater(m.retry_after_ms);
      return;
    }
    p.failed = m.message || m.code;
    p.waiting = p.inFlight = false;
    if (!state.retryTimer) sendNextWaiting();
    if (p.room === state.current) renderAll(true);
    flash("Not sent: " + p.failed);
    return;
  }
  const asked = takeRef(m.ref);
  if (asked && asked.kind === "decline" && m.code === "no_such_room") {
    // Gone already (accepted or declined elsewhere): nothing to decline.
    if (state.invites.delete(asked.room)) renderInvites();
    return;
  }
  if (asked && asked.kind === "accept") { state.accepting = null; renderInvites(); }
  if (asked && asked.kind === "members") room(asked.room).loadingMembers = false;
  if (asked && asked.kind === "catchup" && m.code === "rate_limited") {
    const r = room(asked.room);
    const from = lastId(r) || r.catchFrom;
    setTimeout(() => catchUp(r, from), Math.max(100, m.retry_after_ms || 1000));
    return;
  }
  flash(m.code === "rate_limited" ? "Slow down a little." : m.message);
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
    if (!state.retryTimer) sendNextWaiting();
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
  sendSeen(r);
  r.unread = 0;
  renderRooms();
}

// At most one `seen` per room every 500 ms: a burst of messages read in a row becomes
// one `seen` for the latest of them.
const SEEN_INTERVAL = 500;
function sendSeen(r) {
  if (r.seenTimer) return; // it will send the latest cursor
  const flush = () => {
    r.seenTimer = null;
    r.seenSentAt = Date.now();
    send({ type: "seen", room: r.name, id: r.cursors[state.me] });
  };
  const wait = r.seenSentAt + SEEN_INTERVAL - Date.now();
  if (wait <= 0) flush(); else r.seenTimer = setTimeout(flush, wait);
}

// ---- rendering --------------------------------------------------------------------

function renderInvites() {
  const ul = $("invite-list");
  const hadFocus = ul.contains(document.activeElement);
  ul.replaceChildren();
  for (const [name, by] of state.invites) {
    const li = el("li", "invite");
    const text = el("p", "invite-text");
    text.append(el("strong", "", by), document.createTextNode(" invited you to "), el("strong", "", label(name)));
    const row = el("div", "invite-actions");
    const accept = el("button", "small", "Accept");
    accept.type = "button";
    accept.setAttribute("aria-label", `Accept the invitation to ${name} from ${by}`);
    accept.disabled = state.accepting === name;
    accept.onclick = () => {
      state.accepting = name;
      accept.disabled = true;
      send({ type: "join", room: name, ref: ref("accept", name) });
    };
    const decline = el("button", "small secondary", "Decline");
    decline.type = "button";
    decline.setAttribute("aria-label", `Decline the invitation to ${name} from ${by}`);
    decline.onclick = () => send({ type: "decline", room: name, ref: ref("decline", name) });
    row.append(accept, decline);
    li.append(text, row);
    ul.append(li);
  }
  const n = state.invites.size;
  $("invites").hidden = n === 0;
  $("menu-badge").hidden = n === 0;
  $("menu-badge").textContent = String(n);
  $("menu-btn").setAttribute("aria-label", n ? `Show rooms (${n} invitation${n > 1 ? "s" : ""})` : "Show rooms");
  // Keyboard users whose invitation just went keep their place in the sidebar.
  if (hadFocus && !ul.contains(document.activeElement)) {
    const next = ul.querySelector("button:not(:disabled)");
    if (next) next.focus(); else if (!state.accepting) $("text").focus();
  }
}

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
    const d = el("div", "msg mine pending" + (p.failed ? " failed" : ""));
    d.dataset.cid = cid;
    const tools = el("div", "tools");
    if (p.failed) {
      tools.append(el("span", "", "Not sent: " + p.failed));
      const again = el("button", "", "Retry");
      again.type = "button";
      again.onclick = () => { p.failed = null; sendPending(cid, p); renderAll(true); };
      const drop = el("button", "", "Discard");
      drop.type = "button";
      drop.onclick = () => { state.pending.delete(cid); renderAll(true); };
      tools.append(again, drop);
    } else {
      tools.append(el("span", "", "sending…"));
    }
    d.append(el("div", "bubble", p.text), tools);
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
    del.onclick = () => { if (confirm("Delete this message?")) { send({ type: "delete", id: msg.id }); $("messages").focus(); } };
    tools.append(edit, del, receipt(r, msg));
  } else if (state.admin && !msg.deleted) {
    // Moderation: an admin deletes anyone's message (audited by the server).
    const del = el("button", "mod", "Delete");
    del.type = "button";
    del.setAttribute("aria-label", `Delete ${msg.user}'s message (admin)`);
    del.onclick = () => {
      if (!confirm(`Delete this message by ${msg.user}?\n\n“${msg.text.slice(0, 120)}”\n\nAs an admin; this goes to the audit log.`)) return;
      send({ type: "delete", id: msg.id });
      $("messages").focus();
    };
    tools.append(del);
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
  // The list is rebuilt: a keyboard user keeps their place (same member, same action).
  const focusKey = ul.contains(document.activeElement) ? document.activeElement.dataset.key : null;
  ul.replaceChildren();
  const count = r.membersMore ? r.memberCount : r.members.length;
  const online = r.membersMore ? r.onlineCount : r.members.filter((n) => r.online.has(n)).length;
  $("member-count").textContent = count ? `${count} · ${online} online` : "";
  $("members-more").hidden = !r.membersMore;
  $("members-more").disabled = r.loadingMembers;
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
    b.dataset.key = "dm:" + name;
    li.append(b);
    if (state.admin && !same(name, state.me)) li.append(memberTools(r, name, who));
    ul.append(li);
  }
  if (focusKey) {
    const again = [...ul.querySelectorAll("button")].find((x) => x.dataset.key === focusKey);
    if (again) again.focus();
  }
  $("invite-btn").hidden = !(r.owner === state.me && r.private && !r.name.startsWith("dm:"));
}

// ---- moderation (admins) ------------------------------------------------------------

function setAdmin(on) {
  const changed = state.admin !== on;
  state.admin = on;
  $("me-admin").hidden = !on;
  $("audit-btn").hidden = !on;
  if (!on) {
    state.suspended.clear();
    state.audit = [];
    if ($("audit").open) $("audit").close();
  } else {
    refreshAudit(); // which accounts are suspended, for the member list
  }
  if (changed && !$("app").hidden) { renderAll(true); renderMembers(); }
}

function adminError(res) {
  if (!res) return "Could not reach the server.";
  if (res.status === 403) return "Only admins can do that.";
  return (res.data && res.data.message) || `The server said ${res.status}.`;
}

function memberTools(r, name, who) {
  const tools = el("div", "member-tools");
  const suspended = state.suspended.has(name.toLowerCase());
  if (suspended) who.insertBefore(el("span", "tag", "suspended"), who.querySelector("small"));
  if (r.name !== "general" && !r.name.startsWith("dm:")) {
    const rm = el("button", "", "Remove from room");
    rm.type = "button";
    rm.dataset.key = "remove:" + name;
    rm.setAttribute("aria-label", `Remove ${name} from ${label(r.name)}`);
    rm.onclick = () => removeMember(r.name, name);
    tools.append(rm);
  }
  const sus = el("button", suspended ? "unsuspend" : "", suspended ? "Unsuspend" : "Suspend");
  sus.type = "button";
  sus.dataset.key = "suspend:" + name;
  sus.setAttribute("aria-label", `${suspended ? "Unsuspend" : "Suspend"} ${name}`);
  sus.onclick = () => suspendUser(name, !suspended);
  tools.append(sus);
  return tools;
}

async function removeMember(roomName, name) {
  if (!confirm(`Remove ${name} from #${roomName}?`)) return;
  const res = await api("POST", `/admin/rooms/${encodeURIComponent(roomName)}/remove`, { user: name }).catch(() => null);
  if (!res || res.status !== 204) { flash("Not removed: " + adminError(res)); return; }
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
  flash(`Removed ${name} from #${roomName}.`);
  announce(`Removed ${name} from #${roomName}.`);
  refreshAudit();
}

async function suspendUser(name, on) {
  if (on && !confirm(`Suspend ${name}? They are signed out everywhere at once and cannot sign in until unsuspended.`)) return;
  const res = await api("POST", `/admin/users/${encodeURIComponent(name)}/${on ? "suspend" : "unsuspend"}`).catch(() => null);
  if (!res || res.status !== 204) { flash((on ? "Not suspended: " : "Not unsuspended: ") + adminError(res)); return; }
  if (on) state.suspended.add(name.toLowerCase()); else state.suspended.delete(name.toLowerCase());
  renderMembers();
  const text = on ? `Suspended ${name}.` : `Unsuspended ${name}.`;
  flash(text);
  announce(text);
  refreshAudit();
}

// The audit log, newest first; it also says who is suspended now (the latest
// suspend/unsuspend of each account among the entries kept).
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
  renderAudit(); // what was loaded last, while the fresh page comes
  if (!d.open) d.showModal();
  $("audit-status").textContent = "Loading…";
  await refreshAudit();
}

function showNotice(text) {
  $("notice-text").textContent = text;
  $("notice").hidden = false;
}
function hideNotice() { $("notice").hidden = true; }

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

// The client_id doubles as the ref, so that an error names the message it refuses.
function sendPending(cid, p) {
  if (p.dmTo) send({ type: "dm", to: p.dmTo, text: p.text, client_id: cid, ref: cid });
  else send({ type: "send", room: p.room, text: p.text, client_id: cid, ref: cid });
}

// Past the rate limit, messages wait in the order they were written: after the wait the
// server asked for, the oldest goes again (same client_id, so it is stored once), and
// each one stored lets the next go. What is written meanwhile queues behind them.
function retryLater(ms) {
  clearTimeout(state.retryTimer);
  state.retryTimer = setTimeout(() => {
    state.retryTimer = null;
    sendNextWaiting();
  }, Math.max(50, Number(ms) || 1000));
}

function sendNextWaiting() {
  for (const [cid, p] of state.pending) {
    if (!p.waiting) continue;
    if (p.inFlight) return;
    p.inFlight = true;
    sendPending(cid, p);
    return;
  }
}

function submit() {
  const box = $("text");
  const text = box.value;
  if (!text.trim()) return;
  const r = room(state.current);
  const cid = "w" + Date.now().toString(36) + Math.random().toString(36).slice(2, 8);
  const p = { room: r.name, text, dmTo: r.msgs.size === 0 && r.dmTo ? r.dmTo : null };
  state.pending.set(cid, p);
  if ([...state.pending.values()].some((q) => q.waiting)) p.waiting = true; // behind them
  else sendPending(cid, p);
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
$("members-more").onclick = () => {
  const r = room(state.current);
  if (!r.membersMore || r.loadingMembers) return;
  r.loadingMembers = true;
  $("members-more").disabled = true;
  send({ type: "members", room: r.name, after: r.membersAfter, ref: ref("members", r.name) });
};
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
$("audit-btn").onclick = openAudit;
$("audit-refresh").onclick = () => { $("audit-status").textContent = "Loading…"; refreshAudit(); };
$("audit-close").onclick = () => $("audit").close();
$("audit").addEventListener("close", () => { if (!$("audit-btn").hidden) $("audit-btn").focus(); });
$("notice-close").onclick = () => { hideNotice(); $("text").focus(); };
document.addEventListener("keydown", (e) => {
  if (e.key !== "Escape") return;
  if ($("audit").open) return; // the dialog closes itself
  if (!$("notice").hidden && $("notice").contains(document.activeElement)) { hideNotice(); $("text").focus(); return; }
  if (!$("emoji-grid").hidden) { toggleEmoji(false); $("emoji-btn").focus(); }
  else if (!$("search-results").hidden) $("search-results").hidden = true;
  else if (!$("members").hidden) $("members-btn").click();
  document.querySelector(".sidebar").classList.remove("open");
});
document.addEventListener("visibilitychange", () => { if (!document.hidden) markSeen(); });

buildEmoji();
if (state.token && state.me) start(); else { $("auth").hidden = false; $("auth-user").focus(); }
