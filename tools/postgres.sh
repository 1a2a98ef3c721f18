#!/usr/bin/env bash
# A throwaway PostgreSQL cluster on loopback, for the evidence-ledger tests and benchmarks.
#
#   tools/postgres.sh start    install Debian's postgresql if missing, start a cluster (idempotent)
#                              and print its DSN on stdout (the last line)
#   tools/postgres.sh dsn      print the DSN of the running cluster (exit 1 when it is not running)
#   tools/postgres.sh status   exit 0 when the cluster runs
#   tools/postgres.sh stop     stop the cluster (data kept)
#   tools/postgres.sh purge    stop the cluster and delete its directory
#
# Environment:
#   SOC2INFRA_PG_DIR   cluster directory (default /tmp/soc2infra-pg); the unix socket lives there too
#   SOC2INFRA_PG_PORT  loopback TCP port (default: the first free port from 55432)
#
# initdb refuses to run as root: as root the cluster is owned by and run as the `postgres` system
# user (created by the Debian package). Authentication is `trust` on 127.0.0.1 and the socket:
# this is a test fixture, never a server to keep data in. Concurrent `start` calls for the same
# directory are serialised with flock.
set -euo pipefail
# runuser and the cluster tools live in sbin, which a minimal PATH (env -i, some CI images) lacks.
export PATH="$PATH:/usr/sbin:/sbin"

DIR="${SOC2INFRA_PG_DIR:-/tmp/soc2infra-pg}"
DB=soc2infra
cmd="${1:-start}"

log() { printf '%s\n' "postgres.sh: $*" >&2; }

pg_bindir() {
    local d
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then
            echo "$d"
            return 0
        fi
    done
    if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
        dirname "$(command -v initdb)"
        return 0
    fi
    return 1
}

install_postgres() {
    if pg_bindir >/dev/null; then
        return 0
    fi
    if [ "$(id -u)" -ne 0 ]; then
        log "PostgreSQL is not installed and installing it needs root (apt-get install postgresql)"
        return 1
    fi
    log "installing postgresql with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq postgresql >&2
    pg_bindir >/dev/null
}

# Run a command as the cluster owner: ourselves, or `postgres` when we are root.
as_owner() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

port_busy() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

dsn() {
    local port
    port="$(cat "$DIR/port")"
    echo "postgresql://postgres@127.0.0.1:${port}/${DB}"
}

running() {
    local bindir
    bindir="$(pg_bindir)" || return 1
    [ -f "$DIR/data/PG_VERSION" ] && [ -f "$DIR/port" ] || return 1
    as_owner "$bindir/pg_ctl" -D "$DIR/data" status >/dev/null 2>&1
}

start() {
    install_postgres
    local bindir port tries
    bindir="$(pg_bindir)"
    mkdir -p "$DIR"
    if [ "$(id -u)" -eq 0 ]; then
        if ! id postgres >/dev/null 2>&1; then
            log "no 'postgres' user to run the cluster as (is the Debian package installed?)"
            return 1
        fi
        chown postgres: "$DIR"
        # The owner must be able to reach the directory through its parents (e.g. a pytest tmp dir).
        local p="$DIR"
        while [ "$p" != "/" ]; do
            p="$(dirname "$p")"
            chmod o+x "$p" 2>/dev/null || true
        done
    fi
    exec 9>"$DIR/.lock"
    flock 9
    if running; then
        log "already running"
        dsn
        return 0
    fi
    if [ ! -f "$DIR/data/PG_VERSION" ]; then
        rm -rf "$DIR/data"
        as_owner "$bindir/initdb" -D "$DIR/data" -U postgres --auth=trust --encoding=UTF8 \
            --locale=C.UTF-8 >"$DIR/initdb.log" 2>&1 || {
            cat "$DIR/initdb.log" >&2
            return 1
        }
    fi
    port="${SOC2INFRA_PG_PORT:-}"
    tries=0
    while :; do
        if [ -z "${SOC2INFRA_PG_PORT:-}" ]; then
            port=$((55432 + tries))
            if port_busy "$port"; then
                tries=$((tries + 1))
                [ "$tries" -lt 200 ] || { log "no free port from 55432"; return 1; }
                continue
            fi
        fi
        if as_owner "$bindir/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 60 \
            -o "-c listen_addresses=127.0.0.1 -p $port -k $DIR/data -c max_connections=200" \
            start >&2 9>&-; then
            break
        fi
        if [ -n "${SOC2INFRA_PG_PORT:-}" ] || [ "$tries" -ge 20 ]; then
            tail -n 20 "$DIR/server.log" >&2 || true
            return 1
        fi
        tries=$((tries + 1))   # lost a race for the port: try the next one
    done
    echo "$port" >"$DIR/port"
    if ! as_owner "$bindir/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname = '$DB'" | grep -q 1; then
        as_owner "$bindir/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -qc "CREATE DATABASE $DB" >&2
    fi
    log "started in $DIR"
    dsn
}

stop() {
    local bindir
    bindir="$(pg_bindir)" || return 0
    if [ -f "$DIR/data/PG_VERSION" ]; then
        as_owner "$bindir/pg_ctl" -D "$DIR/data" -m fast -w stop >&2 9>&- || true
    fi
}

case "$cmd" in
    start) start ;;
    dsn) running && dsn ;;
    status) running ;;
    stop) stop ;;
    purge) stop; rm -rf "$DIR" ;;
    *) echo "usage: $0 start|dsn|status|stop|purge" >&2; exit 2 ;;
esac
