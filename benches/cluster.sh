#!/usr/bin/env bash
# A 3-node apicache cluster on this machine, with one command: a redis-server (persistence off),
# the demo Banking API as the origin, and three apicache nodes sharing purges through Redis.
#
#   bash benches/cluster.sh           # start it, print what to try, run until Ctrl-C
#   bash benches/cluster.sh --check   # start it, purge on node 1, check nodes 2 and 3, stop
#
# Everything listens on 127.0.0.1 and is stopped on exit. Needs redis-server (installed with
# apt-get when missing) and curl. SKIP_BUILD=1 uses the existing release binary.
set -euo pipefail
SCRIPT=cluster.sh
PORT_BASE=${PORT_BASE:-18700}
source "$(dirname "$0")/common.sh"

CHECK=0
[[ "${1:-}" == "--check" ]] && CHECK=1

if ! command -v redis-server >/dev/null; then
    command -v apt-get >/dev/null || die "redis-server missing"
    log "installing redis-server"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null || die "apt-get install redis-server failed"
fi
command -v curl >/dev/null || die "curl missing"

build_release
TMP=$(mktemp -d)

# 10 free ports: demo proxy, demo admin, origin, redis, and a public + admin port per node.
PORTS=()
for p in $(seq "$PORT_BASE" $((PORT_BASE + 40))); do
    port_free "$p" && PORTS+=("$p")
    ((${#PORTS[@]} == 10)) && break
done
((${#PORTS[@]} == 10)) || die "need 10 free ports from $PORT_BASE"
P_DEMO=${PORTS[0]} P_ADMIN=${PORTS[1]} P_ORIGIN=${PORTS[2]} P_REDIS=${PORTS[3]}

log "starting redis-server (:$P_REDIS)"
redis-server --port "$P_REDIS" --bind 127.0.0.1 --save "" --appendonly no --dir "$TMP" \
    >"$TMP/redis.out" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$P_REDIS") 2>/dev/null && break
    sleep 0.05
done

start_demo_origin

TOKEN=cluster-demo-token-0123
for i in 1 2 3; do
    pub=${PORTS[$((2 + 2 * i))]} adm=${PORTS[$((3 + 2 * i))]}
    cat >"$TMP/node$i.toml" <<EOF
[server]
listen = "127.0.0.1:$pub"
[origin]
url = "http://127.0.0.1:$P_ORIGIN"
[admin]
listen = "127.0.0.1:$adm"
token = "$TOKEN"
[cluster]
redis_url = "redis://127.0.0.1:$P_REDIS/0"
node_id = "node$i"
EOF
    RUST_LOG=info "$BIN" --config "$TMP/node$i.toml" >"$TMP/node$i.out" 2>"$TMP/node$i.err" &
    PIDS+=($!)
    eval "PUB$i=$pub ADM$i=$adm"
done
for i in 1 2 3; do
    eval "adm=\$ADM$i"
    wait_http "http://127.0.0.1:$adm/healthz" || { cat "$TMP/node$i.err" >&2; die "node$i did not start"; }
done

ACCOUNT=$(curl -s "http://127.0.0.1:$PUB1/accounts" | sed -n 's/.*"id":"\([^"]*\)".*/\1/p' | head -1)
[[ -n "$ACCOUNT" ]] || die "no account in the demo API"

if ((CHECK)); then
    cache_of() { curl -s -o /dev/null -D - "http://127.0.0.1:$1/accounts/$ACCOUNT" | tr -d '\r' | sed -n 's/^x-cache: //Ip'; }
    for p in $PUB1 $PUB2 $PUB3; do cache_of "$p" >/dev/null; done
    for p in $PUB1 $PUB2 $PUB3; do [[ $(cache_of "$p") == HIT ]] || die "no hit on :$p before the purge"; done
    answer=$(curl -s -X POST -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$ADM1/purge/account-$ACCOUNT")
    echo "purge on node1: $answer"
    [[ $answer == *'"confirmed":3'* ]] || die "not confirmed by 3 nodes: $answer"
    for p in $PUB2 $PUB3; do
        got=$(cache_of "$p")
        [[ $got == MISS ]] || die "node on :$p answered $got after the purge"
    done
    echo "cluster check passed: a purge on node1 reached node2 and node3"
    exit 0
fi

cat <<EOF

3-node cluster up (logs in $TMP; Ctrl-C stops everything):
  redis      127.0.0.1:$P_REDIS
  origin     http://127.0.0.1:$P_ORIGIN (the demo Banking API)
  node1      http://127.0.0.1:$PUB1   admin http://127.0.0.1:$ADM1
  node2      http://127.0.0.1:$PUB2   admin http://127.0.0.1:$ADM2
  node3      http://127.0.0.1:$PUB3   admin http://127.0.0.1:$ADM3

Try:
  for p in $PUB1 $PUB2 $PUB3; do curl -s -o /dev/null -w "%{http_code} " http://127.0.0.1:\$p/accounts/$ACCOUNT; done
  curl -si http://127.0.0.1:$PUB2/accounts/$ACCOUNT | grep -i x-cache        # HIT
  curl -s -X POST -H 'Authorization: Bearer $TOKEN' http://127.0.0.1:$ADM1/purge/account-$ACCOUNT
  curl -si http://127.0.0.1:$PUB3/accounts/$ACCOUNT | grep -i x-cache        # MISS: purged on every node
  curl -s -H 'Authorization: Bearer $TOKEN' http://127.0.0.1:$ADM3/stats | python3 -m json.tool | sed -n '/"cluster"/,\$p'
EOF
while true; do sleep 3600; done
