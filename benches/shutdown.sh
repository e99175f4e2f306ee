#!/usr/bin/env bash
# Shutdown under load: wrk -c64 against cached hits through the release binary, SIGTERM halfway,
# and what the clients saw. A graceful drain answers every request that reached the proxy
# (HTTP/1 keep-alive connections get `Connection: close` on their last response), so wrk reports
# no read errors. Once the listener is closed, wrk's reconnects are refused until its -d ends; it
# counts each as a write error (a refused non-blocking connect shows on its first write), so the
# write count is those refusals, not failed requests.
#
#   benches/shutdown.sh
#   RUNS=3 BIN=path/to/other/apicache SKIP_BUILD=1 benches/shutdown.sh
#
# Only 127.0.0.1 is used; every wrk run is bounded by -d; every process started here is killed on
# exit. Exits non-zero only when setup fails, never because of a count.
#
# Env: RUNS (default 1), DURATION (s, default 5), CONNS (default 64), PORT_BASE (default 18380),
#      BIN, SKIP_BUILD=1, KEEP_TMP=1.
set -euo pipefail

RUNS=${RUNS:-1}
DURATION=${DURATION:-5}
CONNS=${CONNS:-64}
PORT_BASE=${PORT_BASE:-18380}

SCRIPT=shutdown.sh
# shellcheck source=benches/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

if ! command -v wrk >/dev/null 2>&1; then
    log "installing wrk with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null || die "apt-get update failed"
    apt-get install -y -qq wrk >/dev/null || die "apt-get install wrk failed"
fi
for t in wrk curl awk; do
    command -v "$t" >/dev/null 2>&1 || die "$t not found"
done

build_release
TMP=$(mktemp -d /tmp/apicache-shutdown.XXXXXX)
pick_ports
P_PROXY=${FREE_PORTS[0]}
P_ORIGIN=${FREE_PORTS[1]}
P_DEMO=${FREE_PORTS[2]}
P_ADMIN=${FREE_PORTS[3]}

start_demo_origin

cat >"$TMP/proxy.toml" <<EOF
[server]
listen = "127.0.0.1:$P_PROXY"
[origin]
url = "http://127.0.0.1:$P_ORIGIN"
EOF
URL="http://127.0.0.1:$P_PROXY/blob/1024"

echo "wrk -t1 -c$CONNS -d${DURATION}s, SIGTERM to apicache after $(awk -v d="$DURATION" 'BEGIN { print d / 2 }') s ($BIN)"
for run in $(seq 1 "$RUNS"); do
    RUST_LOG=warn "$BIN" --config "$TMP/proxy.toml" >"$TMP/proxy.out" 2>"$TMP/proxy.err" &
    pid=$!
    PIDS+=("$pid")
    wait_http "$URL" || { cat "$TMP/proxy.err" >&2; die "apicache did not start"; }
    curl -s -o /dev/null "$URL"
    wrk -t1 -c"$CONNS" -d"${DURATION}s" "$URL" >"$TMP/wrk.$run" 2>&1 &
    wrk_pid=$!
    PIDS+=("$wrk_pid")
    sleep "$(awk -v d="$DURATION" 'BEGIN { print d / 2 }')"
    term_at=$(date +%s.%N)
    kill -TERM "$pid"
    code=0
    wait "$pid" || code=$?
    exit_s=$(awk -v s="$term_at" -v e="$(date +%s.%N)" 'BEGIN { printf "%.2f", e - s }')
    wait "$wrk_pid" || true
    requests=$(awk '/requests in/ { print $1 }' "$TMP/wrk.$run")
    errors=$(awk '/Socket errors/ { gsub(",", ""); print "connect " $4 ", read " $6 ", write " $8 ", timeout " $10 }' "$TMP/wrk.$run")
    non2xx=$(awk '/Non-2xx/ { print $NF }' "$TMP/wrk.$run")
    printf '  run %d: %s requests, socket errors: %s, non-2xx: %s; apicache exited %d after %s s\n' \
        "$run" "${requests:-?}" "${errors:-none}" "${non2xx:-0}" "$code" "$exit_s"
done
