#!/usr/bin/env bash
# A tiny run of each chatterbox-bench mode (N=50, 2 s) against a fresh release server:
# the load generator works end to end and sees no loss, duplicates or reordering, and it
# reports its own CPU and a validity flag. When the tokio reference peer has been built
# (bench/run builds it into target/peers), connect and fanout run against it too (--peer).
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=$(mktemp -d)
target/release/chatterbox --listen 127.0.0.1:0 --db "$dir/smoke.db" \
    --auth-per-minute 100000 --msg-rate 100000 --msg-burst 100000 --ws-frame-rate 100000 --ws-frame-burst 100000 \
    --max-sockets-per-user 1000000 --max-pending-per-ip 1000000 \
    --action-rate 1000000 --action-burst 1000000 >"$dir/out" 2>"$dir/err" &
pid=$!
peer_pid=
cleanup() {
    for p in $pid $peer_pid; do
        kill "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    rm -rf "$dir"
}
trap cleanup EXIT
for _ in $(seq 100); do grep -q listening "$dir/out" 2>/dev/null && break; sleep 0.1; done
addr=$(sed -n 's#.*http://##p' "$dir/out" | head -1)
[ -n "$addr" ] || { echo "server did not start"; cat "$dir/err"; exit 1; }
passed=0; failed=0
# check NAME ADDR PID ARGS...: one run; "ok" must be true, and measuring modes must carry
# the generator's CPU and the validity flag.
check() {
    local name=$1 a=$2 p=$3; shift 3
    if out=$(timeout 60 target/release/chatterbox-bench "$@" --server "$a" --pid "$p" --json) \
        && python3 -c '
import json, sys
v = json.loads(sys.argv[1])
need = ["bench_cpu_secs", "bench_cpu_pct", "valid"] if v["mode"] in ("connect", "fanout") else []
sys.exit(0 if v["ok"] and all(k in v for k in need) else 1)' "$out"; then
        echo "ok   $name: $out"; passed=$((passed+1))
    else
        echo "FAIL $name: ${out:-no output}"; failed=$((failed+1))
    fi
}
check connect "$addr" "$pid" connect -n 50 --users 5
check fanout "$addr" "$pid" fanout -n 50 --users 5 --senders 5 --msg-rate 100 --duration 2
check churn "$addr" "$pid" churn -n 50 --users 5 --rate 50 --duration 2
check login "$addr" "$pid" login --users 5 --threads 2 --duration 2
peer=target/peers/release/peer-tokio
if [ -x "$peer" ]; then
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    HOST=127.0.0.1 "$peer" "$port" >"$dir/peer.out" 2>"$dir/peer.err" &
    peer_pid=$!
    for _ in $(seq 100); do grep -q listening "$dir/peer.err" 2>/dev/null && break; sleep 0.1; done
    check "connect --peer" "127.0.0.1:$port" "$peer_pid" connect -n 50 --users 5 --peer
    check "fanout --peer" "127.0.0.1:$port" "$peer_pid" fanout -n 50 --senders 5 --msg-rate 100 --duration 2 --peer
else
    echo "skip --peer: $peer not built (bench/run builds it)"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
