# Shared by load.sh and memory.sh (sourced, not run): process cleanup, release build, free ports.
# Expects SCRIPT (name for messages) and PORT_BASE to be set by the caller.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# BIN=path/to/apicache compares another build (with SKIP_BUILD=1).
BIN=${BIN:-"$ROOT/target/release/apicache"}

die() { echo "$SCRIPT: setup failure: $*" >&2; exit 1; }
log() { echo "== $*" >&2; }

# Every process started goes into PIDS; TMP is removed on exit unless KEEP_TMP=1.
PIDS=()
TMP=""
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 1 30); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [[ -n "$TMP" && -d "$TMP" ]]; then
        if [[ "${KEEP_TMP:-0}" == 1 ]]; then echo "kept $TMP" >&2; else rm -rf "$TMP"; fi
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Build the release binary unless SKIP_BUILD=1.
build_release() {
    if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
        log "cargo build --release"
        # Under the shared build lock when there is one (2-core machines serialize cargo runs).
        local lock=()
        command -v flock >/dev/null 2>&1 && lock=(flock /tmp/cargo-build.lock)
        (cd "$ROOT" && "${lock[@]}" cargo build --release --quiet) || die "cargo build --release failed"
    fi
    [[ -x "$BIN" ]] || die "$BIN missing"
}

# Fill FREE_PORTS with at least 5 free loopback ports from PORT_BASE on.
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
pick_ports() {
    FREE_PORTS=()
    local p
    for p in $(seq "$PORT_BASE" $((PORT_BASE + 10))); do
        port_free "$p" && FREE_PORTS+=("$p")
    done
    ((${#FREE_PORTS[@]} >= 5)) || die "need 5 free ports in $PORT_BASE..$((PORT_BASE + 10)), found ${#FREE_PORTS[@]}"
}

wait_http() { # url [seconds]
    local url=$1 deadline=$((SECONDS + ${2:-20}))
    until curl -s -o /dev/null --max-time 1 "$url"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.1
    done
}

# Start `apicache demo` for its sample origin on $P_ORIGIN (its own proxy and admin on $P_DEMO and
# $P_ADMIN sit idle), logging to $TMP/demo.*, and wait until the origin answers.
start_demo_origin() {
    log "starting the demo origin (:$P_ORIGIN)"
    RUST_LOG=warn "$BIN" demo \
        --listen "127.0.0.1:$P_DEMO" --origin-listen "127.0.0.1:$P_ORIGIN" --admin-listen "127.0.0.1:$P_ADMIN" \
        >"$TMP/demo.out" 2>"$TMP/demo.err" &
    PIDS+=($!)
    wait_http "http://127.0.0.1:$P_ORIGIN/blob/1024" || { cat "$TMP/demo.err" >&2; die "demo origin did not start"; }
}
