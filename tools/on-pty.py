#!/usr/bin/env python3
"""Runs a command on a pseudo-terminal (120x40): stdin goes to it as keys, what it
prints comes out on stdout. Used by tools/session for `chatterbox-cli chat`.
When stdin closes (the driver is gone), the command gets SIGTERM, then SIGKILL."""
import fcntl, os, pty, select, signal, struct, sys, termios, time

pid, fd = pty.fork()
if pid == 0:
    os.execvp(sys.argv[1], sys.argv[1:])
fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))


def finish(code):
    sys.stdout.flush()
    sys.exit(code)


def stop(*_):
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            break
        for _ in range(20):
            if os.waitpid(pid, os.WNOHANG) != (0, 0):
                finish(1)
            time.sleep(0.1)
    finish(1)


signal.signal(signal.SIGTERM, stop)
fds = [0, fd]
while True:
    ready, _, _ = select.select(fds, [], [], 1.0)
    if 0 in ready:
        data = os.read(0, 4096)
        if not data:
            stop()
        os.write(fd, data)
    if fd in ready:
        try:
            data = os.read(fd, 4096)
        except OSError:
            data = b""
        if not data:
            _, status = os.waitpid(pid, 0)
            finish(os.waitstatus_to_exitcode(status) if hasattr(os, "waitstatus_to_exitcode") else 0)
        os.write(1, data)
