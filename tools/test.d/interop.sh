#!/usr/bin/env bash
# Interoperability with clients nobody here wrote: curl (every HTTP endpoint), websocat,
# Python `websockets` and Node `ws`, against a fresh release server (installing them
# when missing).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
. tools/test.d/clients-install.inc

dir=$(mktemp -d)
target/release/chatterbox --listen 127.0.0.1:0 --db "$dir/interop.db" --auth-per-minute 100000 \
    >"$dir/out" 2>"$dir/err" &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$dir"' EXIT
for _ in $(seq 100); do grep -q listening "$dir/out" 2>/dev/null && break; sleep 0.1; done
addr=$(sed -n 's#.*http://##p' "$dir/out" | head -1)
base="http://$addr"
passed=0; failed=0
check() { # name, expected, actual
    if [ "$2" = "$3" ]; then echo "ok   $1"; passed=$((passed+1)); else echo "FAIL $1: expected [$2], got [$3]"; failed=$((failed+1)); fi
}
status() { curl -s -o /dev/null -w '%{http_code}' "$@"; }

# curl: every endpoint of the README's tour.
check "curl register" 201 "$(status -X POST "$base/register" -d '{"username":"alice","password":"wonderland"}')"
check "curl register bob" 201 "$(status -X POST "$base/register" -d '{"username":"bob","password":"wonderland"}')"
check "curl register taken" 409 "$(status -X POST "$base/register" -d '{"username":"ALICE","password":"wonderland"}')"
login() { curl -s -X POST "$base/login" -d "{\"username\":\"$1\",\"password\":\"wonderland\"}" | sed 's/.*"token":"\([0-9a-f]*\)".*/\1/'; }
A=$(login alice); B=$(login bob)
check "curl login gives a token" 64 "${#A}"
check "curl bad login" 401 "$(status -X POST "$base/login" -d '{"username":"alice","password":"nope-nope"}')"
check "curl rooms" 200 "$(status "$base/rooms" -H "Authorization: Bearer $A")"
check "curl rooms without token" 401 "$(status "$base/rooms")"
check "curl healthz" '{"status":"ok"}' "$(curl -s "$base/healthz")"
check "curl metrics" 1 "$(curl -s "$base/metrics" | grep -c '^chatterbox_messages_stored_total ')"

# websocat: Authorization header, one send line, the message comes back.
got=$(echo '{"type":"send","room":"general","text":"hello from websocat"}' \
    | timeout 10 websocat -H="Authorization: Bearer $A" "ws://$addr/ws" | grep -c '"text":"hello from websocat"' || true)
check "websocat send and receive" 1 "$got"
check "curl history has the websocat message" 1 \
    "$(curl -s "$base/rooms/general/messages?limit=10" -H "Authorization: Bearer $A" | grep -c 'hello from websocat')"
check "curl search finds it" 1 "$(curl -s "$base/search?q=websocat" -H "Authorization: Bearer $B" | grep -c 'hello from websocat')"

# Python websockets.
if tools/.venv/bin/python tests/interop/interop.py "$addr" "$A" "$B"; then passed=$((passed+1)); else failed=$((failed+1)); fi
# Node ws.
if CHATTERBOX_ADDR=$addr TOKEN_A=$A TOKEN_B=$B node --test tests/interop/ws.test.mjs >"$dir/node.log" 2>&1; then
    echo "ok   node ws"; passed=$((passed+1))
else
    echo "FAIL node ws"; cat "$dir/node.log"; failed=$((failed+1))
fi

check "curl logout" 204 "$(status -X POST "$base/logout" -H "Authorization: Bearer $A")"
check "curl after logout" 401 "$(status "$base/rooms" -H "Authorization: Bearer $A")"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
