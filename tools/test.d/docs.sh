#!/usr/bin/env bash
# Keeps the README and docs/clients.md honest: runs the README's own `cargo run` line on a
# free port with a temporary database, then every example of both documents as printed,
# checking each `# →` line against what the command printed (tools/doccheck.py).
set -euo pipefail
cd "$(dirname "$0")/../.."
. tools/test.d/clients-install.inc
export PATH="$HOME/.cargo/bin:$PATH"
python3 tools/doccheck.py README.md docs/clients.md
