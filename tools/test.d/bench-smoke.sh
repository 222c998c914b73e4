#!/usr/bin/env bash
# A tiny run of each chatterbox-bench mode (N=50, 2 s) against a fresh release server:
# the load generator works end to end and sees no loss, duplicates or reordering.
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=$(mktemp -d)
target/release/chatterbox --listen 127.0.0.1:0 --db "$dir/smoke.db" \
    --auth-per-minute 100000 --msg-rate 100000 --msg-burst 100000 >"$dir/out" 2>"$dir/err" &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$dir"' EXIT
for _ in $(seq 100); do grep -q listening "$dir/out" 2>/dev/null && break; sleep 0.1; done
addr=$(sed -n 's#.*http://##p' "$dir/out" | head -1)
[ -n "$addr" ] || { echo "server did not start"; cat "$dir/err"; exit 1; }
passed=0; failed=0
check() {
    local name=$1; shift
    if out=$(timeout 60 target/release/chatterbox-bench "$@" --server "$addr" --pid "$pid" --json) \
        && python3 -c 'import json,sys; v=json.loads(sys.argv[1]); sys.exit(0 if v["ok"] else 1)' "$out"; then
        echo "ok   $name: $out"; passed=$((passed+1))
    else
        echo "FAIL $name: ${out:-no output}"; failed=$((failed+1))
    fi
}
check connect connect -n 50 --users 5
check fanout fanout -n 50 --users 5 --senders 5 --msg-rate 100 --duration 2
check churn churn -n 50 --users 5 --rate 50 --duration 2
check login login --users 5 --threads 2 --duration 2
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
