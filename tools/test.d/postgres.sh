#!/usr/bin/env bash
# The PostgreSQL backend (`--db postgres://…`): the store's unit tests and the
# backend-relevant integration suites again, each test server on a fresh database of a
# throwaway PostgreSQL instance made here (initdb in a temporary directory, a free port,
# its socket in that directory, fsync off). Installs the `postgresql` package when no
# initdb is found. Touches no system service: the instance is ours, stopped on any exit.
set -euo pipefail
cd "$(dirname "$0")/../.."

sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
    # Debian's package would create (and try to start) a system cluster of its own; the
    # tests want none: say so before installing, only if nothing says otherwise yet.
    if [ ! -e /etc/postgresql-common/createcluster.conf ]; then
        $sudo mkdir -p /etc/postgresql-common
        echo "create_main_cluster = false" | $sudo tee /etc/postgresql-common/createcluster.conf >/dev/null
    fi
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends \
        -o Dpkg::Options::=--force-confold postgresql
    bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
fi

dir=$(mktemp -d)
data="$dir/data"
# initdb refuses to run as root: the cluster belongs to the `postgres` user the package
# made (or to us, when we are not root).
as_pg() { "$@"; }
if [ "$(id -u)" -eq 0 ]; then
    chown postgres "$dir"
    as_pg() { runuser -u postgres -- "$@"; }
fi
stop() {
    if [ -f "$data/postmaster.pid" ]; then
        as_pg "$bin/pg_ctl" -D "$data" -m immediate -w stop >/dev/null 2>&1 || {
            pid=$(head -1 "$data/postmaster.pid" 2>/dev/null || true)
            [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
        }
    fi
    rm -rf "$dir"
}
trap stop EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
as_pg "$bin/initdb" -D "$data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log"; exit 1; }
as_pg "$bin/pg_ctl" -D "$data" -l "$dir/server.log" -w -o \
    "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" \
    start >/dev/null || { cat "$dir/server.log"; exit 1; }
echo "PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port (pid $(head -1 "$data/postmaster.pid"))"

export CHATTERBOX_TEST_PG="postgres://postgres@127.0.0.1:$port/postgres"
# Unit tests of the dialect layer, the PostgreSQL schema, the readers and the writer;
# then the integration suites whose behaviour depends on the store (hardening for kill -9,
# SIGTERM and the logs; its full-disk tests are SQLite's and skip themselves). Not here:
# upgrade (SQLite fixtures), cli and tls (the store is not theirs), overload and soak
# (throughput, a benchmark's business). `cluster` runs here too, its nodes sharing one database.
# (The search time-budget test is SQLite's alone and timing-bound: `cargo test` has it.)
cargo test --release --locked --lib store:: -- --test-threads=2 --skip a_search_out_of_time_answers_partial
# Cluster mode too: three nodes on one PostgreSQL database (and a throwaway Redis).
cargo test --release --locked --test protocol --test core --test accounts --test files --test hardening \
    --test cluster -- --test-threads=2
