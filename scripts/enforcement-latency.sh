#!/usr/bin/env bash
# Time from Docker's start event to enforcement, per container, with many
# containers running. Not a test: a measurement that prints its numbers and
# the command that made them (docs/benchmarks.md).
#
#   scripts/enforcement-latency.sh [--running 100] [--measured 50] [--build-dir build]
#
# Starts its own stockaded instance (policy: tier=bench accepts tier=bench on
# tcp/80) and its own bridge network, then `docker run`s --running labelled
# containers one after another and then --measured more with those running.
# For each container: latency = enforced_at (stockadectl endpoint list -o json:
# when the map sync that wrote its record and policy returned) minus the
# timeNano of its Docker start event. Prints p50/p95/p99/max for the ramp-up
# and for the containers started with --running already up.
# Removes every container, the network, the agent and its instance at exit.
set -euo pipefail

running=100
measured=50
build_dir=build
while (($#)); do
  case "$1" in
    --running) running=$2; shift 2 ;;
    --measured) measured=$2; shift 2 ;;
    --build-dir) build_dir=$2; shift 2 ;;
    *) echo "usage: $0 [--running N] [--measured M] [--build-dir DIR]" >&2; exit 2 ;;
  esac
done
readonly command_line="$0 --running ${running} --measured ${measured} --build-dir ${build_dir}"
readonly stockaded="${build_dir}/tools/stockaded" stockadectl="${build_dir}/tools/stockadectl"
readonly image=stockade-test:busybox
for tool in "${stockaded}" "${stockadectl}"; do
  [ -x "${tool}" ] || { echo "missing ${tool}: build the targets stockaded and stockadectl" >&2; exit 1; }
done

readonly run="lat$$"
readonly instance="stk-${run}"
readonly network="stk-${run}-net"
work=$(mktemp -d "/tmp/stockade-latency.XXXXXX")
readonly work
agent_pid=""
events_pid=""

cleanup() {
  set +e
  [ -n "${events_pid}" ] && kill "${events_pid}" 2>/dev/null
  docker ps -aq --filter "label=stockade.test=${run}" | xargs -r docker rm -f >/dev/null
  # Endpoints of just-removed containers may linger a moment: a few tries.
  for _ in 1 2 3 4 5; do
    docker network rm "${network}" >/dev/null 2>&1 && break
    sleep 1
  done
  if [ -n "${agent_pid}" ]; then
    kill "${agent_pid}" 2>/dev/null
    wait "${agent_pid}" 2>/dev/null
  fi
  "${stockaded}" --instance "${instance}" --uninstall >/dev/null 2>&1
  rm -rf "${work}" "/var/lib/stockade/${instance}"
}
trap cleanup EXIT

ctl() { "${stockadectl}" --instance "${instance}" -o json "$@"; }

mkdir -p "${work}/policy"
cat >"${work}/policy/bench.yaml" <<'EOF'
apiVersion: stockade/v1
kind: Policy
metadata: {name: bench-ingress}
spec:
  endpointSelector: {matchLabels: {tier: bench}}
  ingress:
    - fromEndpoints: [{matchLabels: {tier: bench}}]
      toPorts: [{ports: [{port: "80", protocol: TCP}]}]
EOF
docker network create --label "stockade.test=${run}" "${network}" >/dev/null
"${stockaded}" --instance "${instance}" --policy-dir "${work}/policy" --state-dir "${work}/state" \
  >"${work}/agent.log" 2>&1 &
agent_pid=$!
for _ in $(seq 100); do ctl status >/dev/null 2>&1 && break; sleep 0.1; done
ctl status >/dev/null || { cat "${work}/agent.log" >&2; exit 1; }

# Start events, in start order: "<id> <timeNano>". Followed live: dockerd
# keeps only its last 256 events, fewer than this run makes.
docker events --filter "label=stockade.test=${run}" --filter event=start \
  --format '{{.ID}} {{.TimeNano}}' >"${work}/starts" &
events_pid=$!
sleep 0.5
total=$((running + measured))
for i in $(seq "${total}"); do
  docker run -d --network "${network}" --label "stockade.test=${run}" --label stockade.tier=bench \
    --name "stk-${run}-${i}" "${image}" sleep 3600 >/dev/null
  ((i % 25)) || echo "started ${i}/${total}" >&2
done

# Every container enforcing (bounded wait).
for _ in $(seq 300); do
  n=$(ctl endpoint list | jq '[.endpoints[] | select(.state == "enforcing")] | length')
  ((n >= total)) && break
  sleep 0.2
done
((n >= total)) || { echo "only ${n}/${total} endpoints enforcing" >&2; tail -20 "${work}/agent.log" >&2; exit 1; }

kill "${events_pid}"
wait "${events_pid}" 2>/dev/null || true
events_pid=""
ctl endpoint list | jq -r '.endpoints[] | "\(.id) \(.enforced_at_ns)"' >"${work}/enforced"

# latency in ms per container, in start order.
awk 'NR == FNR { enforced[$1] = $2; next }
     { id = substr($1, 1, 12); if (id in enforced) printf "%.3f\n", (enforced[id] - $2) / 1e6 }' \
  "${work}/enforced" "${work}/starts" >"${work}/latency"

summary() {  # label, then latencies on stdin
  sort -n | awk -v label="$1" '{ v[NR] = $1 }
    function pct(p) { i = int(p * NR + 0.999999); if (i < 1) i = 1; return v[i] }
    END { printf "%-42s n=%-4d p50=%7.1f ms  p95=%7.1f ms  p99=%7.1f ms  max=%7.1f ms\n",
                 label, NR, pct(0.50), pct(0.95), pct(0.99), v[NR] }'
}
echo "command: ${command_line}"
echo "kernel $(uname -r), $(nproc) CPUs, dockerd $(docker version -f '{{.Server.Version}}')"
head -n "${running}" "${work}/latency" | summary "ramp-up: containers 1..${running}"
tail -n "+$((running + 1))" "${work}/latency" | summary "with ${running} running: next ${measured}"
summary "all" <"${work}/latency"
echo "map syncs: $(grep -c 'synced:' "${work}/agent.log"); the last: $(grep 'synced:' "${work}/agent.log" | tail -1)"
