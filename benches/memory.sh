#!/usr/bin/env bash
# Memory benchmark: does the proxy's resident memory stay bounded by cache.max_size?
#
#   benches/memory.sh
#
# Runs `apicache demo` only for its origin (its own proxy sits idle on other ports), and the
# release `apicache --config` (cache.max_size = 64MiB) as a separate process in front of that
# origin, so the RSS measured is the proxy's alone. Then it fills the cache with FILL_FACTOR x
# max_size of distinct objects (default 4 x 64 MiB = 4096 x 64 KiB, GET /blob/65536?seed=N,
# 8 in parallel), in ROUNDS rounds of fresh seeds, and after each round prints /stats (objects,
# bytes), VmRSS and VmHWM of the proxy process, RSS/max_size, and whether
#     RSS < 1.3 x max_size + 16 MiB
# The 16 MiB is the "small constant": runtime, allocator arenas, buffers, and the binary itself.
#
# Only 127.0.0.1 is used; the fill is bounded by request count (and a per-request timeout);
# every process started here is killed on exit. Exits non-zero only when setup fails, never
# because a number is over the bound.
#
# Misses are CPU-bound: the proxy stores gzip and br variants of every object it caches (about
# 25 ms of CPU per 64 KiB object), so one round of 4096 takes about a minute on 2 cores.
#
# MODE=attacks runs the attack-sized workloads of benches/memory_attacks.rs instead (`cargo bench
# --bench memory_attacks`: 50 surrogate keys per object, 30 KB URLs, 30 KB Vary values, the
# hit-for-pass map, 200 concurrent 4 MiB fills, a 1 GiB gzip bomb; each against its own release
# `apicache --config` child, bound 1.3 x max_size + 32 MiB; its own env is documented there, e.g.
# WORKLOADS=1,5); MODE=all runs the fill and then those.
#
# Env: MODE (fill|attacks|all, default fill), OBJ_SIZE (bytes, default 65536), FILL_FACTOR (default 4), ROUNDS (default 1; 2+ shows
#      whether RSS keeps growing), COMPRESSION (on|off, default on: off adds [compression]
#      enabled = false),
#      PARALLEL (default 8), PORT_BASE (default 18190; PORT_BASE..PORT_BASE+10 are scanned),
#      SKIP_BUILD=1 (use the existing target/release/apicache), KEEP_TMP=1 (keep the temp dir:
#      configs, logs, raw outputs).
set -euo pipefail

MAX_SIZE_MIB=64
OBJ_SIZE=${OBJ_SIZE:-65536}
FILL_FACTOR=${FILL_FACTOR:-4}
ROUNDS=${ROUNDS:-1}
COMPRESSION=${COMPRESSION:-on}
PARALLEL=${PARALLEL:-8}
PORT_BASE=${PORT_BASE:-18190}
CONST_MIB=${CONST_MIB:-16}
FACTOR=1.3

SCRIPT=memory.sh
# shellcheck source=benches/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

for t in curl awk; do command -v "$t" >/dev/null 2>&1 || die "$t not found"; done

build_release

MODE=${MODE:-fill}
run_attacks() {
    log "cargo bench --bench memory_attacks (BIN=$BIN)"
    (cd "$ROOT" && BIN="$BIN" cargo bench --bench memory_attacks) || die "cargo bench --bench memory_attacks failed"
}
case "$MODE" in
    fill | all) ;;
    attacks) run_attacks; exit 0 ;;
    *) die "MODE must be fill, attacks or all" ;;
esac

TMP=$(mktemp -d /tmp/apicache-mem.XXXXXX)

pick_ports
P_DEMO_PROXY=${FREE_PORTS[0]}
P_ORIGIN=${FREE_PORTS[1]}
P_DEMO_ADMIN=${FREE_PORTS[2]}
P_PROXY=${FREE_PORTS[3]}
P_ADMIN=${FREE_PORTS[4]}


# ---------------------------------------------------------------------------------------- origin
log "starting apicache demo for its origin (:$P_ORIGIN)"
RUST_LOG=warn "$BIN" demo \
    --listen "127.0.0.1:$P_DEMO_PROXY" --origin-listen "127.0.0.1:$P_ORIGIN" --admin-listen "127.0.0.1:$P_DEMO_ADMIN" \
    >"$TMP/demo.out" 2>"$TMP/demo.err" &
PIDS+=($!)
wait_http "http://127.0.0.1:$P_ORIGIN/blob/1024" || { cat "$TMP/demo.err" >&2; die "demo origin did not start"; }

# ---------------------------------------------------------------------------------------- proxy
cat >"$TMP/apicache.toml" <<EOF
[server]
listen = "127.0.0.1:$P_PROXY"

[origin]
url = "http://127.0.0.1:$P_ORIGIN"

[cache]
max_size = "${MAX_SIZE_MIB}MiB"

[admin]
listen = "127.0.0.1:$P_ADMIN"
EOF
case "$COMPRESSION" in
    on) ;;
    off) printf '\n[compression]\nenabled = false\n' >>"$TMP/apicache.toml" ;;
    *) die "COMPRESSION must be on or off" ;;
esac
log "starting apicache --config (proxy :$P_PROXY, admin :$P_ADMIN, max_size ${MAX_SIZE_MIB}MiB)"
RUST_LOG=warn "$BIN" --config "$TMP/apicache.toml" >"$TMP/proxy.out" 2>"$TMP/proxy.err" &
PROXY_PID=$!
PIDS+=("$PROXY_PID")
wait_http "http://127.0.0.1:$P_ADMIN/stats" || { cat "$TMP/proxy.err" >&2; die "apicache --config did not start"; }
[[ "$(cat "/proc/$PROXY_PID/comm" 2>/dev/null)" == "$(basename "$BIN" | cut -c1-15)" ]] || die "pid $PROXY_PID is not the apicache process"

# one object through the proxy: MISS then HIT, so we know it caches what we are about to send
u1="http://127.0.0.1:$P_PROXY/blob/$OBJ_SIZE?seed=probe"
curl -sf -o /dev/null --max-time 5 "$u1" || die "GET $u1 through the proxy failed"
xc=$(curl -s -o /dev/null -D - --max-time 5 "$u1" | tr -d '\r' | awk -F': *' 'tolower($1)=="x-cache"{print $2}')
[[ "$xc" == HIT ]] || die "second GET of $u1 was X-Cache: '$xc', not HIT: the proxy is not caching blobs"

# ---------------------------------------------------------------------------------------- helpers
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }         # kB -> MiB
status_kb() { awk -v f="$1:" '$1 == f {print $2}' "/proc/$PROXY_PID/status"; }
stat_field() { curl -s --max-time 5 "http://127.0.0.1:$P_ADMIN/stats" | grep -o "\"$1\":[0-9]*" | head -1 | cut -d: -f2; }

MAX_KB=$((MAX_SIZE_MIB * 1024))
LIMIT_KB=$(awk -v m="$MAX_KB" -v f="$FACTOR" -v c="$CONST_MIB" 'BEGIN { printf "%d", m * f + c * 1024 }')
N_PER_ROUND=$((FILL_FACTOR * MAX_SIZE_MIB * 1024 * 1024 / OBJ_SIZE))

report() { # label
    local rss hwm objects bytes
    rss=$(status_kb VmRSS)
    hwm=$(status_kb VmHWM)
    objects=$(stat_field objects)
    bytes=$(stat_field bytes)
    printf '  %-22s objects %6s  stats.bytes %7s MiB  VmRSS %7s MiB  VmHWM %7s MiB  RSS/max_size %s\n' \
        "$1" "${objects:-?}" "$(awk -v b="${bytes:-0}" 'BEGIN { printf "%.1f", b / 1048576 }')" \
        "$(mib "$rss")" "$(mib "$hwm")" "$(awk -v r="$rss" -v m="$MAX_KB" 'BEGIN { printf "%.2f", r / m }')"
    LAST_RSS=$rss
    LAST_HWM=$hwm
    LAST_BYTES=${bytes:-0}
}

echo
echo "apicache memory benchmark: cache.max_size ${MAX_SIZE_MIB} MiB, ${N_PER_ROUND} distinct x ${OBJ_SIZE} B per round" \
    "(${FILL_FACTOR} x max_size), ${ROUNDS} round(s), ${PARALLEL} parallel, compression $COMPRESSION, 127.0.0.1"
report "idle (1 object)"

NOTES=()
seed=0
for round in $(seq 1 "$ROUNDS"); do
    first=$((seed + 1))
    last=$((seed + N_PER_ROUND))
    seed=$last
    log "round $round: GET /blob/$OBJ_SIZE?seed=[$first-$last] through the proxy"
    t0=$(date +%s.%N)
    # curl's URL globbing: one process, PARALLEL transfers at a time, bounded by count and time
    curl -s --no-progress-meter -Z --parallel-max "$PARALLEL" --max-time 10 -o /dev/null \
        -w '%{http_code} %header{x-cache}\n' \
        "http://127.0.0.1:$P_PROXY/blob/$OBJ_SIZE?seed=[$first-$last]" >"$TMP/fill.$round.txt" 2>"$TMP/fill.$round.err" || true
    t1=$(date +%s.%N)
    ok=$(awk '$1 == 200' "$TMP/fill.$round.txt" | wc -l)
    miss=$(awk '$1 == 200 && toupper($2) == "MISS"' "$TMP/fill.$round.txt" | wc -l)
    bad=$(awk '$1 != 200' "$TMP/fill.$round.txt" | wc -l)
    short=$((N_PER_ROUND - ok - bad))
    sleep "${SETTLE:-3}"   # let pending evictions run and the allocator return freed pages (/stats also runs evictions)
    report "after round $round"
    comp=$(stat_field compressions)
    printf '  %-22s %d requests in %.1fs: %d x 200 (%d MISS), %d other, %d missing; %.0f MiB sent through; %s compressions so far\n' \
        "" "$N_PER_ROUND" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" "$ok" "$miss" "$bad" "$short" \
        "$(awk -v n="$ok" -v s="$OBJ_SIZE" 'BEGIN { print n * s / 1048576 }')" "${comp:-?}"
    if ((bad > 0)); then NOTES+=("round $round: $bad non-200 responses: $(awk '$1 != 200 {print $1}' "$TMP/fill.$round.txt" | sort | uniq -c | tr '\n' ' ')"); fi
    if ((short > 0)); then NOTES+=("round $round: $short requests got no answer"); fi
    if ((ok > miss)); then NOTES+=("round $round: $((ok - miss)) of the distinct URLs were not MISS"); fi
    if [[ -s "$TMP/fill.$round.err" ]]; then NOTES+=("round $round curl stderr: $(head -3 "$TMP/fill.$round.err" | tr '\n' ' ')"); fi
done

echo
verdict=$(awk -v r="$LAST_RSS" -v l="$LIMIT_KB" 'BEGIN { print (r < l) ? "PASS" : "FAIL" }')
echo "result: VmRSS $(mib "$LAST_RSS") MiB = $(awk -v r="$LAST_RSS" -v m="$MAX_KB" 'BEGIN { printf "%.2f", r / m }') x max_size;" \
    "bound ${FACTOR} x ${MAX_SIZE_MIB} MiB + ${CONST_MIB} MiB (small constant) = $(mib "$LIMIT_KB") MiB -> $verdict"
echo "        peak VmHWM $(mib "$LAST_HWM") MiB ($(awk -v r="$LAST_HWM" -v l="$LIMIT_KB" 'BEGIN { print (r < l) ? "under" : "over" }') the bound);" \
    "stats.bytes $(awk -v b="$LAST_BYTES" 'BEGIN { printf "%.1f", b / 1048576 }') MiB ($(awk -v b="$LAST_BYTES" -v m="$MAX_KB" 'BEGIN { printf "%.2f", b / 1024 / m }') x max_size)"

if [[ -s "$TMP/proxy.err" ]]; then
    NOTES+=("proxy stderr (RUST_LOG=warn), $(wc -l <"$TMP/proxy.err") lines: $(head -5 "$TMP/proxy.err" | tr '\n' ' ' | cut -c1-400)")
fi
kill -0 "$PROXY_PID" 2>/dev/null || NOTES+=("the proxy process died")
if ((${#NOTES[@]})); then
    echo "notes:"
    printf '  - %s\n' "${NOTES[@]}"
else
    echo "notes: none (all 200, all MISS, no proxy warnings)"
fi

if [[ "$MODE" == all ]]; then
    # the fill's demo and proxy are done: stop them so the attacks run on a quieter machine
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    echo
    run_attacks
fi
