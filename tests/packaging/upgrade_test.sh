#!/usr/bin/env bash
# An upgrade does not stop enforcement. Version A of the package is installed
# and its agent started as the unit's ExecStart would (systemd is not PID 1
# here), over namespaces this test makes: client, server and other on a
# bridge, labelled tier=backend, db and web, under the package's example
# policy (only backend reaches db, on tcp/5432). A TCP connection from
# client to server carries a numbered line every 50 ms. Then what the
# upgrade does: the agent stopped (prerm's `systemctl stop`), version B
# installed over A (dpkg -i), B's agent started. Throughout, the connection
# sees no reset and keeps passing data, other stays denied, and B adopts
# A's pins: the same links and maps (pin inodes and ids), now running B's
# programs. Purged at the end, the pins are gone and other gets through.
#   tests/packaging/upgrade_test.sh BUILD_DIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"
build=$(cd "${1:?usage: upgrade_test.sh BUILD_DIR}" && pwd)

require_host dpkg ip nsenter bpftool busybox flock timeout
guard_no_stockade

readonly pins=/sys/fs/bpf/stockade/default
readonly unit=/lib/systemd/system/stockaded.service
tmp=$(mktemp -d /tmp/stockade-upgrade-test.XXXXXX)
tag=pu$$
net=10.$((200 + $$ % 50)).$(($$ % 250)).
namespaces=()
pids=()
installed=0
cleanup() {
  local rc=$? pid ns
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ $installed -eq 1 ]; then dpkg --purge stockade >/dev/null 2>&1 || rc=1; fi
  # Pins of the default instance are this test's (the guard saw none before).
  if [ -e "$pins" ]; then "$build/tools/stockaded" --uninstall >/dev/null 2>&1 || rc=1; fi
  for ns in "${namespaces[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
  if [ $rc -ne 0 ]; then
    for log in "$tmp"/*.log; do [ -f "$log" ] && { echo "--- $log"; tail -20 "$log"; }; done
  fi
  rm -rf "$tmp"
  exit $rc
}
trap cleanup EXIT

step "package A (B in the background)"
version=$(sed -n 's/^set(CPACK_PACKAGE_VERSION "\(.*\)")$/\1/p' "$build/CPackConfig.cmake")
[ -n "$version" ] || fail "no CPACK_PACKAGE_VERSION in $build/CPackConfig.cmake"
deb_a=$("$here/../../scripts/package.sh" --build-dir "$build" --out "$tmp/a" --version "$version+upgrade1")
echo "$deb_a"
# B is packed while A is installed and run (the tree is built by now).
"$here/../../scripts/package.sh" --build-dir "$build" --out "$tmp/b" --version "$version+upgrade2" \
  >"$tmp/package-b.out" 2>"$tmp/package-b.log" &
package_b=$!
pids+=("$package_b")

step "the lab: client, server and other on a bridge"
add_ns() {
  ip netns add "$1"
  namespaces+=("$1")
  ip -n "$1" link set lo up
}
add_ns "$tag-sw"
ip -n "$tag-sw" link add br0 type bridge
ip -n "$tag-sw" link set br0 up
declare -A address=([client]=${net}2 [server]=${net}3 [other]=${net}4)
declare -A tier=([client]=backend [server]=db [other]=web)
endpoints=$tmp/endpoints.yaml
echo "endpoints:" >"$endpoints"
for name in client server other; do
  ns=$tag-$name
  add_ns "$ns"
  ip link add "$tag-$name" netns "$tag-sw" type veth peer name eth0 netns "$ns"
  ip -n "$tag-sw" link set "$tag-$name" master br0 up
  ip -n "$ns" addr add "${address[$name]}/24" dev eth0
  ip -n "$ns" link set eth0 up
  printf '  - {name: %s, netns: /run/netns/%s, interface: eth0, hook: in-container, ipv4: %s, labels: {tier: %s}}\n' \
    "$name" "$ns" "${address[$name]}" "${tier[$name]}" >>"$endpoints"
done
server=${address[server]}
# db's listener: what each connection sends is appended to received (the
# probes send nothing).
: >"$tmp/received"
printf '#!/bin/sh\nexec cat >>%s\n' "$tmp/received" >"$tmp/serve"
chmod 755 "$tmp/serve"
ip netns exec "$tag-server" busybox nc -ll -p 5432 -e "$tmp/serve" >"$tmp/listener.log" 2>&1 &
pids+=($!)
# Connected within a second (answered), or not (dropped: the SYN goes unanswered).
reaches() { ip netns exec "$tag-$1" timeout 1 bash -c "exec 3<>/dev/tcp/$server/5432" 2>/dev/null; }
wait_for() {
  local what=$1 i
  shift
  for ((i = 0; i < 100; i++)); do "$@" && return 0; sleep 0.2; done
  fail "not within 20 s: $what"
}
wait_for "the probe listener answers client" reaches client
reaches other || fail "other does not reach server without the agent: the probe proves nothing"

step "install A, start its agent as the unit does"
installed=1
dpkg -i "$deb_a" >"$tmp/dpkg-a.log"
cp /usr/share/doc/stockade/examples/policy.yaml /etc/stockade/policies/
# The unit's ExecStart, with $STOCKADED_OPTIONS split on spaces as systemd
# does; the environment is as empty as the unit's.
exec_start=$(sed -n 's/^ExecStart=//p' "$unit")
[[ $exec_start == /usr/sbin/stockaded\ * ]] || fail "unexpected ExecStart in $unit: $exec_start"
options="--no-docker --static-endpoints $endpoints --no-metrics"
read -ra agent_command <<<"${exec_start//\$STOCKADED_OPTIONS/$options}"
start_agent() {
  env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "${agent_command[@]}" >"$tmp/agent-$1.log" 2>&1 &
  agent=$!
  pids+=("$agent")
  wait_for "agent $1 answers stockadectl status" eval '/usr/bin/stockadectl status >/dev/null 2>&1'
  wait_for "agent $1 enforces (other denied, client allowed)" eval '! reaches other && reaches client'
}
start_agent a
/usr/sbin/stockaded --version | tee "$tmp/version-a"

step "a connection from client to server, a numbered line every 50 ms"
ip netns exec "$tag-client" bash -c '
  exec 3<>/dev/tcp/'"$server"'/5432 || exit 3
  for ((i = 0; ; i++)); do
    [ -e "$0/stop" ] && exit 0
    echo "$i" >&3 || { echo "write $i failed" >&2; exit 4; }
    sleep 0.05
  done' "$tmp" 2>"$tmp/client.log" &
client=$!
pids+=("$client")
lines() { wc -l <"$tmp/received"; }
flowing() {
  local before
  before=$(lines)
  wait_for "data flows (past line $before)" eval '[ "$(lines)" -gt $((before + 3)) ]'
}
flowing

# The pins before the upgrade: each link's inode, id and program; each map's id.
pin_state() {
  local pin
  for pin in "$pins"/links/* "$pins"/*; do
    [ -e "$pin" ] && [ ! -d "$pin" ] || continue
    if [[ $pin == */links/* ]]; then
      echo "link $(basename "$pin") $(stat -c %i "$pin") $(bpftool -j link show pinned "$pin" |
        sed -E 's/.*"id":([0-9]+).*"prog_id":([0-9]+).*/\1 prog=\2/')"
    else
      echo "map $(basename "$pin") $(stat -c %i "$pin") $(bpftool -j map show pinned "$pin" | sed -E 's/^\{"id":([0-9]+).*/\1/')"
    fi
  done
}
pin_state >"$tmp/pins-a"
grep -q '^link ' "$tmp/pins-a" || fail "agent A pinned no link"
cat "$tmp/pins-a"

wait "$package_b" || fail "packaging B failed"
deb_b=$(cat "$tmp/package-b.out")
echo "$deb_b"

step "upgrade: stop A, dpkg -i B, start B"
kill -TERM "$agent"
wait "$agent" || true
reaches other && fail "other got through with no agent running"
flowing
dpkg -i "$deb_b" >"$tmp/dpkg-b.log"
[ "$(dpkg-query -W -f='${Version}' stockade)" = "$version+upgrade2" ] || fail "B is not installed"
reaches other && fail "other got through after B was installed, before its agent started"
[ -e "$pins/links" ] || fail "the upgrade removed the pins"
flowing
start_agent b
flowing
reaches other && fail "other got through with B's agent"

step "B adopted A's pins"
pin_state >"$tmp/pins-b"
cat "$tmp/pins-b"
# Links: same pin, same link, another program (B's). Maps: same pin, same map.
diff <(sed 's/ prog=.*//' "$tmp/pins-a") <(sed 's/ prog=.*//' "$tmp/pins-b") ||
  fail "the pins were recreated, not adopted"
join <(grep '^link' "$tmp/pins-a" | awk '{print $2, $5}' | sort) <(grep '^link' "$tmp/pins-b" | awk '{print $2, $5}' | sort) |
  while read -r name prog_a prog_b; do
    [ "$prog_a" != "$prog_b" ] || fail "link $name still runs A's program ($prog_a)"
  done

step "the connection: no reset, every line in order"
: >"$tmp/stop"
wait "$client" || fail "the client's connection failed: $(cat "$tmp/client.log")"
sleep 0.3
count=$(lines)
[ "$(seq 0 $((count - 1)))" = "$(cat "$tmp/received")" ] || fail "lines lost or out of order"
echo "$count lines, 0 to $((count - 1)), none lost"

step "purge: the pins go, and with them enforcement"
kill -TERM "$agent"
wait "$agent" || true
link_ids=$(awk '/^link/ {print $4}' "$tmp/pins-b")
dpkg --purge stockade >"$tmp/dpkg-purge.log"
installed=0
[ ! -e "$pins" ] || fail "$pins left after purge"
[ ! -e /etc/stockade ] || fail "/etc/stockade left after purge"
[ ! -e /var/lib/stockade ] || fail "/var/lib/stockade left after purge"
for id in $link_ids; do
  wait_for "link $id detached after purge" eval "! bpftool link show id $id >/dev/null 2>&1"
done
wait_for "other reaches server after purge" reaches other
step "PASS"
