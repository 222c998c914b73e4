#!/usr/bin/env bash
# tools/cluster as a user runs it (PostgreSQL and Redis; CLUSTER_ARGS=--sqlite for one
# SQLite file instead): three nodes on their own ports, two people chatting
# through different nodes with Python's `websockets`; then three nodes sharing one port,
# where the kernel spreads connections over them. Stopped with `tools/cluster down`,
# which must leave none of its processes behind.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tools/test.d/clients-install.inc
py=tools/.venv/bin/python

export CHATTERBOX_CLUSTER_DIR
CHATTERBOX_CLUSTER_DIR=$(mktemp -d)/cluster
trap 'tools/cluster down >/dev/null 2>&1 || true' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
passed=0
ok() { echo "ok   $1"; passed=$((passed + 1)); }

port=$(free_port)
tools/cluster up 3 --separate --port "$port" ${CLUSTER_ARGS:-}
pids=$(awk '{print $2}' "$CHATTERBOX_CLUSTER_DIR/pids" | grep -E '^[0-9]+$')
"$py" - "$port" <<'EOF'
import json, sys, time, urllib.request
from websockets.sync.client import connect
port = int(sys.argv[1])
node = lambda i: f"127.0.0.1:{port + i}"

def post(i, path, body):
    req = urllib.request.Request(f"http://{node(i)}{path}", json.dumps(body).encode(), method="POST")
    return json.load(urllib.request.urlopen(req))

def login(i, name):
    for _ in range(100):  # the account reaches the other nodes over the bus
        try:
            return post(i, "/login", {"username": name, "password": "wonderland"})["token"]
        except Exception:
            time.sleep(0.05)
    raise SystemExit(f"{name} cannot log in on node {i}")

post(1, "/register", {"username": "alice", "password": "wonderland"})
post(2, "/register", {"username": "bob", "password": "wonderland"})
with connect(f"ws://{node(1)}/ws?token={login(1, 'alice')}") as a, \
        connect(f"ws://{node(3)}/ws?token={login(3, 'bob')}") as b:
    for ws in (a, b):
        assert json.loads(ws.recv(timeout=5))["type"] == "hello"
    a.send(json.dumps({"type": "send", "room": "general", "text": "hi from node 1", "ref": "1"}))
    while True:
        m = json.loads(b.recv(timeout=5))
        if m["type"] == "message":
            break
    assert (m["user"], m["text"], m["seq"]) == ("alice", "hi from node 1", 1), m
print("ok   alice on node 1 reaches bob on node 3")
EOF
passed=$((passed + 1))
tools/cluster down >/dev/null
for pid in $pids; do
    if kill -0 "$pid" 2>/dev/null; then echo "FAIL pid $pid still running after down"; exit 1; fi
done
ok "tools/cluster down stopped every process it started"

port=$(free_port)
tools/cluster up 3 --port "$port" ${CLUSTER_ARGS:-} >/dev/null
seen=$(for _ in $(seq 60); do curl -s "http://127.0.0.1:$port/metrics" | sed -n 's/^chatterbox_node_info{node="\(.*\)"} 1$/\1/p'; done | sort -u | wc -l)
if [ "$seen" -ge 2 ]; then ok "one shared port, answered by $seen nodes"; else echo "FAIL only $seen node answered the shared port"; exit 1; fi
tools/cluster down >/dev/null
echo "$passed passed"
