"use strict";
// Chatterbox admin dashboard (/admin): plain DOM, no libraries. It signs in with the token
// the chat page keeps in localStorage ("chatterbox.token"), reads GET /admin/stats every
// 2 s (live numbers, ten minutes of per-second samples drawn as line charts on canvases,
// who is online, rooms), and moderates: disconnect, suspend and unsuspend a user, create
// an invite code (shown once), read the audit log. Every destructive action asks inline
// first; nothing uses confirm() or prompt(). Text from the server is only set with
// textContent.

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

const POLL_MS = 2000, AUDIT_EVERY = 5, WINDOW_MS = 10 * 60 * 1000, MAX_ROOMS = 100;
const token = localStorage.getItem("chatterbox.token");
const state = { stats: null, polls: 0, timer: null, onlineSig: "", roomsSig: "", auditSig: "", confirm: null, suspended: new Set() };

// ---- theme (the chat page's: prefers-color-scheme, or the remembered toggle) ----------

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
  if (state.stats) drawCharts();
}
applyTheme();
matchMedia("(prefers-color-scheme: dark)").addEventListener("change", applyTheme);
window.addEventListener("storage", (e) => {
  if (e.key === "chatterbox.theme") applyTheme();
  if (e.key === "chatterbox.token" && !e.newValue) refuse("You signed out.", "Sign in on the chat page, then come back.");
});
$("theme-btn").onclick = () => {
  localStorage.setItem("chatterbox.theme", effectiveDark() ? "light" : "dark");
  applyTheme();
};

// ---- the API --------------------------------------------------------------------------

async function api(method, path, body) {
  const headers = { Authorization: "Bearer " + token };
  if (body) headers["Content-Type"] = "application/json";
  const res = await fetch(path, { method, headers, body: body ? JSON.stringify(body) : undefined });
  let data = null;
  try { data = await res.json(); } catch (_) { /* 204 */ }
  return { status: res.status, data };
}
function problemText(r) {
  if (!r) return "Could not reach the server.";
  return (r.data && r.data.message) || `The server answered ${r.status}.`;
}

// Not signed in, not an admin, or the session ended: say so, with the way back.
function refuse(title, text) {
  clearTimeout(state.timer);
  state.timer = null;
  $("dash").hidden = true;
  $("refusal").hidden = false;
  $("refusal-title").textContent = title;
  $("refusal-text").textContent = text;
  $("updated").textContent = "";
}

// ---- polling --------------------------------------------------------------------------

async function poll() {
  clearTimeout(state.timer);
  // In cluster mode the answer also covers every node (`cluster`); otherwise it is null.
  const r = await api("GET", "/admin/stats?scope=cluster").catch(() => null);
  if (r && r.status === 401) return refuse("Your session ended", "Sign in again on the chat page, then come back.");
  if (r && r.status === 403) return refuse("Admins only", "This dashboard is for admins. Your account is not one.");
  if (!r || r.status !== 200) {
    showProblem(r ? `The server answered ${r.status}; retrying.` : "Cannot reach the server; retrying.");
  } else {
    showProblem(null);
    $("refusal").hidden = true;
    $("dash").hidden = false;
    state.stats = r.data;
    render();
    if (state.polls++ % AUDIT_EVERY === 0) loadAudit();
  }
  state.timer = setTimeout(poll, POLL_MS);
}
function showProblem(text) {
  $("problem").hidden = !text;
  $("problem").textContent = text || "";
}

function render() {
  const s = state.stats;
  const last = s.series && s.series.length ? s.series[s.series.length - 1] : {};
  const now = {
    connections: s.connections,
    users_online: (s.online_users || []).length,
    messages_per_sec: last.messages_per_sec ?? 0,
    deliveries_per_sec: last.deliveries_per_sec ?? 0,
  };
  for (const [k, v] of Object.entries(now)) document.querySelector(`[data-now=${k}]`).textContent = num(v);
  $("totals").textContent = `Over the last minute: ${num(s.messages_stored_per_sec)} messages/s stored, ` +
    `${num(s.deliveries_per_sec)} deliveries/s. Since start: ${s.messages_stored_total} messages, ` +
    `${s.deliveries_total} deliveries. ${s.websockets} WebSockets open. Storage ${s.storage_ok ? "ok" : "failing"}.`;
  $("updated").textContent = "Updated " + new Date().toLocaleTimeString();
  renderCluster();
  drawCharts();
  renderOnline();
  renderRooms();
}
const num = (v) => (Number.isInteger(v) ? String(v) : Number(v || 0).toFixed(1));

// Cluster mode: which node answered, and every node as of its last heartbeat.
function renderCluster() {
  const c = state.stats.cluster;
  $("cluster").hidden = !c;
  if (!c) return;
  $("cluster-summary").textContent = `This page is served by ${state.stats.node}. ` +
    `All ${c.nodes.length} nodes: ${c.websockets} WebSockets, ${c.users_online} users online, ` +
    `${c.messages_stored_total} messages stored since they started.`;
  const body = $("cluster-nodes");
  body.replaceChildren(...c.nodes.map((n) => {
    const tr = document.createElement("tr");
    const heard = n.heard_ms_ago === 0 ? "this node" : `${Math.round(n.heard_ms_ago / 1000)} s ago`;
    for (const [i, v] of [n.node, n.websockets, n.users_online, n.messages_stored_total, heard].entries()) {
      const td = document.createElement("td");
      td.textContent = String(v);
      if (i > 0 && i < 4) td.className = "num";
      tr.append(td);
    }
    return tr;
  }));
}

// ---- charts ---------------------------------------------------------------------------
// One canvas per series: the last ten minutes ending at the newest sample (the server's
// clock), from 0 to the peak. Colours come from the page's CSS variables, so both themes
// draw legibly. Each canvas is an image whose accessible name states now and peak.

function drawCharts() {
  const series = (state.stats && state.stats.series) || [];
  const css = getComputedStyle(document.documentElement);
  const line = css.getPropertyValue("--link").trim() || "#1d4ed8";
  const grid = css.getPropertyValue("--border").trim() || "#d1d5db";
  const end = series.length ? series[series.length - 1].t : Date.now();
  for (const fig of document.querySelectorAll(".chart")) {
    const key = fig.dataset.key;
    const name = fig.querySelector(".chart-name").textContent;
    const pts = series.map((p) => [p.t, Number(p[key]) || 0]).filter(([t]) => t >= end - WINDOW_MS);
    const peak = pts.reduce((m, [, v]) => Math.max(m, v), 0);
    const current = pts.length ? pts[pts.length - 1][1] : 0;
    const canvas = fig.querySelector("canvas");
    const dpr = window.devicePixelRatio || 1;
    const w = Math.max(100, Math.round(canvas.clientWidth || 300)), h = Math.max(40, Math.round(canvas.clientHeight || 80));
    if (canvas.width !== w * dpr || canvas.height !== h * dpr) { canvas.width = w * dpr; canvas.height = h * dpr; }
    const g = canvas.getContext("2d");
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, w, h);
    const top = Math.max(peak, 1) * 1.1;
    const x = (t) => ((t - (end - WINDOW_MS)) / WINDOW_MS) * (w - 2) + 1;
    const y = (v) => h - 2 - (v / top) * (h - 6);
    g.strokeStyle = grid;
    g.lineWidth = 1;
    g.beginPath();
    g.moveTo(0, y(0) + .5); g.lineTo(w, y(0) + .5);
    g.moveTo(0, y(peak) + .5); g.lineTo(w, y(peak) + .5);
    g.stroke();
    if (pts.length) {
      g.beginPath();
      pts.forEach(([t, v], i) => (i ? g.lineTo(x(t), y(v)) : g.moveTo(x(t), y(v))));
      g.strokeStyle = line;
      g.lineWidth = 2;
      g.lineJoin = "round";
      g.stroke();
      g.lineTo(x(pts[pts.length - 1][0]), y(0));
      g.lineTo(x(pts[0][0]), y(0));
      g.closePath();
      g.globalAlpha = .15;
      g.fillStyle = line;
      g.fill();
      g.globalAlpha = 1;
    }
    canvas.dataset.peak = String(peak);
    canvas.dataset.points = String(pts.length);
    canvas.setAttribute("aria-label", `${name} over the last 10 minutes: now ${num(current)}, peak ${num(peak)}.`);
    fig.querySelector(".chart-peak").textContent = "peak " + num(peak);
  }
}
new ResizeObserver(() => { if (state.stats) drawCharts(); }).observe(document.body);

// ---- online users, rooms --------------------------------------------------------------

function renderOnline() {
  const users = [...(state.stats.online_users || [])].sort((a, b) => a.localeCompare(b));
  $("online-count").textContent = `(${users.length})`;
  const sig = JSON.stringify(users);
  if (sig === state.onlineSig) return;
  state.onlineSig = sig;
  const focused = document.activeElement && $("online-list").contains(document.activeElement)
    ? document.activeElement.getAttribute("aria-label") : null;
  const ul = $("online-list");
  ul.replaceChildren(...users.map((name) => {
    const li = el("li", "user");
    li.append(el("span", "user-name", name),
      button("Disconnect", "secondary small", (e) => askDisconnect(name, e.target), "Disconnect " + name),
      button("Suspend", "secondary small", (e) => askSuspend(name, e.target), "Suspend " + name));
    return li;
  }));
  if (!users.length) ul.append(el("li", "muted", "Nobody is connected."));
  if (focused) {
    const again = [...ul.querySelectorAll("button")].find((b) => b.getAttribute("aria-label") === focused);
    (again || $("user-name")).focus();
  }
}

function renderRooms() {
  const rooms = [...(state.stats.rooms || [])].sort((a, b) => b.online - a.online || b.members - a.members || a.name.localeCompare(b.name));
  $("rooms-count").textContent = `(${rooms.length})`;
  const shown = rooms.slice(0, MAX_ROOMS);
  const sig = JSON.stringify(shown);
  if (sig === state.roomsSig) return;
  state.roomsSig = sig;
  $("rooms-list").replaceChildren(...shown.map((r) => {
    const tr = el("tr");
    const kind = r.name.startsWith("dm:") ? "direct" : r.private ? "private" : "public";
    tr.append(el("td", "", r.name.startsWith("dm:") ? "@ " + r.name.slice(3).replace(":", " & ") : "# " + r.name),
      el("td", "", kind), el("td", "num", String(r.members)), el("td", "num", String(r.online)));
    return tr;
  }));
  $("rooms-more").hidden = rooms.length <= MAX_ROOMS;
  $("rooms-more").textContent = `The ${MAX_ROOMS} busiest shown, of ${rooms.length}.`;
}

// ---- moderation -----------------------------------------------------------------------
// A click asks first (a bar under the list, with the question and Confirm / Cancel);
// Confirm does it, Cancel or Escape puts focus back where it was.

function ask(question, yesText, action, opener) {
  state.confirm = { action, opener };
  $("confirm").hidden = false;
  $("confirm-text").textContent = question;
  $("confirm-yes").textContent = yesText;
  $("confirm-yes").focus();
}
function closeConfirm(refocus) {
  const c = state.confirm;
  state.confirm = null;
  $("confirm").hidden = true;
  if (refocus && c && c.opener && c.opener.isConnected) c.opener.focus();
}
$("confirm-yes").onclick = async () => {
  const c = state.confirm;
  if (!c) return;
  closeConfirm(false);
  await c.action();
  if (c.opener && c.opener.isConnected) c.opener.focus(); else $("user-name").focus();
};
$("confirm-no").onclick = () => closeConfirm(true);
$("confirm").addEventListener("keydown", (e) => { if (e.key === "Escape") { e.preventDefault(); closeConfirm(true); } });

function userStatus(text, bad) {
  $("user-status").textContent = text;
  $("user-status").classList.toggle("error", !!bad);
}
function typedName() {
  const name = $("user-name").value.trim();
  if (!name) { userStatus("Type a username first.", true); $("user-name").focus(); }
  return name;
}

function askDisconnect(name, opener) {
  ask(`Disconnect ${name}? Their open connections close now; they may reconnect.`, `Disconnect ${name}`, async () => {
    const r = await api("POST", `/admin/users/${encodeURIComponent(name)}/disconnect`).catch(() => null);
    if (r && r.status === 204) { userStatus(`${name} was disconnected.`); loadAudit(); poll(); } else userStatus(`Not disconnected: ${problemText(r)}`, true);
  }, opener);
}
function askSuspend(name, opener) {
  ask(`Suspend ${name}? They are signed out everywhere and cannot sign in until unsuspended.`, `Suspend ${name}`, async () => {
    const r = await api("POST", `/admin/users/${encodeURIComponent(name)}/suspend`).catch(() => null);
    if (r && r.status === 204) { userStatus(`${name} is suspended.`); loadAudit(); poll(); } else userStatus(`Not suspended: ${problemText(r)}`, true);
  }, opener);
}
async function unsuspend(name) {
  const r = await api("POST", `/admin/users/${encodeURIComponent(name)}/unsuspend`).catch(() => null);
  if (r && r.status === 204) { userStatus(`${name} may sign in again.`); loadAudit(); } else userStatus(`Not unsuspended: ${problemText(r)}`, true);
}
$("user-disconnect").onclick = (e) => { const n = typedName(); if (n) askDisconnect(n, e.target); };
$("user-suspend").onclick = (e) => { const n = typedName(); if (n) askSuspend(n, e.target); };
$("user-unsuspend").onclick = () => { const n = typedName(); if (n) unsuspend(n); };
$("user-form").onsubmit = (e) => e.preventDefault();

// ---- invite codes ---------------------------------------------------------------------

$("invite-form").onsubmit = async (e) => {
  e.preventDefault();
  const uses = Number($("invite-uses").value || 1), days = Number($("invite-days").value || 7);
  const status = $("invite-status");
  status.classList.remove("error");
  if (!(Number.isInteger(uses) && uses >= 1 && uses <= 10000) || !(Number.isInteger(days) && days >= 1 && days <= 365)) {
    status.textContent = "Uses: 1 to 10,000; days: 1 to 365.";
    status.classList.add("error");
    return;
  }
  $("invite-create").disabled = true;
  const r = await api("POST", "/admin/invites", { uses, expires_days: days }).catch(() => null);
  $("invite-create").disabled = false;
  if (!r || r.status !== 201) {
    status.textContent = "No code made: " + problemText(r);
    status.classList.add("error");
    return;
  }
  $("invite-result").hidden = false;
  $("invite-code").value = r.data.code;
  $("invite-info").textContent = `Good for ${r.data.uses} sign-up${r.data.uses === 1 ? "" : "s"} until ` +
    `${new Date(r.data.expires_at).toLocaleString([], { dateStyle: "medium", timeStyle: "short" })}. It is not shown again.`;
  status.textContent = "Invite code created.";
  $("invite-code").focus();
  $("invite-code").select();
  loadAudit();
};
$("invite-copy").onclick = async () => {
  const input = $("invite-code");
  let ok = false;
  try { await navigator.clipboard.writeText(input.value); ok = true; } catch (_) {
    input.select();
    try { ok = document.execCommand("copy"); } catch (_) { ok = false; }
  }
  $("invite-status").classList.toggle("error", !ok);
  $("invite-status").textContent = ok ? "Copied to the clipboard." : "Could not copy: select the code and copy it by hand.";
};

// ---- audit log ------------------------------------------------------------------------

const ACTIONS = {
  grant_admin: ["granted admin", false], revoke_admin: ["revoked admin", false],
  suspend: ["suspended", true], unsuspend: ["unsuspended", false], disconnect: ["disconnected", true],
  remove_from_room: ["removed from room", true], delete_message: ["deleted message", true],
  create_invite: ["created invite", false],
};
async function loadAudit() {
  const r = await api("GET", "/admin/audit").catch(() => null);
  if (!r || r.status !== 200) return;
  const entries = (r.data.entries || []).slice(0, 200);
  const sig = JSON.stringify(entries.slice(0, 3)) + entries.length;
  if (sig === state.auditSig) return;
  state.auditSig = sig;
  $("audit-list").replaceChildren(...entries.map((e) => {
    const tr = el("tr");
    const [text, danger] = ACTIONS[e.action] || [String(e.action).replace(/_/g, " "), false];
    const act = el("td");
    act.append(el("span", "action" + (danger ? " danger" : ""), text));
    tr.append(el("td", "when", new Date(e.at).toLocaleString([], { dateStyle: "short", timeStyle: "medium" })),
      el("td", "", e.actor ?? "(command line)"), act, el("td", "", String(e.target ?? "")));
    return tr;
  }));
  if (!entries.length) {
    const tr = el("tr");
    const td = el("td", "muted", "Nothing yet.");
    td.colSpan = 4;
    tr.append(td);
    $("audit-list").append(tr);
  }
}
$("audit-refresh").onclick = () => { state.auditSig = ""; loadAudit(); };

// ---- start ----------------------------------------------------------------------------

if (!token) refuse("Not signed in", "Sign in on the chat page first; this dashboard uses the same session.");
else poll();
