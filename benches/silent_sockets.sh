#!/usr/bin/env bash
# Silent sockets: TCP connections that never send a byte, held open against the release binary,
# and how long a real client then waits for an answer.
#
#   benches/silent_sockets.sh                    # 10,000 silent sockets at the default max_connections,
#                                                # then 100 at max_connections = 100
#   SILENT=2000 SKIP_BUILD=1 benches/silent_sockets.sh
#
# Each scenario starts apicache (header_read_timeout = HRT) in front of the demo origin, measures
# a real client (curl, a new connection per request) before the flood, opens the silent sockets
# from this shell (bash /dev/tcp: connect, then nothing), measures the real client again (each
# request bounded by HRT + 5 s), then waits until HRT + 1 s after the last silent socket connected
# and counts how many of them the server has closed (client side in CLOSE-WAIT).
#
# Only 127.0.0.1 is used; every process started here is killed on exit, every socket closed.
# Exits non-zero only when setup fails, never because a number is slow.
#
# Env: SILENT (default 10000), HRT (header_read_timeout in s, default 10), PROBES (real-client
#      requests per measurement, default 3), PORT_BASE (default 18280), BIN, SKIP_BUILD=1, KEEP_TMP=1.
set -euo pipefail

SILENT=${SILENT:-10000}
HRT=${HRT:-10}
PROBES=${PROBES:-3}
PORT_BASE=${PORT_BASE:-18280}

SCRIPT=silent_sockets.sh
# shellcheck source=benches/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

for t in curl ss awk; do
    command -v "$t" >/dev/null 2>&1 || die "$t not found"
done
# The silent sockets, the proxy's side of them and the real clients all need descriptors.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true
(($(ulimit -n) > SILENT + 1000)) || die "ulimit -n is $(ulimit -n), need more than $((SILENT + 1000))"

build_release
TMP=$(mktemp -d /tmp/apicache-silent.XXXXXX)
pick_ports
P_PROXY=${FREE_PORTS[0]}
P_ORIGIN=${FREE_PORTS[1]}
P_DEMO=${FREE_PORTS[2]}
P_ADMIN=${FREE_PORTS[3]}

start_demo_origin

URL="http://127.0.0.1:$P_PROXY/blob/1024"
FDS=()

close_silent() {
    local fd
    for fd in "${FDS[@]}"; do
        exec {fd}>&-
    done
    FDS=()
}

# probe LABEL: PROBES sequential requests on new connections; prints "ok/total, max, median".
probe() {
    local label=$1 i out times=() ok=0
    for i in $(seq 1 "$PROBES"); do
        out=$(curl -s -o /dev/null -w '%{http_code} %{time_total}' --max-time $((HRT + 5)) "$URL" || true)
        [[ ${out%% *} == 200 ]] && ok=$((ok + 1))
        times+=("${out##* }")
    done
    printf '%s\n' "${times[@]}" | sort -n | awk -v label="$label" -v ok="$ok" -v n="$PROBES" '
        { t[NR] = $1 }
        END { printf "  %-28s %d/%d answered, median %.1f ms, max %.1f ms\n", label, ok, n, t[int((NR + 1) / 2)] * 1000, t[NR] * 1000 }'
}

# scenario MAX_CONNECTIONS SILENT_SOCKETS
scenario() {
    local max=$1 n=$2 pid i fd start end closed open
    cat >"$TMP/proxy.toml" <<EOF
[server]
listen = "127.0.0.1:$P_PROXY"
header_read_timeout = "${HRT}s"
max_connections = $max
[origin]
url = "http://127.0.0.1:$P_ORIGIN"
EOF
    RUST_LOG=warn "$BIN" --config "$TMP/proxy.toml" >"$TMP/proxy.out" 2>"$TMP/proxy.err" &
    pid=$!
    PIDS+=("$pid")
    wait_http "$URL" || { cat "$TMP/proxy.err" >&2; die "apicache did not start"; }
    echo "max_connections = $max, $n silent sockets, header_read_timeout = ${HRT}s"
    probe "before the flood:"
    start=$(date +%s.%N)
    for ((i = 0; i < n; i++)); do
        exec {fd}<>"/dev/tcp/127.0.0.1/$P_PROXY" || die "silent socket $i did not connect"
        FDS+=("$fd")
    done
    end=$(date +%s.%N)
    awk -v s="$start" -v e="$end" -v n="$n" 'BEGIN { printf "  opened %d silent sockets in %.2f s\n", n, e - s }'
    sleep 0.5
    probe "with the sockets open:"
    sleep "$(awk -v e="$end" -v now="$(date +%s.%N)" -v h="$HRT" 'BEGIN { d = e + h + 1 - now; print (d > 0 ? d : 0) }')"
    closed=$(ss -Htn state close-wait "( dport = :$P_PROXY )" | wc -l)
    open=$(ss -Htn state established "( dport = :$P_PROXY )" | wc -l)
    echo "  after header_read_timeout + 1 s: $closed closed by the server, $open still open"
    probe "after that:"
    close_silent
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

scenario 10000 "$SILENT"
scenario 100 100
