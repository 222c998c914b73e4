#!/usr/bin/env bash
# Browser tests: the web UI in Debian's headless Chromium, driven by playwright-core.
# Installs Chromium (apt) and playwright-core (npm) when missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ ! -x /usr/bin/chromium ]; then
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q chromium
fi
cd tests/browser
if [ ! -d node_modules/playwright-core ]; then
    if [ -f package-lock.json ]; then npm ci --no-audit --no-fund; else npm install --no-audit --no-fund; fi
fi
timeout 300 node --experimental-websocket --test --test-concurrency=1 ui.test.mjs
