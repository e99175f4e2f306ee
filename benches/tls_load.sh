#!/usr/bin/env bash
# Load benchmark: apicache cache hits through the TLS listener vs the plain-HTTP listener, same run.
#
#   benches/tls_load.sh                 # 10 s per wrk run
#   DURATION=3 benches/tls_load.sh      # quicker
#
# Two apicache processes with the same config (one with [server.tls], ECDSA P-256 certificate
# made here with openssl) in front of the demo origin, both warmed (X-Cache: HIT asserted, bodies
# compared), then `wrk -t1 -c64 --latency` (pinned to CPU 1; the proxies to CPU 0) against each:
# req/s, p99 and the ratio https/http. wrk keeps its 64 connections open, so this measures TLS
# record encryption on the hit path (TLS 1.3, HTTP/1.1: wrk does not speak h2), not handshakes.
#
# Only 127.0.0.1 is used; every wrk run is bounded by -d; every process started here is killed on
# exit. Exits non-zero only when setup fails, never because a number is slow.
#
# Env: DURATION (s, default 10), WARMUP (s, default 1), SIZES (default "1024 32768"), PORT_BASE
#      (default 18280), SKIP_BUILD=1, KEEP_TMP=1.
set -euo pipefail

DURATION=${DURATION:-10}
WARMUP=${WARMUP:-1}
SIZES=${SIZES:-"1024 32768"}
PORT_BASE=${PORT_BASE:-18280}
CONNS=64

SCRIPT=tls_load.sh
# shellcheck source=benches/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

need_apt=()
command -v wrk >/dev/null 2>&1 || need_apt+=(wrk)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
if ((${#need_apt[@]})); then
    log "installing ${need_apt[*]} with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null || die "apt-get update failed"
    apt-get install -y -qq "${need_apt[@]}" >/dev/null || die "apt-get install ${need_apt[*]} failed"
fi
for t in wrk curl taskset awk openssl; do
    command -v "$t" >/dev/null 2>&1 || die "$t not found"
done

build_release
TMP=$(mktemp -d /tmp/apicache-tls-load.XXXXXX)
pick_ports
P_HTTP=${FREE_PORTS[0]}
P_HTTPS=${FREE_PORTS[1]}
P_ORIGIN=${FREE_PORTS[2]}
P_DEMO=${FREE_PORTS[3]}
P_ADMIN=${FREE_PORTS[4]}

start_demo_origin

log "making a certificate for 127.0.0.1"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj "/CN=127.0.0.1" -addext "subjectAltName=IP:127.0.0.1" \
    -keyout "$TMP/key.pem" -out "$TMP/cert.pem" >/dev/null 2>&1 || die "openssl failed"

# write_config FILE PORT [TLS]
write_config() {
    {
        printf '[server]\nlisten = "127.0.0.1:%s"\n' "$2"
        if [[ "${3:-}" == tls ]]; then
            printf '[server.tls]\ncert_file = "%s"\nkey_file = "%s"\n' "$TMP/cert.pem" "$TMP/key.pem"
        fi
        printf '[origin]\nurl = "http://127.0.0.1:%s"\n' "$P_ORIGIN"
        printf '[[routes]]\npath = "/blob/{n}"\nttl = "1h"\n'
    } >"$1"
}
write_config "$TMP/http.toml" "$P_HTTP"
write_config "$TMP/https.toml" "$P_HTTPS" tls

declare -A PID_OF
for t in http https; do
    log "starting apicache ($t) on CPU 0"
    RUST_LOG=warn taskset -c 0 "$BIN" --config "$TMP/$t.toml" >"$TMP/$t.out" 2>"$TMP/$t.err" &
    PIDS+=($!)
    PID_OF[$t]=$!
done
wait_http "http://127.0.0.1:$P_HTTP/blob/1" || { cat "$TMP/http.err" >&2; die "apicache (http) did not start"; }
until curl -sk -o /dev/null --max-time 1 "https://127.0.0.1:$P_HTTPS/blob/1"; do
    kill -0 "${PID_OF[https]}" 2>/dev/null || { cat "$TMP/https.err" >&2; die "apicache (https) did not start"; }
    sleep 0.1
done

x_cache() {
    curl -sk -o /dev/null -D - --max-time 5 "$1" | tr -d '\r' | awk -F': *' 'tolower($1)=="x-cache"{print $2}'
}
warm_until_hit() {
    local i
    for i in 1 2 3 4 5; do
        [[ "$(x_cache "$1")" == HIT ]] && return 0
        sleep 0.05
    done
    return 1
}

NOTES=()
declare -A RPS P99
run_wrk() { # NAME SIZE URL
    local out="$TMP/wrk.$1.$2.txt" rps p99
    if ((WARMUP > 0)); then
        taskset -c 1 timeout $((WARMUP + 30)) wrk -t1 -c"$CONNS" -d"${WARMUP}s" "$3" >/dev/null 2>&1 || true
    fi
    log "wrk ${DURATION}s $1 $2 B  $3"
    taskset -c 1 timeout $((DURATION + 60)) wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "$3" >"$out" 2>&1 \
        || NOTES+=("$1/$2: wrk exited non-zero")
    rps=$(awk '/^Requests\/sec:/ {print $2}' "$out")
    p99=$(awk '$1 == "99%" {print $2}' "$out")
    RPS[$1.$2]=${rps:-0}
    P99[$1.$2]=${p99:-n/a}
    grep -q 'Non-2xx' "$out" && NOTES+=("$1/$2: $(grep 'Non-2xx' "$out" | sed 's/^ *//')")
    grep -q 'Socket errors' "$out" && NOTES+=("$1/$2: $(grep 'Socket errors' "$out" | sed 's/^ *//')")
    return 0
}

for size in $SIZES; do
    path="/blob/$size"
    curl -sf --max-time 5 "http://127.0.0.1:$P_ORIGIN$path" -o "$TMP/ref.$size" || die "origin fetch failed"
    for t in http https; do
        port=P_${t^^}
        url="$t://127.0.0.1:${!port}$path"
        warm_until_hit "$url" || die "$t never answered X-Cache: HIT for $path"
        curl -sk --max-time 5 "$url" -o "$TMP/got.$t.$size"
        cmp -s "$TMP/ref.$size" "$TMP/got.$t.$size" || die "$t body differs from the origin's for $path"
    done
    run_wrk http "$size" "http://127.0.0.1:$P_HTTP$path"
    run_wrk https "$size" "https://127.0.0.1:$P_HTTPS$path"
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0) print "n/a"; else printf "%.2f", a / b }'; }
echo
echo "apicache hits, TLS listener vs plain HTTP: wrk -t1 -c$CONNS -d${DURATION}s (wrk on CPU 1, proxies on CPU 0), 127.0.0.1"
echo "$(nproc) CPUs, $(wrk -v 2>&1 | head -1 | awk '{print $1, $2}'), $(openssl version)"
printf '  %-9s %10s %10s %12s %10s %11s\n' body http-req/s http-p99 https-req/s https-p99 "https/http"
for size in $SIZES; do
    printf '  %-9s %10.0f %10s %12.0f %10s %11s\n' "$size B" "${RPS[http.$size]}" "${P99[http.$size]}" \
        "${RPS[https.$size]}" "${P99[https.$size]}" "$(ratio "${RPS[https.$size]}" "${RPS[http.$size]}")"
done
for t in http https; do
    kill -0 "${PID_OF[$t]}" 2>/dev/null || NOTES+=("apicache ($t) died during the run")
    [[ -s "$TMP/$t.err" ]] && NOTES+=("apicache ($t) stderr: $(head -3 "$TMP/$t.err" | tr '\n' ' ' | cut -c1-300)")
done
echo
if ((${#NOTES[@]})); then printf 'notes:\n'; printf '  - %s\n' "${NOTES[@]}"; else echo "notes: none"; fi
