#!/usr/bin/env bash
# Load benchmark: apicache cache hits vs the demo origin directly, nginx proxy_cache and nginx static.
#
#   benches/load.sh                 # 10 s per wrk run
#   DURATION=3 benches/load.sh      # quicker
#
# For body sizes 1 KiB and 32 KiB it measures, with `wrk -t1 -c64 --latency` pinned to CPU 1
# and every server pinned to CPU 0:
#   apicache        cache hits through `apicache demo` (warmed, X-Cache: HIT asserted)
#   origin          the demo origin directly, same URL (no cache: it builds the body every time)
#   nginx-cache     nginx proxy_cache in front of the same origin (warmed, HIT asserted)
#   nginx-static    nginx serving the same bytes from a static file
# and prints req/s, p99, the ratios against both nginx rows, and apicache/origin.
#
# Only 127.0.0.1 is used; every wrk run is bounded by -d; every process started here is killed on
# exit. Exits non-zero only when setup fails (missing tools, build failure, a server not starting,
# a warm-up assertion failing), never because a number is slow.
#
# Env: DURATION (s, default 10), WARMUP (s of unmeasured wrk before each run, default 1, 0 = none),
#      SIZES (default "1024 32768"), PORT_BASE (default 18180; ports PORT_BASE..PORT_BASE+10 are
#      scanned for free ones), SKIP_BUILD=1 (use the existing target/release/apicache), KEEP_TMP=1 (keep the temp dir:
#      configs, logs, raw outputs).
set -euo pipefail

DURATION=${DURATION:-10}
WARMUP=${WARMUP:-1}
SIZES=${SIZES:-"1024 32768"}
PORT_BASE=${PORT_BASE:-18180}
CONNS=64
# Reference figure for apicache 1 KiB hits on the 2-core benchmark box (informational only).
REF_1K_RPS=80000

SCRIPT=load.sh
# shellcheck source=benches/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# ---------------------------------------------------------------------------------------- tools
need_apt=()
command -v wrk >/dev/null 2>&1 || need_apt+=(wrk)
command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] || need_apt+=(nginx)
if ((${#need_apt[@]})); then
    log "installing ${need_apt[*]} with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null || die "apt-get update failed"
    apt-get install -y -qq "${need_apt[@]}" >/dev/null || die "apt-get install ${need_apt[*]} failed"
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
for t in wrk curl taskset awk "$NGINX"; do
    command -v "$t" >/dev/null 2>&1 || die "$t not found"
done

# ---------------------------------------------------------------------------------------- build
build_release

TMP=$(mktemp -d /tmp/apicache-load.XXXXXX)

# ---------------------------------------------------------------------------------------- ports
pick_ports
P_PROXY=${FREE_PORTS[0]}
P_ORIGIN=${FREE_PORTS[1]}
P_ADMIN=${FREE_PORTS[2]}
P_NGX_CACHE=${FREE_PORTS[3]}
P_NGX_STATIC=${FREE_PORTS[4]}


# ---------------------------------------------------------------------------------------- apicache demo
log "starting apicache demo (proxy :$P_PROXY, origin :$P_ORIGIN, admin :$P_ADMIN) on CPU 0"
RUST_LOG=warn taskset -c 0 "$BIN" demo \
    --listen "127.0.0.1:$P_PROXY" --origin-listen "127.0.0.1:$P_ORIGIN" --admin-listen "127.0.0.1:$P_ADMIN" \
    >"$TMP/demo.out" 2>"$TMP/demo.err" &
PIDS+=($!)
DEMO_PID=$!
wait_http "http://127.0.0.1:$P_ORIGIN/blob/1024" || { cat "$TMP/demo.err" >&2; die "demo origin did not start"; }
wait_http "http://127.0.0.1:$P_ADMIN/stats" || { cat "$TMP/demo.err" >&2; die "demo proxy did not start"; }

# ---------------------------------------------------------------------------------------- nginx
mkdir -p "$TMP/ngx/cache" "$TMP/ngx/www/blob" "$TMP/ngx/logs"
NGX_USER=""
[[ $EUID -eq 0 ]] && NGX_USER="user root;"
cat >"$TMP/ngx/nginx.conf" <<EOF
$NGX_USER
worker_processes 1;
daemon off;
pid $TMP/ngx/nginx.pid;
error_log $TMP/ngx/logs/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    default_type application/json;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
    client_body_temp_path $TMP/ngx/client_body;
    proxy_temp_path $TMP/ngx/proxy_temp;
    fastcgi_temp_path $TMP/ngx/fastcgi_temp;
    uwsgi_temp_path $TMP/ngx/uwsgi_temp;
    scgi_temp_path $TMP/ngx/scgi_temp;

    upstream origin {
        server 127.0.0.1:$P_ORIGIN;
        keepalive 64;
    }
    proxy_cache_path $TMP/ngx/cache levels=1:2 keys_zone=api:10m max_size=1g inactive=1h use_temp_path=off;

    server {
        listen 127.0.0.1:$P_NGX_CACHE;
        location / {
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_cache api;
            proxy_cache_valid 200 1h;
            add_header X-Cache \$upstream_cache_status;
        }
    }
    server {
        listen 127.0.0.1:$P_NGX_STATIC;
        root $TMP/ngx/www;
        location / { try_files \$uri =404; }
    }
}
EOF
"$NGINX" -t -q -p "$TMP/ngx" -e "$TMP/ngx/logs/error.log" -c "$TMP/ngx/nginx.conf" \
    || die "nginx config test failed"
log "starting nginx (proxy_cache :$P_NGX_CACHE, static :$P_NGX_STATIC) on CPU 0"
taskset -c 0 "$NGINX" -p "$TMP/ngx" -e "$TMP/ngx/logs/error.log" -c "$TMP/ngx/nginx.conf" \
    >"$TMP/ngx/logs/stdout" 2>&1 &
PIDS+=($!)
NGX_PID=$!
wait_http "http://127.0.0.1:$P_NGX_STATIC/" || { cat "$TMP/ngx/logs/error.log" >&2; die "nginx did not start"; }

# ---------------------------------------------------------------------------------------- helpers
# x_cache URL -> value of the X-Cache response header (empty if absent)
x_cache() {
    curl -s -o /dev/null -D - --max-time 5 "$1" | tr -d '\r' | awk -F': *' 'tolower($1)=="x-cache"{print $2}'
}
# warm_until_hit URL: GET until X-Cache: HIT (at most 5 tries)
warm_until_hit() {
    local url=$1 i v=""
    for i in 1 2 3 4 5; do
        v=$(x_cache "$url")
        [[ "${v^^}" == HIT ]] && return 0
        sleep 0.05
    done
    echo "last X-Cache for $url: '${v}'" >&2
    return 1
}
# body_check URL FILE: the body at URL is byte-identical to FILE
body_check() {
    curl -s --max-time 5 "$1" -o "$TMP/check.body" || return 1
    cmp -s "$TMP/check.body" "$2"
}

# ms VALUE-WITH-UNIT -> milliseconds
to_ms() {
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
        if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000
        printf "%.3f", n }'
}

# cpu_snapshot -> "BUSY SERVERS CHILDREN" in clock ticks: BUSY = all CPUs' non-idle time (/proc/stat),
# SERVERS = CPU time of the servers started here (demo, nginx master and workers), CHILDREN = this
# shell's waited-for children (wrk). BUSY - SERVERS - CHILDREN over a run is CPU that something
# else on the machine used meanwhile.
cpu_snapshot() {
    local pids=("$DEMO_PID" "$NGX_PID") files=() p
    pids+=($(cat "/proc/$NGX_PID/task/$NGX_PID/children" 2>/dev/null || pgrep -P "$NGX_PID" || true))
    for p in "${pids[@]}"; do [[ -r /proc/$p/stat ]] && files+=("/proc/$p/stat"); done
    awk -v self="/proc/$$/stat" '
        FILENAME == "/proc/stat" { if ($1 == "cpu") busy = $2 + $3 + $4 + $7 + $8 + $9; next }
        { line = $0; sub(/^.*\) /, "", line); split(line, f, " ")
          # after "pid (comm) ": f[1]=state ... f[12]=utime f[13]=stime f[14]=cutime f[15]=cstime
          if (FILENAME == self) kids += f[14] + f[15]; else srv += f[12] + f[13] }
        END { print busy, srv, kids }' /proc/stat "${files[@]}" "/proc/$$/stat"
}
CLK_TCK=$(getconf CLK_TCK)

NOTES=()
declare -A RPS P99 BG SRV CLI
# run_wrk NAME SIZE URL
run_wrk() {
    local name=$1 size=$2 url=$3 out="$TMP/wrk.$1.$2.txt" rps p99 non2xx sockerr
    if ((WARMUP > 0)); then
        taskset -c 1 timeout $((WARMUP + 30)) wrk -t1 -c"$CONNS" -d"${WARMUP}s" "$url" >/dev/null 2>&1 || true
    fi
    log "wrk ${DURATION}s $name $size B  $url"
    local before after t0=$EPOCHREALTIME
    before=$(cpu_snapshot)
    if ! taskset -c 1 timeout $((DURATION + 60)) wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "$url" >"$out" 2>&1; then
        NOTES+=("$name/$size: wrk exited non-zero: $(tr '\n' ' ' <"$out" | cut -c1-300)")
    fi
    after=$(cpu_snapshot)
    # CPU during the run, in % of one core: the server(s), wrk, and other processes
    read -r SRV[$name.$size] CLI[$name.$size] BG[$name.$size] < <(awk -v b="$before" -v a="$after" \
        -v t0="$t0" -v t1="$EPOCHREALTIME" -v hz="$CLK_TCK" 'BEGIN {
        split(b, x, " "); split(a, y, " "); k = 100 / hz / (t1 - t0)
        s = y[2] - x[2]; c = y[3] - x[3]; o = (y[1] - x[1]) - s - c; if (o < 0) o = 0
        printf "%.0f %.0f %.0f\n", s * k, c * k, o * k }')
    rps=$(awk '/^Requests\/sec:/ {print $2}' "$out")
    p99=$(awk '$1 == "99%" {print $2}' "$out")
    RPS[$name.$size]=${rps:-0}
    if [[ -n "$p99" ]]; then P99[$name.$size]=$(to_ms "$p99"); else P99[$name.$size]=""; fi
    non2xx=$(awk -F': *' '/Non-2xx or 3xx responses/ {print $2}' "$out")
    [[ -n "$non2xx" ]] && NOTES+=("$name/$size: $non2xx non-2xx/3xx responses")
    sockerr=$(grep -m1 'Socket errors' "$out" || true)
    [[ -n "$sockerr" ]] && NOTES+=("$name/$size: $(echo "$sockerr" | sed 's/^ *//')")
    if [[ -z "$rps" ]]; then NOTES+=("$name/$size: could not parse wrk output: $(tr '\n' ' ' <"$out" | cut -c1-300)"); fi
    return 0
}

# ---------------------------------------------------------------------------------------- runs
TARGETS=(apicache origin nginx-cache nginx-static)
for size in $SIZES; do
    path="/blob/$size"
    u_origin="http://127.0.0.1:$P_ORIGIN$path"
    u_proxy="http://127.0.0.1:$P_PROXY$path"
    u_ngx_cache="http://127.0.0.1:$P_NGX_CACHE$path"
    u_ngx_static="http://127.0.0.1:$P_NGX_STATIC$path"

    # the reference bytes, straight from the origin; also the static file nginx serves
    curl -sf --max-time 5 "$u_origin" -o "$TMP/ngx/www/blob/$size" || die "fetching $u_origin failed"
    got=$(stat -c %s "$TMP/ngx/www/blob/$size")
    [[ "$got" == "$size" ]] || die "origin returned $got bytes for $path, expected $size"

    warm_until_hit "$u_proxy" || die "apicache never answered X-Cache: HIT for $path"
    body_check "$u_proxy" "$TMP/ngx/www/blob/$size" || die "apicache HIT body differs from the origin's for $path"
    warm_until_hit "$u_ngx_cache" || die "nginx proxy_cache never answered X-Cache: HIT for $path"
    body_check "$u_ngx_cache" "$TMP/ngx/www/blob/$size" || die "nginx proxy_cache body differs for $path"
    body_check "$u_ngx_static" "$TMP/ngx/www/blob/$size" || die "nginx static body differs for $path"

    run_wrk apicache "$size" "$u_proxy"
    # still a hit after the run (nothing evicted or expired mid-run)
    [[ "$(x_cache "$u_proxy")" == HIT ]] || NOTES+=("apicache/$size: not X-Cache: HIT after the run")
    run_wrk origin "$size" "$u_origin"
    run_wrk nginx-cache "$size" "$u_ngx_cache"
    run_wrk nginx-static "$size" "$u_ngx_static"
done

# ---------------------------------------------------------------------------------------- report
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b + 0 == 0) print "n/a"; else printf "%.2f", a / b }'; }
human_size() { awk -v n="$1" 'BEGIN { if (n % 1024 == 0) printf "%d KiB", n / 1024; else printf "%d B", n }'; }

echo
echo "apicache load benchmark: wrk -t1 -c$CONNS -d${DURATION}s --latency (wrk on CPU 1, servers on CPU 0), 127.0.0.1"
echo "$(nproc) CPUs, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(wrk -v 2>&1 | head -1 | awk '{print $1, $2}'), $("$NGINX" -v 2>&1 | sed 's/.*: //')"
for size in $SIZES; do
    echo
    echo "body $(human_size "$size") (GET /blob/$size)"
    printf '  %-13s %10s %10s %13s %14s %9s %9s %10s\n' target req/s p99 "vs ngx-cache" "vs ngx-static" \
        "srv-cpu" "wrk-cpu" "other-cpu"
    for t in "${TARGETS[@]}"; do
        r=${RPS[$t.$size]}
        p=${P99[$t.$size]}
        printf '  %-13s %10.0f %10s %13s %14s %8s%% %8s%% %9s%%\n' "$t" "$r" "${p:+${p}ms}" \
            "$(ratio "$r" "${RPS[nginx-cache.$size]}")" "$(ratio "$r" "${RPS[nginx-static.$size]}")" \
            "${SRV[$t.$size]}" "${CLI[$t.$size]}" "${BG[$t.$size]}"
        if ((${BG[$t.$size]:-0} > 15)); then
            NOTES+=("$t/$size: other processes used ${BG[$t.$size]}% of a core during the run: this number is noisy")
        fi
    done
    echo "  apicache/origin: req/s x$(ratio "${RPS[apicache.$size]}" "${RPS[origin.$size]}"), p99 x$(ratio "${P99[apicache.$size]}" "${P99[origin.$size]}")"
done
echo
echo "CPU columns, % of one core over the run: srv-cpu = the server(s) under test (pinned to CPU 0, so"
echo "100% = saturated), wrk-cpu = the load generator (CPU 1; near 100% = the client may be the limit),"
echo "other-cpu = processes not started here (noise; >15% is flagged below)"
if [[ " $SIZES " == *" 1024 "* ]]; then
    echo "reference: apicache 1 KiB hits ~${REF_1K_RPS} req/s expected on this box; measured $(printf '%.0f' "${RPS[apicache.1024]}") ($(ratio "${RPS[apicache.1024]}" "$REF_1K_RPS") of reference)"
fi

# anything odd
if [[ -s "$TMP/demo.err" ]]; then
    NOTES+=("apicache demo stderr (RUST_LOG=warn), $(wc -l <"$TMP/demo.err") lines: $(head -5 "$TMP/demo.err" | tr '\n' ' ' | cut -c1-400)")
fi
if grep -qv '^$' "$TMP/ngx/logs/error.log" 2>/dev/null; then
    NOTES+=("nginx error.log: $(head -5 "$TMP/ngx/logs/error.log" | tr '\n' ' ' | cut -c1-400)")
fi
kill -0 "$DEMO_PID" 2>/dev/null || NOTES+=("apicache demo process died during the run")
kill -0 "$NGX_PID" 2>/dev/null || NOTES+=("nginx died during the run")
echo
if ((${#NOTES[@]})); then
    echo "notes:"
    printf '  - %s\n' "${NOTES[@]}"
else
    echo "notes: none (no wrk errors, no non-2xx responses, no proxy warnings)"
fi
