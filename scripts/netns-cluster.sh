#!/usr/bin/env bash
# The compose/Kubernetes topology on real processes without a container engine: three
# network namespaces (one node each, its own IP, the same ports 7401/8401/9401 in each,
# as containers would have) and a client namespace, joined by veth pairs to a bridge that
# lives in a namespace of its own (nothing touches the host's network). It checks that a
# lock is granted, that cutting the group 0 leader off (its bridge port set down) leaves
# the majority serving and the cut node refusing, and that the cluster heals; then it
# tears everything down (also on failure or Ctrl-C). Needs root and `ip` (iproute2).
#
#   sudo scripts/netns-cluster.sh        # from a checkout after `npm run build`
#
# Exit 0 when every check passed; 1 when one failed (each printed as ok/FAIL).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
dsync=("$(command -v node)" "$root/bin/dsync.js")
prefix="dsn$$"            # namespaces and links are named after this run
subnet="10.213.$(($$ % 200 + 20))"
sw="${prefix}-sw"         # the bridge's namespace
client="${prefix}-c"      # where the CLI runs
nodes=(n1 n2 n3)
work="$(mktemp -d /tmp/dsync-netns-XXXXXX)"
pids=()
failures=0

[ "$(id -u)" = 0 ] || { echo "netns-cluster: needs root (ip netns)"; exit 2; }
[ -f "$root/dist/server/main.js" ] || { echo "netns-cluster: run npm run build first"; exit 2; }

cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  sleep 1
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  for ns in "$sw" "$client" "${nodes[@]/#/${prefix}-}"; do ip netns del "$ns" 2>/dev/null || true; done
  if [ "$failures" = 0 ]; then rm -rf "$work"; else echo "netns-cluster: node logs kept in $work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ok() { echo "ok   $*"; }
fail() { echo "FAIL $*"; failures=$((failures + 1)); }
ip_of() { echo "$subnet.$(( ${1#n} ))"; }
in_client() { ip netns exec "$client" "$@"; }
cli() { in_client "${dsync[@]}" "$@"; }
# GET http://<node>:8401<path> from the client namespace; prints the status code.
http_status() { in_client node -e "fetch('http://$(ip_of "$1"):8401$2').then(r=>console.log(r.status),()=>console.log(0))"; }
# group 0's leader as node $1 reports it ('' when none).
leader_seen_by() { http_status_body "$1" /healthz | node -e "let s='';process.stdin.on('data',d=>s+=d).on('end',()=>{try{console.log(JSON.parse(s).leader)}catch{console.log('')}})"; }
http_status_body() { in_client node -e "fetch('http://$(ip_of "$1"):8401$2').then(r=>r.text()).then(t=>console.log(t),()=>console.log(''))"; }
# Waits up to $2 seconds for the command in $3... to succeed.
wait_for() {
  local what="$1" seconds="$2"; shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then fail "$what (not within ${seconds}s)"; return 1; fi
    sleep 0.3
  done
  ok "$what"
}
ready() { [ "$(http_status "$1" /readyz)" = 200 ]; }
not_ready() { [ "$(http_status "$1" /readyz)" = 503 ]; }

# ---- topology: a bridge in its own namespace, one veth pair per namespace ----
ip netns add "$sw"
ip -n "$sw" link add br0 type bridge
ip -n "$sw" link set br0 up
ip -n "$sw" link set lo up
attach() { # namespace, address, short port name
  ip netns add "$1"
  ip link add "$3" type veth peer name eth0 netns "$1"
  ip link set "$3" netns "$sw"
  ip -n "$sw" link set "$3" master br0 up
  ip -n "$1" addr add "$2/24" dev eth0
  ip -n "$1" link set eth0 up
  ip -n "$1" link set lo up
}
for n in "${nodes[@]}"; do attach "${prefix}-$n" "$(ip_of "$n")" "${prefix}$n"; done
attach "$client" "$subnet.100" "${prefix}c"
ok "namespaces ${nodes[*]/#/${prefix}-} and $client on bridge br0 in $sw ($subnet.0/24)"

# ---- one node per namespace, the same ports in each ----
for n in "${nodes[@]}"; do
  peers=""
  for p in "${nodes[@]}"; do [ "$p" = "$n" ] || peers="${peers:+$peers,}$p@$(ip_of "$p"):7401"; done
  ip netns exec "${prefix}-$n" "${dsync[@]}" node --id "$n" --host "$(ip_of "$n")" --port 7401 --peers "$peers" \
    --data-dir "$work/$n" >"$work/$n.out" 2>"$work/$n.log" &
  pids+=($!)
done
seeds="$(ip_of n1):7401,$(ip_of n2):7401,$(ip_of n3):7401"
for n in "${nodes[@]}"; do wait_for "$n ready (/readyz 200 from the client namespace)" 20 ready "$n" || exit 1; done

# ---- a lock through the bridge ----
if out="$(cli lock acquire netns/demo --hold 0 --seeds "$seeds" 2>&1)"; then ok "lock acquire netns/demo: $(echo "$out" | head -1)"; else fail "lock acquire: $out"; fi

# ---- partition: cut the leader's bridge port ----
leader="$(leader_seen_by n1)"
case "$leader" in n1|n2|n3) ok "group 0 leader is $leader" ;; *) fail "no leader known ($leader)"; exit 1 ;; esac
majority=()
for n in "${nodes[@]}"; do [ "$n" = "$leader" ] || majority+=("$n"); done
majority_seeds="$(ip_of "${majority[0]}"):7401,$(ip_of "${majority[1]}"):7401"
ip -n "$sw" link set "${prefix}${leader}" down
ok "cut $leader off: ip -n $sw link set ${prefix}${leader} down"
new_leader_elected() { local l; l="$(leader_seen_by "${majority[0]}")"; [ -n "$l" ] && [ "$l" != "$leader" ]; }
wait_for "the majority (${majority[*]}) elects a new leader" 15 new_leader_elected
wait_for "${majority[0]} ready again" 15 ready "${majority[0]}"
if out="$(cli lock acquire netns/demo --hold 0 --seeds "$majority_seeds" 2>&1)"; then ok "lock granted on the majority side: $(echo "$out" | head -1)"; else fail "lock on the majority side: $out"; fi
# The client namespace cannot reach the cut node; ask it from inside its own namespace.
isolated_refuses() { ! ip netns exec "${prefix}-$leader" timeout 8 "${dsync[@]}" lock acquire netns/demo --hold 0 --seeds "$(ip_of "$leader"):7401" >/dev/null 2>&1; }
if isolated_refuses; then ok "$leader (cut off) grants nothing, asked from its own namespace"; else fail "$leader granted a lock while cut off from the majority"; fi
isolated_not_ready() { [ "$(ip netns exec "${prefix}-$leader" node -e "fetch('http://$(ip_of "$leader"):8401/readyz').then(r=>console.log(r.status),()=>console.log(0))")" = 503 ]; }
wait_for "$leader (cut off) reports not ready (/readyz 503, check-quorum stepped it down)" 10 isolated_not_ready

# ---- heal ----
ip -n "$sw" link set "${prefix}${leader}" up
ok "healed: ip -n $sw link set ${prefix}${leader} up"
for n in "${nodes[@]}"; do wait_for "$n ready after healing" 20 ready "$n"; done
same_leader() { local a b c; a="$(leader_seen_by n1)"; b="$(leader_seen_by n2)"; c="$(leader_seen_by n3)"; [ -n "$a" ] && [ "$a" = "$b" ] && [ "$b" = "$c" ]; }
wait_for "all three name the same leader ($(leader_seen_by n1))" 15 same_leader
if out="$(cli lock acquire netns/demo --hold 0 --seeds "$(ip_of "$leader"):7401" 2>&1)"; then ok "lock through $leader again: $(echo "$out" | head -1)"; else fail "lock through $leader after healing: $out"; fi

if [ "$failures" = 0 ]; then echo "netns-cluster: all checks passed"; else echo "netns-cluster: $failures check(s) failed"; exit 1; fi
