#!/usr/bin/env python3
"""Turns the outputs of bench/run (a directory of JSON lines and profiles) into RESULTS.md.

usage: report.py DIR REPS  (markdown on stdout)

Each row of the matrix was run REPS times against a fresh server; tables give the median
and, for the headline figures, the range. Target verdicts are computed from the medians
(loss from every run). The profile sections read perf's and callgrind_annotate's text.
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


def runs(name):
    path = os.path.join(DIR, name + ".jsonl")
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
w(
    "The server (release build) runs pinned to core 0 (`taskset -c 0`), the load generator "
    "`chatterbox-bench` to core 1; loopback only; every run starts a fresh server with a fresh "
    "database (`chatterbox --listen 127.0.0.1:0 --db … --auth-per-minute 1000000 --msg-rate "
    "1000000 --msg-burst 1000000`)."
)
w(
    f"The machine is shared with other jobs, so each row was run {REPS} time(s): figures are "
    "medians, with the range (min–max) in brackets for the headline columns; loss, duplicates "
    "and reordering are totals over all runs."
)
w("")

# ---- connections ---------------------------------------------------------------------------
w("## Connections")
w("")
w(
    "| N | runs | processes | failed (all runs) | upgrades/s | time to `hello` p50 / p99 / max ms "
    "| server RSS before → after KiB | server bytes/conn | server CPU µs/upgrade | command |"
)
w("|---|---|---|---|---|---|---|---|---|---|")
for k in ["connect1k", "connect10k", "connect19k"]:
    rs = runs(k)
    if not rs:
        w(f"| – | 0 | – | no result | | | | | | {cmd(k)} |")
        continue
    n = med(rs, "connections")
    cpu_per = med(rs, "server_cpu_secs")
    cpu_per = cpu_per * 1e6 / n if cpu_per is not None and n else None
    w(
        f"| {num(n)} | {len(rs)} | {num(med(rs, 'processes'))} | {num(total(rs, 'failed'))} "
        f"| {spread(rs, 'upgrades_per_sec')} "
        f"| {num(med(rs, 'hello_ms_p50'), 2)} / {num(med(rs, 'hello_ms_p99'), 1)} / "
        f"{num(med(rs, 'hello_ms_max'), 1)} "
        f"| {num(med(rs, 'server_rss_before_kib'))} → {num(med(rs, 'server_rss_after_kib'))} "
        f"| {spread(rs, 'server_bytes_per_conn')} | {num(cpu_per, 1)} | {cmd(k)} |"
    )
w("")
w(
    "Upgrades/s is connections ÷ time from the first dial to the last `hello`; the generator "
    "offers 20,000 dials/s, so that is the ceiling of this column. Past 19,000 sockets the "
    "generator splits itself over processes bound to 127.0.0.2, 127.0.0.3, … (20,000 open "
    "files per process on this machine). Bytes/conn is (RSS after − RSS before) ÷ N, read "
    "from /proc while every socket is open and greeted."
)
w("")

# ---- fan-out ---------------------------------------------------------------------------------
w("## Fan-out (everyone in `general`)")
w("")
w(
    "| N | runs | msgs/s sent | deliveries/s offered | deliveries/s received | p50 ms | p99 ms "
    "| p99.9 ms | max ms | lost | dup | out of order | server CPU s | bench CPU s | command |"
)
w("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for k in ["fanout1k", "fanout10k", "probe", "broadcast10k"]:
    rs = runs(k)
    if not rs:
        w(f"| – | 0 | no result | | | | | | | | | | | | {cmd(k)} |")
        continue
    n = med(rs, "connections")
    rate = med(rs, "offered_msgs_per_sec")
    w(
        f"| {num(n)} | {len(rs)} | {num(rate)} | {num(n * rate)} | {spread(rs, 'deliveries_per_sec')} "
        f"| {num(med(rs, 'latency_ms_p50'), 2)} | {spread(rs, 'latency_ms_p99', 1)} "
        f"| {num(med(rs, 'latency_ms_p999'), 1)} | {num(med(rs, 'latency_ms_max'), 1)} "
        f"| {num(total(rs, 'lost'))} of {num(total(rs, 'expected_deliveries'))} "
        f"| {num(total(rs, 'duplicates'))} | {num(total(rs, 'out_of_order'))} "
        f"| {num(med(rs, 'server_cpu_secs'), 2)} | {num(med(rs, 'bench_cpu_secs'), 2)} | {cmd(k)} |"
    )
w("")
w(
    "Each text carries its sender, a sequence number and its send time; latency is from the "
    "moment the generator queued the `send` to the moment it read the `message` (same clock). "
    "Deliveries/s received is deliveries ÷ time between the first and the last one read. "
    "CPU seconds are user + system from /proc/PID/stat over the sending phase."
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
        f"| 19,500 authenticated WebSockets, 0 failed | {num(med(c19, 'connections'))} open, "
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
        f"| ≥ 10,000 upgrades/s | {', '.join(num(u) for u in ups)} /s (N = 10,000; 19,500) | "
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

notes = os.path.join(os.path.dirname(os.path.abspath(__file__)), "NOTES.md")
if os.path.exists(notes):
    w(open(notes).read().rstrip())
print("\n".join(out))
