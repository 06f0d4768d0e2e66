#!/usr/bin/env bash
# Throw-away PostgreSQL server for the frostnet-tuner tests.
#
# Usage (from the repository root; either form works):
#
#   eval "$(bash .ci/postgres.sh start)"   # prints `export ...` lines to eval
#   # or: source .ci/postgres.sh start     # exports into the current shell
#   cargo test -p frostnet-tuner           # tests read FROSTNET_PG_URL
#   bash .ci/postgres.sh stop              # stops the server, removes its data
#
# `start`:
#   * installs PostgreSQL from Debian's packages if no server binaries exist
#     (`apt-get update` + `apt-get install -y postgresql`; needs root);
#   * creates a temporary data directory with initdb, owned by the `postgres`
#     user when run as root (the server refuses to run as root);
#   * starts the server on 127.0.0.1 on a free port (unix socket inside the
#     data directory, nothing else is touched), trust authentication for
#     local connections only;
#   * creates the database `frostnet_test`;
#   * prints, on stdout and nothing else:
#       export FROSTNET_PG_URL=postgres://postgres@127.0.0.1:PORT/frostnet_test
#       export FROSTNET_PG_DATADIR=/tmp/frostnet-pg.XXXXXX
#     Progress and errors go to stderr. Exit status is non-zero on failure.
# `stop`:
#   stops the server of FROSTNET_PG_DATADIR (or, if unset, of the last `start`,
#   recorded in ${TMPDIR:-/tmp}/frostnet-pg.last) and removes the directory.
#
# The state file lets `stop` work from a shell that did not eval `start`.

frostnet_pg_main() (
    set -euo pipefail
    local state_file="${TMPDIR:-/tmp}/frostnet-pg.last"
    log() { echo "postgres.sh: $*" >&2; }

    find_bindir() {
        local d
        for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
            if [[ -x "$d/initdb" && -x "$d/pg_ctl" ]]; then
                echo "$d"
                return 0
            fi
        done
        return 1
    }

    as_owner() {
        # Runs a command as the owner of the data directory.
        if [[ "$(id -u)" == 0 ]]; then
            runuser -u postgres -- "$@"
        else
            "$@"
        fi
    }

    free_port() {
        local port
        for _ in $(seq 1 200); do
            port=$(( 20000 + RANDOM % 40000 ))
            if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
                echo "$port"
                return 0
            fi
        done
        return 1
    }

    case "${1:-}" in
    start)
        local bindir
        if ! bindir=$(find_bindir); then
            log "PostgreSQL not found; installing it from Debian's packages"
            export DEBIAN_FRONTEND=noninteractive
            apt-get update >&2
            apt-get install -y postgresql >&2
            # The package starts a cluster of its own on 5432; we do not use it.
            bindir=$(find_bindir) || { log "installation did not provide initdb"; exit 1; }
        fi
        if [[ "$(id -u)" == 0 ]] && ! id postgres >/dev/null 2>&1; then
            useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
        fi
        local datadir
        datadir=$(mktemp -d "${TMPDIR:-/tmp}/frostnet-pg.XXXXXX")
        chmod 700 "$datadir"
        if [[ "$(id -u)" == 0 ]]; then
            chown postgres: "$datadir"
        fi
        log "initdb in $datadir ($bindir)"
        as_owner "$bindir/initdb" -D "$datadir/data" -U postgres --auth=trust \
            --encoding=UTF8 --locale=C >"$datadir/initdb.log" 2>&1 \
            || { cat "$datadir/initdb.log" >&2; exit 1; }
        local port started=0
        for _ in 1 2 3 4 5; do
            port=$(free_port) || { log "no free port"; exit 1; }
            if as_owner "$bindir/pg_ctl" -D "$datadir/data" -l "$datadir/server.log" -w -t 60 \
                -o "-c listen_addresses=127.0.0.1 -p $port -k $datadir -c fsync=off \
                    -c max_connections=100" start >&2; then
                started=1
                break
            fi
            log "start on port $port failed, retrying"
            tail -n 5 "$datadir/server.log" >&2 || true
        done
        [[ "$started" == 1 ]] || { log "server did not start"; exit 1; }
        echo "$datadir" >"$state_file"
        as_owner "$bindir/createdb" -h 127.0.0.1 -p "$port" -U postgres frostnet_test >&2
        log "running on 127.0.0.1:$port"
        echo "export FROSTNET_PG_URL=postgres://postgres@127.0.0.1:$port/frostnet_test"
        echo "export FROSTNET_PG_DATADIR=$datadir"
        ;;
    stop)
        local datadir="${FROSTNET_PG_DATADIR:-}"
        if [[ -z "$datadir" && -f "$state_file" ]]; then
            datadir=$(cat "$state_file")
        fi
        if [[ -z "$datadir" || ! -d "$datadir" ]]; then
            log "no server to stop"
            exit 0
        fi
        case "$datadir" in
        "${TMPDIR:-/tmp}"/frostnet-pg.*) ;;
        *) log "refusing to remove $datadir (not made by this script)"; exit 1 ;;
        esac
        local bindir
        bindir=$(find_bindir) || true
        if [[ -n "$bindir" && -f "$datadir/data/postmaster.pid" ]]; then
            as_owner "$bindir/pg_ctl" -D "$datadir/data" -m fast -w stop >&2 || true
        fi
        rm -rf "$datadir"
        if [[ -f "$state_file" && "$(cat "$state_file")" == "$datadir" ]]; then
            rm -f "$state_file"
        fi
        log "stopped and removed $datadir"
        ;;
    *)
        echo "usage: $0 start|stop" >&2
        exit 2
        ;;
    esac
)

if [[ "${BASH_SOURCE[0]}" != "$0" ]]; then
    # Sourced: apply the exports to the caller's shell.
    if [[ "${1:-}" == start ]]; then
        frostnet_pg_out=$(frostnet_pg_main start) && eval "$frostnet_pg_out"
        frostnet_pg_status=$?
        unset frostnet_pg_out
        unset -f frostnet_pg_main
        return "$frostnet_pg_status"
    else
        frostnet_pg_main "$@"
        frostnet_pg_status=$?
        unset -f frostnet_pg_main
        [[ "${1:-}" == stop ]] && unset FROSTNET_PG_URL FROSTNET_PG_DATADIR
        return "$frostnet_pg_status"
    fi
else
    frostnet_pg_main "$@"
fi
