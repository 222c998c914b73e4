#!/usr/bin/env bash
# TLS with clients nobody here wrote: curl, websocat, Python `websockets` (ssl context),
# Node `ws` (ca option), the CLI, and headless Chromium trusting a test CA through a
# temporary NSS database -- all against a release server started with a certificate
# made here by a throwaway CA. Installs openssl and certutil (libnss3-tools) when missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tools/test.d/clients-install.inc
need=()
command -v openssl >/dev/null || need+=(openssl)
command -v certutil >/dev/null || need+=(libnss3-tools)
if [ ${#need[@]} -gt 0 ]; then
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${need[@]}"
fi

dir=$(mktemp -d)
pid=""
trap '[ -n "$pid" ] && { kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; }; rm -rf "$dir"' EXIT
# A CA, and a server certificate it signs for localhost and 127.0.0.1 (ECDSA P-256).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj "/CN=chatterbox test CA" -keyout "$dir/ca.key" -out "$dir/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=localhost \
    -keyout "$dir/key.pem" -out "$dir/server.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\n' >"$dir/ext"
openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial \
    -days 2 -extfile "$dir/ext" -out "$dir/cert.pem" 2>/dev/null

target/release/chatterbox --listen 127.0.0.1:0 --db "$dir/tls.db" --auth-per-minute 100000 \
    --tls-cert "$dir/cert.pem" --tls-key "$dir/key.pem" >"$dir/out" 2>"$dir/err" &
pid=$!
for _ in $(seq 100); do grep -q listening "$dir/out" 2>/dev/null && break; sleep 0.1; done
addr=$(sed -n 's#.*https://##p' "$dir/out" | head -1)
port=${addr##*:}
base="https://localhost:$port"
passed=0; failed=0
check() { # name, expected, actual
    if [ "$2" = "$3" ]; then echo "ok   $1"; passed=$((passed+1)); else echo "FAIL $1: expected [$2], got [$3]"; failed=$((failed+1)); fi
}
c() { curl -s --cacert "$dir/ca.pem" --resolve "localhost:$port:127.0.0.1" "$@"; }

check "curl https healthz" '{"status":"ok"}' "$(c "$base/healthz")"
check "curl https register" 201 "$(c -o /dev/null -w '%{http_code}' -X POST "$base/register" -d '{"username":"alice","password":"wonderland"}')"
c -o /dev/null -X POST "$base/register" -d '{"username":"bob","password":"wonderland"}'
login() { c -X POST "$base/login" -d "{\"username\":\"$1\",\"password\":\"wonderland\"}" | sed 's/.*"token":"\([0-9a-f]*\)".*/\1/'; }
A=$(login alice); B=$(login bob)
check "curl https login gives a token" 64 "${#A}"
check "curl without the CA refuses the certificate" 60 "$(curl -s -o /dev/null "$base/healthz" --resolve "localhost:$port:127.0.0.1"; echo $?)"
check "plain http to the TLS port is told to use https" 400 "$(curl -s -o /dev/null -w '%{http_code}' "http://$addr/healthz")"

got=$(echo '{"type":"send","room":"general","text":"hello over wss"}' \
    | SSL_CERT_FILE="$dir/ca.pem" timeout 10 websocat -H="Authorization: Bearer $A" "wss://localhost:$port/ws" 2>&1 \
    | grep -c '"text":"hello over wss"' || true)
check "websocat wss send and receive" 1 "$got"

# Python websockets with an ssl context trusting the CA.
cat >"$dir/wss.py" <<'PY'
import asyncio, json, ssl, sys
import websockets
port, ca, ta, tb = sys.argv[1:5]
async def main():
    ctx = ssl.create_default_context(cafile=ca)
    url = f"wss://localhost:{port}/ws?token="
    async with websockets.connect(url + ta, ssl=ctx) as a, websockets.connect(url + tb, ssl=ctx) as b:
        assert json.loads(await a.recv())["type"] == "hello"
        assert json.loads(await b.recv())["type"] == "hello"
        await a.send(json.dumps({"type": "send", "room": "general", "text": "python over wss"}))
        while True:
            m = json.loads(await asyncio.wait_for(b.recv(), 10))
            if m["type"] == "message" and m["text"] == "python over wss":
                return
asyncio.run(main())
PY
if (cd "$dir" && "$OLDPWD/tools/.venv/bin/python" wss.py "$port" "$dir/ca.pem" "$A" "$B"); then check "python websockets over wss" 0 0; else check "python websockets over wss" 0 1; fi

# Node ws with the CA as `ca`.
cat >tests/interop/.wss-check.mjs <<'JS'
import WebSocket from "ws";
import { readFileSync } from "node:fs";
const [port, ca, ta, tb] = process.argv.slice(2);
const opts = { ca: readFileSync(ca) };
const open = (t) => new Promise((res, rej) => {
  const ws = new WebSocket(`wss://localhost:${port}/ws?token=${t}`, opts);
  ws.once("open", () => res(ws)); ws.once("error", rej);
});
const a = await open(ta), b = await open(tb);
const seen = new Promise((res) => b.on("message", (d) => {
  const m = JSON.parse(d.toString());
  if (m.type === "message" && m.text === "node over wss") res();
}));
a.send(JSON.stringify({ type: "send", room: "general", text: "node over wss" }));
await Promise.race([seen, new Promise((_, rej) => setTimeout(() => rej(new Error("timeout")), 10000))]);
a.close(); b.close();
JS
if (cd tests/interop && node .wss-check.mjs "$port" "$dir/ca.pem" "$A" "$B"); then check "node ws over wss" 0 0; else check "node ws over wss" 0 1; fi
rm -f tests/interop/.wss-check.mjs

# The CLI over https and wss, trusting the CA with --cacert.
cli() { CHATTERBOX_CONFIG_DIR="$dir/cli" target/release/chatterbox-cli --server "https://localhost:$port" --cacert "$dir/ca.pem" "$@"; }
echo wonderland | cli login alice >/dev/null
echo "cli over wss" | cli send general >/dev/null
check "chatterbox-cli send over wss is stored" 1 \
    "$(c "$base/rooms/general/messages?limit=10" -H "Authorization: Bearer $B" | grep -c 'cli over wss')"
check "chatterbox-cli tail over wss" 1 "$(timeout 5 env CHATTERBOX_CONFIG_DIR="$dir/cli" target/release/chatterbox-cli --server "https://localhost:$port" --cacert "$dir/ca.pem" tail general --since 0 | grep -c 'cli over wss' || true)"
check "chatterbox-cli without the CA refuses the certificate" 2 \
    "$(echo x | CHATTERBOX_CONFIG_DIR="$dir/cli" SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt target/release/chatterbox-cli --server "https://localhost:$port" send general >/dev/null 2>&1; echo $?)"

# Headless Chromium trusting the CA through a temporary NSS database (no
# --ignore-certificate-errors): the UI over https, two people chatting over wss.
mkdir -p "$dir/home/.pki/nssdb"
certutil -d "sql:$dir/home/.pki/nssdb" -N --empty-password
certutil -d "sql:$dir/home/.pki/nssdb" -A -t "C,," -n "chatterbox test CA" -i "$dir/ca.pem"
[ -d tests/browser/node_modules/playwright-core ] || (cd tests/browser && npm ci --no-audit --no-fund --silent)
if (cd tests/browser && TLS_BASE="https://127.0.0.1:$port" TLS_HOME="$dir/home" \
        timeout 120 node --test tls.check.mjs >"$dir/browser.log" 2>&1); then
    check "chromium: the UI over https, chatting over wss" 0 0
else
    grep -v "^ *at " "$dir/browser.log" | head -40; check "chromium: the UI over https, chatting over wss" 0 1
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
