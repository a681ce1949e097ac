#!/usr/bin/env bash
# Start a throwaway PostgreSQL server for the tests, from Debian's packages.
#
#   eval "$(.ci/postgres.sh)"          # installs postgresql if needed, starts a cluster, and
#                                      # exports TRUSTFORGE_TEST_PG_URL (and _PG_DATA, _PG_STOP)
#   eval "$TRUSTFORGE_TEST_PG_STOP"    # stops it and removes its folder
#
# The cluster lives in a fresh temporary folder, listens on 127.0.0.1 only, on a free port
# chosen at random, with trust authentication (it is local and thrown away). Run as root (CI)
# it runs the server as the `postgres` user the Debian package creates; run as another user it
# runs it as that user. Only the `export ...` lines go to stdout; everything else to stderr.
set -euo pipefail

log() { echo "postgres.sh: $*" >&2; }

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

BIN="$(pg_bin)"
if [ -z "$BIN" ] || [ ! -x "$BIN/initdb" ]; then
    if [ "$(id -u)" != 0 ]; then
        log "PostgreSQL is not installed; run as root, or: sudo apt-get install -y postgresql"
        exit 1
    fi
    log "installing Debian's postgresql"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq postgresql >&2
    BIN="$(pg_bin)"
fi

if [ "$(id -u)" = 0 ]; then
    RUNAS=(runuser -u postgres --)
    OWNER=postgres
else
    RUNAS=()
    OWNER="$(id -un)"
fi

DIR="$(mktemp -d /tmp/trustforge-pg.XXXXXX)"
chown "$OWNER" "$DIR"
chmod 700 "$DIR"
# A port that was free a moment ago; the tiny race with another process is acceptable in CI.
PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"

"${RUNAS[@]}" "$BIN/initdb" -D "$DIR/data" -U postgres --auth-local=trust --auth-host=trust \
    --encoding=UTF8 --locale=C.UTF-8 >"$DIR/initdb.log" 2>&1 || { cat "$DIR/initdb.log" >&2; exit 1; }
# fsync off: a test cluster that is thrown away needs no durability, and it is much faster.
"${RUNAS[@]}" "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $PORT -k $DIR -c fsync=off -c max_connections=100" start >&2 \
    || { cat "$DIR/server.log" >&2; exit 1; }
"${RUNAS[@]}" "$BIN/createdb" -h 127.0.0.1 -p "$PORT" -U postgres trustforge_test >&2

log "PostgreSQL $("$BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PORT, data in $DIR"
echo "export TRUSTFORGE_TEST_PG_URL='postgresql+psycopg://postgres@127.0.0.1:$PORT/trustforge_test'"
echo "export TRUSTFORGE_TEST_PG_DATA='$DIR'"
if [ "${#RUNAS[@]}" -gt 0 ]; then
    echo "export TRUSTFORGE_TEST_PG_STOP='runuser -u postgres -- $BIN/pg_ctl -D $DIR/data -m fast stop >&2; rm -rf $DIR'"
else
    echo "export TRUSTFORGE_TEST_PG_STOP='$BIN/pg_ctl -D $DIR/data -m fast stop >&2; rm -rf $DIR'"
fi
