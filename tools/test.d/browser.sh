#!/usr/bin/env bash
# Browser tests: the web UI in Debian's headless Chromium (its headless shell), driven by
# playwright-core, with axe-core for the accessibility pass. Installs Chromium (apt) and
# the npm packages when missing (also when package.json names one that node_modules lacks).
set -euo pipefail
cd "$(dirname "$0")/../.."
# chromium-headless-shell is what the tests drive (lighter); chromium is for tls.sh, and
# for the tests when the shell is missing.
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromium-headless-shell ]; then
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q chromium chromium-headless-shell
fi
cd tests/browser
missing=$(node -e '
  const p = require("./package.json");
  const fs = require("fs");
  const names = Object.keys({ ...p.dependencies, ...p.devDependencies });
  console.log(names.filter((n) => !fs.existsSync("node_modules/" + n + "/package.json")).join(" "));')
if [ -n "$missing" ]; then
    if [ -f package-lock.json ]; then npm ci --no-audit --no-fund; else npm install --no-audit --no-fund; fi
fi
# Every *.test.mjs in one process (all.mjs): one Chromium shared by all, two files at a
# time, each file with a server and database of its own and its tests in order.
timeout 420 node --experimental-websocket --test all.mjs
