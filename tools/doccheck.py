#!/usr/bin/env python3
"""Runs the examples of a Markdown document against a throwaway server, as a reader would.

    tools/doccheck.py README.md docs/clients.md

What it reads from each document (so that when the document changes, the check follows):
- The server command: the `cargo run` line of the first `sh` block that has one (in the
  README, its "Set up" block), run exactly as written from the checkout, with
  CHATTERBOX_LISTEN and CHATTERBOX_DB pointing at a free loopback port and a temporary
  database, so port 8000 and the checkout's database are never touched.
- Every other `sh` block, one command at a time (a line ending in `\\` continues), in one
  shell for the whole run, so `TOKEN=…` set in one block is there for the next.
  `127.0.0.1:8000` is rewritten to the chosen port. Each command has no terminal: its
  standard input is empty unless it pipes its own.
- A comment line `# → TEXT` right under a command is what that command prints: the
  command's output lines must contain one matching each such line, in order. `…` in TEXT
  matches anything; text after two or more spaces and an opening parenthesis is a remark.
- A command whose own comment says `Ctrl-C` runs until it is interrupted: it gets a few
  seconds, then SIGINT, and must not fail before that. Every command must exit 0.
- `python` blocks run with the Python that has `websockets` (tools/.venv), `js` blocks with
  Node and `ws` (tests/interop/node_modules); both get TOKEN from the shell and must exit 0
  and print something.

Prints one line per command and ends with `N passed, N failed`.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC_PORT = "127.0.0.1:8000"
# A command that has not finished after this long fails (the check never hangs CI).
COMMAND_TIMEOUT = 60
# How long a command documented as "runs until Ctrl-C" is left running.
STREAM_SECONDS = 3
SERVER_START_TIMEOUT = 600  # `cargo run --release` may have to build first


def blocks(path):
    """Yields (language, [lines]) for each fenced code block of a Markdown file."""
    lang, body = None, []
    with open(path, encoding="utf-8") as f:
        for line in f.read().splitlines():
            if lang is None:
                m = re.match(r"^```(\w*)\s*$", line)
                if m:
                    lang, body = m.group(1) or "text", []
            elif line.startswith("```"):
                yield lang, body
                lang = None
            else:
                body.append(line)


def commands(lines):
    """Splits an sh block into [(command, expected_lines, own_comment)]."""
    out = []
    pending = ""
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("#"):
            m = re.match(r"^#\s*→\s?(.*)$", stripped)
            if m and out and not pending:
                out[-1][1].append(remark_free(m.group(1)))
            continue
        if not stripped:
            continue
        if stripped.endswith("\\"):
            pending += line[: line.rstrip().rfind("\\")] + " "
            continue
        full = pending + line
        pending = ""
        out.append((full.strip(), [], trailing_comment(full)))
    return out


def remark_free(text):
    return re.split(r"\s{2,}\(", text, maxsplit=1)[0].strip()


def trailing_comment(cmd):
    # Good enough for documentation: a ` #` outside quotes starts a comment.
    quote = None
    for i, ch in enumerate(cmd):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and i > 0 and cmd[i - 1] == " ":
            return cmd[i + 1 :].strip()
    return ""


def matches(pattern, line):
    parts = [re.escape(p) for p in re.split(r"…|\.\.\.", pattern)]
    return re.fullmatch(".*".join(parts), line.strip()) is not None


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Shell:
    """One bash for the whole run; each command's output goes to files we read back."""

    def __init__(self, workdir, env):
        self.dir = workdir
        self.n = 0
        self.proc = subprocess.Popen(
            ["bash", "--norc", "--noprofile"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=ROOT,
            env=env,
            text=True,
            start_new_session=True,
        )

    def run(self, cmd, stream=False):
        self.n += 1
        base = os.path.join(self.dir, f"cmd{self.n}")
        rc_file = base + ".rc"
        body = cmd
        if stream:
            # On lines of their own: the command may end in a comment.
            body = f"timeout -s INT {STREAM_SECONDS} {cmd}\nr=$?; [ $r -eq 124 ] && r=0; (exit $r)"
        self.proc.stdin.write(
            f"{{ {body}\n}} </dev/null >{base}.out 2>{base}.err; echo $? >{rc_file}.tmp; mv {rc_file}.tmp {rc_file}\n"
        )
        self.proc.stdin.flush()
        deadline = time.monotonic() + COMMAND_TIMEOUT
        while not os.path.exists(rc_file):
            if time.monotonic() > deadline:
                self.kill_children()
                time.sleep(0.5)
                if not os.path.exists(rc_file):
                    return None, "", "timed out"
            time.sleep(0.02)
        with open(rc_file) as f:
            rc = int(f.read().strip() or "1")
        return rc, read(base + ".out"), read(base + ".err")

    def value(self, name):
        rc, out, _ = self.run(f'printf %s "${name}"')
        return out if rc == 0 else ""

    def kill_children(self):
        # Only what this shell started, by PID.
        for pid in children(self.proc.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def close(self):
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=5)
        except Exception:
            self.kill_children()
            self.proc.kill()


def children(pid):
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid:
            found.append(int(entry))
            found.extend(children(int(entry)))
    return found


def read(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


class Check:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def ok(self, what):
        self.passed += 1
        print(f"ok   {what}")

    def fail(self, what, why):
        self.failed += 1
        print(f"FAIL {what}: {why}")


def start_server(doc_blocks, port, tmp):
    for lang, lines in doc_blocks:
        if lang != "sh":
            continue
        for cmd, _, _ in commands(lines):
            if cmd.startswith("cargo run"):
                cmd = cmd.split(" #", 1)[0].strip()
                env = dict(os.environ)
                env["CHATTERBOX_LISTEN"] = f"127.0.0.1:{port}"
                env["CHATTERBOX_DB"] = os.path.join(tmp, "doc.db")
                log = open(os.path.join(tmp, "server.log"), "w")
                proc = subprocess.Popen(
                    cmd, shell=True, cwd=ROOT, env=env, stdout=log, stderr=log,
                    start_new_session=True,
                )
                deadline = time.monotonic() + SERVER_START_TIMEOUT
                while time.monotonic() < deadline:
                    if proc.poll() is not None:
                        raise SystemExit(f"`{cmd}` exited with {proc.returncode}:\n" + read(log.name)[-3000:])
                    try:
                        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                            if r.status == 200:
                                return cmd, proc
                    except OSError:
                        time.sleep(0.2)
                stop(proc)
                raise SystemExit(f"`{cmd}` did not answer /healthz in time")
    return None, None


def stop(proc):
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def run_doc(path, shell, port, check, tmp):
    name = os.path.relpath(path, ROOT)
    for lang, lines in blocks(path):
        text = "\n".join(lines).replace(DOC_PORT, f"127.0.0.1:{port}")
        if lang == "sh":
            for cmd, expected, comment in commands(text.splitlines()):
                if cmd.startswith("cargo run") or cmd.startswith("tools/test"):
                    continue  # the set-up commands: this check runs inside the second
                what = f"{name}: {cmd[:90]}"
                rc, out, err = shell.run(cmd, stream="Ctrl-C" in comment)
                if rc is None:
                    check.fail(what, f"no answer in {COMMAND_TIMEOUT} s")
                    continue
                if rc != 0:
                    check.fail(what, f"exit {rc}; stderr: {err.strip()[:300]}")
                    continue
                got = out.splitlines()
                missing = unmatched(expected, got)
                if missing:
                    check.fail(what, f"expected a line like {missing!r}, got {out.strip()[:400]!r}")
                else:
                    check.ok(what)
        elif lang in ("python", "js"):
            what = f"{name}: {lang} example"
            src = os.path.join(tmp, "example.py" if lang == "python" else "example.js")
            with open(src, "w") as f:
                f.write(text + "\n")
            env = dict(os.environ, TOKEN=shell.value("TOKEN"))
            if lang == "python":
                argv = [os.path.join(ROOT, "tools/.venv/bin/python"), src]
            else:
                argv = ["node", src]
                env["NODE_PATH"] = os.path.join(ROOT, "tests/interop/node_modules")
            try:
                p = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
            except subprocess.TimeoutExpired:
                check.fail(what, f"no answer in {COMMAND_TIMEOUT} s")
                continue
            if p.returncode != 0 or not p.stdout.strip():
                check.fail(what, f"exit {p.returncode}; stdout {p.stdout.strip()[:200]!r}; stderr {p.stderr.strip()[-400:]!r}")
            else:
                check.ok(what)


def unmatched(expected, got):
    i = 0
    for pattern in expected:
        while i < len(got) and not matches(pattern, got[i]):
            i += 1
        if i == len(got):
            return pattern
        i += 1
    return None


def main(paths):
    if not paths:
        raise SystemExit("usage: tools/doccheck.py README.md [OTHER.md...]")
    check = Check()
    readme_blocks = list(blocks(paths[0]))
    # Each document gets a fresh server and a fresh shell, as a reader starting on it would.
    for path in paths:
        tmp = tempfile.mkdtemp(prefix="doccheck.")
        port = free_port()
        cmd, server = start_server(readme_blocks, port, tmp)
        if server is None:
            raise SystemExit("no `cargo run` line found in " + paths[0])
        check.ok(f"`{cmd}` serves /healthz on a free port (for {os.path.relpath(path, ROOT)})")
        env = dict(os.environ)
        env.update({
            "CHATTERBOX_SERVER": f"http://127.0.0.1:{port}",
            "CHATTERBOX_CONFIG_DIR": os.path.join(tmp, "cli-config"),
            "PATH": os.path.expanduser("~/.cargo/bin") + os.pathsep + os.environ.get("PATH", ""),
        })
        shell = Shell(tmp, env)
        try:
            run_doc(path, shell, port, check, tmp)
        finally:
            shell.close()
            stop(server)
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"{check.passed} passed, {check.failed} failed")
    return 0 if check.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
