#!/usr/bin/env python3
"""Turns the outputs of bench/run (a directory of JSON lines and profiles) into RESULTS.md.

usage: report.py DIR REPS  (markdown on stdout)

Each row of the matrix was run REPS times against a fresh server; tables give the median
and, for the headline figures, the range. Target verdicts are computed from the medians
(loss from every run). The profile sections read perf's and callgrind_annotate's text.

NAME.jsonl holds Chatterbox's runs of a step, NAME.peer.jsonl the tokio reference peer's
(`chatterbox-bench --peer`). A run whose generator core was >= 90% busy carries
"valid": false; medians are taken over the valid runs when there is one, else over all
runs and the figure is marked invalid.
"""

import json
import os
import platform
import re
import statistics
import subprocess
import sys
from datetime import datetime, timezone

DIR = sys.argv[1]
REPS = int(sys.argv[2])


def runs(name, peer=False):
    path = os.path.join(DIR, name + (".peer.jsonl" if peer else ".jsonl"))
    if not os.path.exists(path):
        return []
    out = []
    for line in open(path):
        line = line.strip()
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


def med(rs, key):
    vals = [r[key] for r in rs if isinstance(r.get(key), (int, float))]
    return statistics.median(vals) if vals else None


def rng(rs, key):
    vals = [r[key] for r in rs if isinstance(r.get(key), (int, float))]
    return (min(vals), max(vals)) if vals else (None, None)


def total(rs, key):
    return sum(r.get(key) or 0 for r in rs)


def valid(rs):
    """The runs whose generator was not saturated, or all of them when none was valid."""
    ok = [r for r in rs if r.get("valid") is not False]
    return ok or rs


def all_invalid(rs):
    return bool(rs) and all(r.get("valid") is False for r in rs)


def n_valid(rs):
    return sum(1 for r in rs if r.get("valid") is not False)


def num(x, digits=0):
    if x is None:
        return "–"
    if digits == 0:
        return f"{x:,.0f}"
    return f"{x:,.{digits}f}"


def spread(rs, key, digits=0):
    """median (min–max) when there is more than one run."""
    m = med(rs, key)
    lo, hi = rng(rs, key)
    if m is None:
        return "–"
    if len(rs) < 2:
        return num(m, digits)
    return f"{num(m, digits)} ({num(lo, digits)}–{num(hi, digits)})"


def sh(*cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip()
    except Exception:
        return ""


commands = {}
cpath = os.path.join(DIR, "commands")
if os.path.exists(cpath):
    for line in open(cpath):
        k, _, v = line.rstrip("\n").partition("\t")
        commands[k] = v


def cmd(name):
    return f"`{commands.get(name, '')}`"


def cpu_model():
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def mem_gib():
    for line in open("/proc/meminfo"):
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 1024 / 1024
    return 0


runmeta = {}
for fname in ("meta", "sizes"):
    mp = os.path.join(DIR, fname)
    if os.path.exists(mp):
        for line in open(mp):
            k, _, v = line.strip().partition("=")
            runmeta[fname + "." + k] = v

out = []
w = out.append
commit = sh("git", "rev-parse", "--short", "HEAD")
dirty = sh("git", "status", "--porcelain", "--untracked-files=no")
w("# Benchmark results")
w("")
w(
    f"Produced by `bench/run` on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC at commit "
    f"{commit}{' (with uncommitted changes in the tree)' if dirty else ''}; "
    f"{os.cpu_count()} cores ({cpu_model()}), {mem_gib():.0f} GiB, Linux {platform.release()}."
)
flags = runmeta.get(
    "meta.server_flags",
    "--auth-per-minute 1000000 --msg-rate 1000000 --msg-burst 1000000",
)
w(
    "The server (release build) runs pinned to core 0 (`taskset -c 0`), the load generator "
    "`chatterbox-bench` to core 1; loopback only; every run starts a fresh server with a fresh "
    f"database (`chatterbox --listen 127.0.0.1:0 --db … {flags}`)."
)
peer_dir = runmeta.get("meta.peer", "")
if peer_dir:
    w(
        f"The reference peer is the tokio + tokio-tungstenite broadcast server from `{peer_dir}` "
        "(release build, one worker thread on the same core 0, a fresh process per run), driven "
        "by the same generator modes with `--peer` (any token, only `hello`, `send` → `message`). "
        "For every step the two servers ran alternately (ABBA over the repetitions), so drift on "
        "the shared machine hits both alike."
    )
w(
    f"The machine is shared with other jobs, so each row was run {REPS} time(s) per server: "
    "figures are medians, with the range (min–max) in brackets for the headline columns; loss, "
    "duplicates and reordering are totals over all runs. The generator reports its own CPU "
    "(user + system of its processes over the measured phase, and how busy its core was); a "
    "run where its core was ≥ 90% busy is **invalid** (the generator, not the server, may have "
    "set the pace): medians use the valid runs when there is one, and a figure from invalid "
    "runs only is marked ✗."
)
w("")

# ---- side by side ---------------------------------------------------------------------------


def fig(step, key, peer=False, how="med"):
    """(value, runs, invalid) of one figure of one step for one server."""
    rs = runs(step, peer)
    if not rs:
        return None, rs, False
    if how == "total":
        return total(rs, key), rs, all_invalid(rs)
    if how == "per_cpu":
        return med(valid(rs), "deliveries_per_server_cpu_sec"), rs, all_invalid(rs)
    return med(valid(rs), key), rs, all_invalid(rs)


def fmt(x, digits):
    return num(x, digits) if x is not None else "–"


def by_how_much(actual, limit, higher_better):
    """'by 32%' or 'by 2.4×': how far a figure is from its limit."""
    if limit == 0:
        return f"by {num(actual)}"
    f = limit / actual if higher_better and actual else actual / limit
    if higher_better and not actual:
        return "(nothing measured)"
    return f"by {f:.1f}×" if f >= 2 else f"by {(f - 1) * 100:.0f}%"


def judge(target, c, p):
    """Verdict text for one target; c and p are Chatterbox's and the peer's figures."""
    if target is None:
        return ""
    kind, limit = target
    if c is None:
        return "not measured"
    if kind in ("ratio_le", "ratio_ge"):
        if p is None:
            return "no peer figure"
        if p == 0:
            return "met" if (kind == "ratio_ge" or c == 0) else "**missed** (peer's figure is 0)"
        r = c / p
        ok = r <= limit if kind == "ratio_le" else r >= limit
        if ok:
            return f"met ({r:.2f}×)"
        return f"**missed** {by_how_much(r, limit, kind == 'ratio_ge')} ({r:.2f}×)"
    ok = c <= limit if kind == "le" else c >= limit
    return "met" if ok else f"**missed** {by_how_much(c, limit, kind == 'ge')}"


def ratio(c, p):
    if c is None or p is None:
        return "–"
    if p == 0:
        return "=" if c == 0 else "∞"
    return f"{c / p:.2f}"


def gen_cell(rs):
    """Median generator CPU % (and core busy %) over the runs, and valid runs of all (with
    g = invalid because the generator saturated its core, o = because other load did)."""
    if not rs:
        return "–", "–"
    pct = med(rs, "bench_cpu_pct")
    core = med(rs, "bench_core_busy_pct")
    cell = fmt(pct, 0) + "%" if pct is not None else "–"
    if core is not None:
        cell += f" ({core:.0f}%)"
    why = [r.get("invalid_reason") or "" for r in rs if r.get("valid") is False]
    g = sum(1 for x in why if x.startswith("generator"))
    o = len(why) - g
    marks = ", ".join(m for m in (f"{g} g" if g else "", f"{o} o" if o else "") if m)
    return cell, f"{n_valid(rs)}/{len(rs)}" + (f" ({marks})" if marks else "")


# (figure, step, key, digits, how, target, target text)
ROWS = [
    ("upgrades/s opening 19,000 sockets (20 users)", "connect19k", "upgrades_per_sec", 0, "med",
     ("ratio_ge", 1.0), "≥ peer's"),
    ("time to `hello` p99 opening 19,000 (20 users), ms", "connect19k", "hello_ms_p99", 1, "med",
     None, ""),
    ("RSS per idle socket at 19,000 (20 users), bytes", "connect19k", "server_bytes_per_conn", 0,
     "med", ("le", 1024), "≤ 1,024 B"),
    ("upgrades/s opening 19,000 sockets (1,900 users: 1 per 10 sockets)", "connect19k_u1900",
     "upgrades_per_sec", 0, "med", ("ratio_ge", 1.0), "≥ peer's"),
    ("time to `hello` p99 opening 19,000 (1,900 users), ms", "connect19k_u1900", "hello_ms_p99",
     1, "med", None, ""),
    ("RSS per idle socket at 19,000 (1,900 users), bytes", "connect19k_u1900",
     "server_bytes_per_conn", 0, "med", ("le", 1024), "≤ 1,024 B"),
    ("upgrades/s opening 10,000 sockets", "connect10k", "upgrades_per_sec", 0, "med", None, ""),
    ("handshake (dial → `hello`) p99 opening 10,000, ms", "connect10k", "hello_ms_p99", 1, "med",
     ("le", 50), "≤ 50 ms"),
    ("fan-out N=1,000 at 1,000 msg/s: p99 ms", "fanout1k", "latency_ms_p99", 1, "med",
     ("ratio_le", 1.0), "≤ peer's"),
    ("… deliveries lost (all runs)", "fanout1k", "lost", 0, "total", None, ""),
    ("fan-out N=10,000 at 100 msg/s: p99 ms", "fanout10k", "latency_ms_p99", 1, "med",
     ("ratio_le", 0.5), "≤ half the peer's"),
    ("… deliveries lost (all runs)", "fanout10k", "lost", 0, "total", None, ""),
    ("capacity N=1,000 at 10,000 msg/s (10 M deliveries/s offered): deliveries/s received",
     "capacity", "deliveries_per_sec", 0, "med", None, ""),
    ("… deliveries per server CPU-second", "capacity", None, 0, "per_cpu",
     ("ratio_ge", 1.5), "≥ 1.5× peer's"),
    ("… readers disconnected (all runs)", "capacity", "readers_disconnected", 0, "total",
     ("le", 0), "0"),
    ("… deliveries not received (all runs; lost, or still queued 10 s after sending stopped)",
     "capacity", "lost", 0, "total", None, ""),
    ("latency probe N=100 at 100 msg/s: p99 ms", "probe", "latency_ms_p99", 2, "med",
     ("ratio_le", 1.0), "≤ peer's"),
    ("one message to 10,000 sockets at 1 msg/s: p99 ms", "broadcast10k", "latency_ms_p99", 1,
     "med", None, ""),
]
have_peer = any(runs(step, True) for _, step, *_ in ROWS)
have_syscalls = any(
    r.get("syscalls_per_delivery") is not None for step in {row[1] for row in ROWS} for r in runs(step)
)
if any(runs(step) or runs(step, True) for _, step, *_ in ROWS) or any(
    k.startswith("sizes.") for k in runmeta
):
    w("## Side by side: Chatterbox and the tokio reference peer (issue 13)")
    w("")
    head = "| figure | Chatterbox | tokio peer | ratio Chatterbox/peer | target | verdict "
    head += "| generator CPU % (core busy %) Chatterbox · peer | valid runs Chatterbox · peer "
    if have_syscalls:
        head += "| syscalls per delivery (Chatterbox) "
    w(head + "|")
    w("|---" * head.count("|") + "|")
    for label, step, key, digits, how, target, ttext in ROWS:
        c, crs, cinv = fig(step, key, False, how)
        p, prs, pinv = fig(step, key, True, how)
        if not crs and not prs:
            continue
        cg, cv = gen_cell(crs)
        pg, pv = gen_cell(prs)
        cell_c = fmt(c, digits) + (" ✗" if cinv else "")
        cell_p = fmt(p, digits) + (" ✗" if pinv else "")
        if how == "med" and len(valid(crs)) > 1 and c is not None:
            lo, hi = rng(valid(crs), key)
            cell_c += f" ({num(lo, digits)}–{num(hi, digits)})"
        if how == "med" and len(valid(prs)) > 1 and p is not None:
            lo, hi = rng(valid(prs), key)
            cell_p += f" ({num(lo, digits)}–{num(hi, digits)})"
        row = (
            f"| {label} | {cell_c} | {cell_p if prs else '–'} | {ratio(c, p)} | {ttext or '–'} "
            f"| {judge(target, c, p)} | {cg} · {pg} | {cv} · {pv} "
        )
        if have_syscalls:
            fan = crs and crs[0].get("mode") == "fanout" and not label.startswith("…")
            sc = med(valid(crs), "syscalls_per_delivery") if fan else None
            row += f"| {fmt(sc, 3)} "
        w(row + "|")
    sizes = [
        ("server binary, release profile, bytes", "sizes.release", "sizes.peer_release"),
        ("… stripped", "sizes.release_stripped", "sizes.peer_release_stripped"),
        ("server binary, `dist` profile, bytes (peer: release)", "sizes.dist", "sizes.peer_release"),
        ("… stripped", "sizes.dist_stripped", "sizes.peer_release_stripped"),
    ]
    for label, ck, pk in sizes:
        if ck not in runmeta:
            continue
        cv_, pv_ = runmeta.get(ck), runmeta.get(pk)
        c = int(cv_) if (cv_ or "").isdigit() else None
        p = int(pv_) if (pv_ or "").isdigit() else None
        cells = [label, fmt(c, 0) if c is not None else (cv_ or "–"), fmt(p, 0), ratio(c, p),
                 "–", "", "", ""] + ([""] if have_syscalls else [])
        w("| " + " | ".join(cells) + " |")
    w("")
    w(
        "Ratios are Chatterbox ÷ peer, so below 1 is better for latencies, bytes and "
        "disconnections, above 1 for rates. Verdicts compare the medians with the targets of "
        "issue 13 and say by how much a target is missed. RSS per idle socket is (server RSS "
        "with every socket open and greeted − RSS before) ÷ sockets. Deliveries per server "
        "CPU-second is deliveries received ÷ the server's user + system CPU over the sending "
        "and draining phase (all of the server's threads). The capacity step offers 10 M "
        "deliveries/s, far above what either server (or the generator's one core) can carry: "
        "what matters is how much work each server does per delivery and whether it keeps its "
        "readers; when the generator's core is saturated there the row is marked invalid, and "
        "both servers then face the same limited reader. Generator CPU is its processes' user + "
        "system time as % of the measured phase, in brackets how busy its core was (anything "
        "on it); in the valid-runs column g counts runs invalid because the generator itself used ≥ 90% "
        "of its core, o those where the core was ≥ 90% busy with the generator itself below that "
        "(other processes, or kernel network work in interrupt context that no process is "
        "charged for)."
        + (
            " Syscalls per delivery is the server's `chatterbox_socket_writes_total` ÷ "
            "`chatterbox_frames_delivered_total` over the sending phase (/metrics)."
            if have_syscalls
            else " (No syscalls-per-delivery column: this server's /metrics has no "
            "`chatterbox_socket_writes_total`.)"
            if any(r.get("mode") == "fanout" for row in ROWS for r in runs(row[1]))
            else ""
        )
    )
    if not have_peer:
        w("")
        w("No peer runs in this directory (`BENCH_PEER=0`, or the peer did not build).")
    w("")

# ---- connections ---------------------------------------------------------------------------
w("## Connections")
w("")
w(
    "| server | N | users | runs (valid) | processes | failed (all runs) | upgrades/s "
    "| time to `hello` p50 / p99 / max ms | server RSS before → after KiB | server bytes/conn "
    "| server CPU µs/upgrade | generator CPU s (% of elapsed) | command |"
)
w("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
SERVERS = [("Chatterbox", False), ("tokio peer", True)]
for k in ["connect1k", "connect10k", "connect19k", "connect19k_u1900"]:
    for label, peer in SERVERS:
        rs_all = runs(k, peer)
        if not rs_all:
            if not peer and k in commands:
                w(f"| {label} | – | | 0 | – | no result | | | | | | | {cmd(k)} |")
            continue
        rs = valid(rs_all)
        n = med(rs, "connections")
        cpu_per = med(rs, "server_cpu_secs")
        cpu_per = cpu_per * 1e6 / n if cpu_per is not None and n else None
        users = "any" if peer else num(med(rs, "users"))
        w(
            f"| {label} | {num(n)} | {users} | {len(rs_all)} ({n_valid(rs_all)}) "
            f"| {num(med(rs, 'processes'))} | {num(total(rs_all, 'failed'))} "
            f"| {spread(rs, 'upgrades_per_sec')} "
            f"| {num(med(rs, 'hello_ms_p50'), 2)} / {num(med(rs, 'hello_ms_p99'), 1)} / "
            f"{num(med(rs, 'hello_ms_max'), 1)} "
            f"| {num(med(rs, 'server_rss_before_kib'))} → {num(med(rs, 'server_rss_after_kib'))} "
            f"| {spread(rs, 'server_bytes_per_conn')} | {num(cpu_per, 1)} "
            f"| {num(med(rs, 'bench_cpu_secs'), 2)} ({num(med(rs, 'bench_cpu_pct'))}%) | {cmd(k)} |"
        )
w("")
w(
    "Upgrades/s is connections ÷ time from the first dial to the last `hello`; the generator "
    "offers 20,000 dials/s, so that is the ceiling of this column. With `--procs 2` (and past "
    "19,000 sockets by itself) the generator splits over processes bound to 127.0.0.2, "
    "127.0.0.3, … (20,000 open files per process on this machine). Users is how many accounts "
    "the sockets belong to (the peer takes any token). Bytes/conn is (RSS after − RSS before) ÷ N, read "
    "from /proc while every socket is open and greeted."
)
w("")

# ---- fan-out ---------------------------------------------------------------------------------
w("## Fan-out (everyone in `general`)")
w("")
w(
    "| server | N | runs (valid) | msgs/s offered | deliveries/s offered | deliveries/s received "
    "| p50 ms | p99 ms | p99.9 ms | max ms | lost | dup | out of order | readers disconnected "
    "| server CPU s | deliveries per server CPU-s | generator CPU s (% of elapsed) | command |"
)
w("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for k in ["fanout1k", "fanout10k", "capacity", "probe", "broadcast10k"]:
    for label, peer in SERVERS:
        rs_all = runs(k, peer)
        if not rs_all:
            if not peer and k in commands:
                w(f"| {label} | – | 0 | no result | | | | | | | | | | | | | | {cmd(k)} |")
            continue
        rs = valid(rs_all)
        n = med(rs, "connections")
        rate = med(rs, "offered_msgs_per_sec")
        w(
            f"| {label} | {num(n)} | {len(rs_all)} ({n_valid(rs_all)}) | {num(rate)} | {num(n * rate)} "
            f"| {spread(rs, 'deliveries_per_sec')} "
            f"| {num(med(rs, 'latency_ms_p50'), 2)} | {spread(rs, 'latency_ms_p99', 1)} "
            f"| {num(med(rs, 'latency_ms_p999'), 1)} | {num(med(rs, 'latency_ms_max'), 1)} "
            f"| {num(total(rs_all, 'lost'))} of {num(total(rs_all, 'expected_deliveries'))} "
            f"| {num(total(rs_all, 'duplicates'))} | {num(total(rs_all, 'out_of_order'))} "
            f"| {num(total(rs_all, 'readers_disconnected'))} "
            f"| {num(med(rs, 'server_cpu_secs'), 2)} | {num(med(rs, 'deliveries_per_server_cpu_sec'))} "
            f"| {num(med(rs, 'bench_cpu_secs'), 2)} ({num(med(rs, 'bench_cpu_pct'))}%) | {cmd(k)} |"
        )
w("")
w(
    "Each text carries its sender, a sequence number and its send time; latency is from the "
    "moment the generator queued the `send` to the moment it read the `message` (same clock). "
    "Deliveries/s received is deliveries ÷ time between the first and the last one read. "
    "CPU seconds are user + system from /proc/PID/stat over the sending and draining phase "
    "(the generator's: its own process). Readers disconnected are sockets the server closed "
    "while the generator still held them. The peer drops what a lagging reader missed "
    "(counted as lost)."
)
w("")

# ---- churn and login ----------------------------------------------------------------------------
w("## Churn and logins")
w("")
rs = runs("churn")
if rs:
    r = rs[0]
    w(
        f"- churn: {num(r.get('connections_opened_and_closed'))} authenticated WebSockets opened "
        f"and closed ({num(r.get('per_sec'))}/s); server RSS {num(r.get('server_rss_before_kib'))} "
        f"→ {num(r.get('server_rss_mid_kib'))} KiB half-way → "
        f"{num(r.get('server_rss_after_kib'))} KiB after, open fds {r.get('server_fds_before')} → "
        f"{r.get('server_fds_after')}, {num(r.get('failed'))} failed. {cmd('churn')}"
    )
rs = runs("login")
if rs:
    w(
        f"- login: {spread(rs, 'logins_per_sec', 1)} logins/s with {rs[0].get('threads')} "
        f"clients in parallel (argon2id, the server's default cost, on 2 password threads "
        f"sharing the server's one core); meanwhile a chat round trip on an open socket took "
        f"p50 {num(med(rs, 'chat_rtt_ms_p50_during_logins'), 2)} ms, max "
        f"{num(med(rs, 'chat_rtt_ms_max_during_logins'), 1)} ms (the reactor keeps serving). "
        f"{cmd('login')}"
    )
w("")

# ---- targets ---------------------------------------------------------------------------------------
w("## Targets (issue 6), from the medians above")
w("")
w("| target | measured | verdict |")
w("|---|---|---|")


def verdict(ok, miss=""):
    return "met" if ok else f"**missed** {miss}".strip()


c19 = runs("connect19k")
if c19:
    failed = total(c19, "failed")
    bpc = med(c19, "server_bytes_per_conn") or 0
    w(
        f"| {num(med(c19, 'connections'))} authenticated WebSockets, 0 failed "
        f"| {num(med(c19, 'connections'))} open, "
        f"{num(failed)} failed in {len(c19)} runs | {verdict(failed == 0)} |"
    )
    w(
        f"| ≤ 4 KiB server RSS per idle connection | {num(bpc)} bytes | "
        f"{verdict(bpc <= 4096, f'by {bpc / 4096:.2f}×')} |"
    )
ups = [med(runs(k), "upgrades_per_sec") for k in ["connect10k", "connect19k"] if runs(k)]
if ups:
    lo = min(ups)
    w(
        f"| ≥ 10,000 upgrades/s | {', '.join(num(u) for u in ups)} /s (N = 10,000; 19,000) | "
        f"{verdict(lo >= 10000, f'by {(1 - lo / 10000) * 100:.0f}%')} |"
    )
f1 = runs("fanout1k")
if f1:
    d = med(f1, "deliveries_per_sec") or 0
    p99 = med(f1, "latency_ms_p99") or 0
    lost = total(f1, "lost")
    offered = (med(f1, "connections") or 0) * (med(f1, "offered_msgs_per_sec") or 0)
    ok_rate = d >= 0.99 * offered and lost == 0
    w(
        f"| N=1,000, R=1,000/s: ≥ 1,000,000 deliveries/s sustained | {num(d)}/s "
        f"({d / offered * 100:.1f}% of the 1,000,000/s offered), {num(lost)} lost | "
        f"{verdict(ok_rate, f'({d / 1e6:.2f} M/s)')}"
        f"{' (all offered load delivered; the generator offers exactly 1 M/s)' if ok_rate else ''} |"
    )
    w(
        f"| … with p99 ≤ 50 ms | p99 {num(p99, 1)} ms | {verdict(p99 <= 50, f'by {p99 / 50:.1f}×')} |"
    )
f10 = runs("fanout10k")
if f10:
    lost = total(f10, "lost") + total(f10, "duplicates") + total(f10, "out_of_order")
    p99 = med(f10, "latency_ms_p99") or 0
    w(
        f"| N=10,000, R=100/s: every delivery arrives | {num(total(f10, 'lost'))} lost, "
        f"{num(total(f10, 'duplicates'))} dup, {num(total(f10, 'out_of_order'))} reordered of "
        f"{num(total(f10, 'expected_deliveries'))} | {verdict(lost == 0)} |"
    )
    w(
        f"| … with p99 ≤ 100 ms | p99 {num(p99, 1)} ms | "
        f"{verdict(p99 <= 100, f'by {p99 / 100:.1f}×')} |"
    )
ch = runs("churn")
if ch:
    r = ch[0]
    a, b = r.get("server_rss_before_kib"), r.get("server_rss_after_kib")
    fa, fb = r.get("server_fds_before"), r.get("server_fds_after")
    if None not in (a, b, fa, fb):
        drss = (b - a) / a * 100
        dfd = (fb - fa) / fa * 100
        mid = r.get("server_rss_mid_kib")
        half = f" ({(b - mid) / a * 100:+.1f}% of it in the second half)" if mid else ""
        w(
            f"| churn: RSS and fds back to baseline ±5% | RSS {drss:+.1f}%{half}, "
            f"fds {dfd:+.1f}% | "
            f"{verdict(abs(drss) <= 5 and abs(dfd) <= 5, f'(RSS {drss:+.1f}%)')} |"
        )
w("")

# ---- profile: perf -------------------------------------------------------------------------------
meta = {}
mpath = os.path.join(DIR, "perf.meta")
if os.path.exists(mpath):
    for line in open(mpath):
        k, _, v = line.strip().partition("=")
        meta[k] = v
if meta:
    deliveries = int(meta["deliveries"])
    cpu = int(meta["cpu_ticks"]) / int(meta["clk_tck"])
    ns = cpu / deliveries * 1e9 if deliveries else 0
    w("## Profile of the fan-out path: where the server's core goes (perf)")
    w("")
    w(
        f"`perf record -e {meta['event']} -g -p PID -- sleep 8` on the server during a fan-out "
        f"run at N=1,000, R=1,000/s (as in the table). In those 8 s the server delivered "
        f"{num(deliveries)} frames using {cpu:.2f} CPU s: **{ns:,.0f} ns of server CPU per "
        f"delivery**, split as below."
        + (
            " This machine has no hardware counters (`perf stat -e instructions` says not "
            "supported), so samples come from the cpu-clock timer."
            if meta["event"] == "cpu-clock"
            else ""
        )
    )
    w("")
    pat = re.compile(r"^\s*([\d.]+)%\s+(\S+)\s*$")
    rows = []
    for line in open(os.path.join(DIR, "perf.dso")):
        m = pat.match(line)
        if m:
            rows.append((float(m.group(1)), m.group(2)))
    if rows:
        w("| share of server samples | object | ns per delivery |")
        w("|---|---|---|")
        for pct, dso in rows:
            w(f"| {pct:.1f}% | {dso} | {ns * pct / 100:,.0f} |")
        w("")
    pat = re.compile(r"^\s*([\d.]+)%\s+(\S+)\s+\[(.)\]\s+(.*?)\s*$")
    rows = []
    for line in open(os.path.join(DIR, "perf.sym")):
        m = pat.match(line)
        if m:
            rows.append((float(m.group(1)), m.group(2), m.group(3), m.group(4)))
    incl = {}
    cpath = os.path.join(DIR, "perf.children")
    if os.path.exists(cpath):
        for line in open(cpath):
            m = re.match(r"^\s*([\d.]+)%\s+([\d.]+)%\s+\[(.)\]\s+(\S+)", line)
            if m:
                incl.setdefault(m.group(4), float(m.group(1)))
    stages = [
        ("do_writev", "`writev` system calls, all that happens inside them"),
        ("tcp_sendmsg", "… TCP send (`tcp_sendmsg`)"),
        ("net_rx_action", "… of which loopback receive in softirq on the server's core (`net_rx_action`): "
         "the clients' side of TCP, charged to the server because loopback delivers inline"),
        ("sock_def_readable", "… of which waking the reading client (`sock_def_readable`)"),
        ("do_epoll_wait", "`epoll_wait` (the reactor waiting for or collecting events)"),
    ]
    if incl:
        w("Inclusive shares of the server's core along the delivery path (`perf report --children`):")
        w("")
        w("| inclusive share | ns per delivery | what |")
        w("|---|---|---|")
        for sym, what in stages:
            if sym in incl:
                w(f"| {incl[sym]:.1f}% | {ns * incl[sym] / 100:,.0f} | {what} |")
        w("")
    if rows:
        w("Top symbols (self time; `[k]` kernel, `[.]` user space):")
        w("")
        w("| share | ns per delivery | object | symbol |")
        w("|---|---|---|---|")
        for pct, dso, kind, sym in rows[:25]:
            sym = sym.replace("|", "\\|")
            w(f"| {pct:.1f}% | {ns * pct / 100:,.0f} | {dso} | `[{kind}] {sym}` |")
        w("")

# ---- profile: callgrind ------------------------------------------------------------------------------
cg = {}
cpath = os.path.join(DIR, "cg.meta")
if os.path.exists(cpath):
    for line in open(cpath):
        k, _, v = line.strip().partition("=")
        cg[k] = int(v or 0)
line_pat = re.compile(r"^\s*([\d,]+) \(\s*[\d.]+%\)\s+(.*)$")


def annotate(path):
    """(total Ir, {function: self Ir}) from callgrind_annotate's text."""
    tot, funcs = 0, {}
    listing = False
    for line in open(path):
        if "file:function" in line:
            listing = True
            continue
        m = line_pat.match(line)
        if not m:
            if listing and funcs and not line.strip("-\n "):
                break
            continue
        if not listing and not m.group(2).startswith("PROGRAM TOTALS"):
            continue
        ir = int(m.group(1).replace(",", ""))
        name = m.group(2)
        if name.startswith("PROGRAM TOTALS"):
            tot = ir
            continue
        name = re.sub(r" \[[^\]]*\]$", "", name)
        if ":" in name:
            name = name.split(":", 1)[1]
        funcs[name] = funcs.get(name, 0) + ir
    return tot, funcs


if cg and cg.get("deliveries"):
    threads = []
    for f in sorted(os.listdir(DIR)):
        if f.startswith("cg.out-") and f.endswith(".txt"):
            threads.append(annotate(os.path.join(DIR, f)))
    reactor = max(
        (t for t in threads if any("flush_dirty" in k for k in t[1])),
        key=lambda t: t[0],
        default=None,
    )
    writer = max(
        (t for t in threads if t is not reactor and any("sqlite3" in k for k in t[1])),
        key=lambda t: t[0],
        default=None,
    )
    d, msgs = cg["deliveries"], max(cg.get("messages", 0), 1)
    w("## Profile of the fan-out path: instructions per delivery (callgrind)")
    w("")
    w(
        "`valgrind --tool=callgrind --separate-threads=yes --instr-atstart=no` on the server; "
        "instrumentation switched on (`callgrind_control -i on`) after 1,000 sockets were "
        "greeted and off after the run: `chatterbox-bench fanout -n 1000 --users 2 --senders 5 "
        f"--msg-rate 20 --duration 5 --settle 3`, i.e. {num(msgs)} messages and {num(d)} "
        "deliveries (from /metrics). Callgrind counts user-space instructions only (the "
        "kernel's share is in the perf section above) and is repeatable on a noisy machine. "
        "The load is light (20 messages/s), so each message reaches each socket in its own "
        "`writev`: this is the per-delivery cost without coalescing."
    )
    w("")
    if reactor:
        tot, funcs = reactor
        w(
            f"Reactor thread: **{tot / d:,.0f} instructions per delivery** "
            f"({num(tot)} in all). Top functions by self cost:"
        )
        w("")
        w("| instructions per delivery | share | function |")
        w("|---|---|---|")
        for name, ir in sorted(funcs.items(), key=lambda kv: -kv[1])[:15]:
            name = name.replace("|", "\\|")
            w(f"| {ir / d:,.1f} | {ir / tot * 100:.1f}% | `{name}` |")
        w("")
    if writer:
        tot, funcs = writer
        top = sorted(funcs.items(), key=lambda kv: -kv[1])[:5]
        w(
            f"Storage writer thread (SQLite group commit, FTS index): {tot / msgs:,.0f} "
            f"instructions per message ({tot / d:,.0f} per delivery at N=1,000); top: "
            + ", ".join(f"`{n}` {ir / tot * 100:.0f}%" for n, ir in top)
            + "."
        )
        w("")

tls = os.path.join(os.path.dirname(os.path.abspath(__file__)), "TLS.md")
if os.path.exists(tls):
    # Written by bench/tls (its own runs): kept between its markers.
    w(open(tls).read().rstrip())
    w("")
notes = os.path.join(os.path.dirname(os.path.abspath(__file__)), "NOTES.md")
if os.path.exists(notes):
    w(open(notes).read().rstrip())
print("\n".join(out))
