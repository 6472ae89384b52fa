#!/usr/bin/env bash
# The Docker demo: four busybox containers, frontend -> web -> backend -> db,
# labelled stockade.tier=<tier> on a network of their own, and stockaded
# enforcing the chain policy on them (each tier accepts only the tier in front
# of it, on its port). Shows what the agent sees, probes every hop and a few
# flows that break the chain, and explains the verdicts.
#
#   scripts/docker-demo.sh          # set up, show, tear everything down
#   scripts/docker-demo.sh --keep   # leave it running to look around
#   scripts/docker-demo.sh --down   # remove what --keep left
#
# Needs root, a dockerd and the image stockade-test:busybox
# (scripts/ensure-dockerd.sh), and the built tools (scripts/build.sh; another
# build directory with STOCKADE_BUILD_DIR). scripts/demo.sh does all of it.
set -euo pipefail
cd "$(dirname "$0")/.."

bin="${STOCKADE_BUILD_DIR:-build}/tools"
readonly image=stockade-test:busybox
readonly dir=/tmp/stockade-docker-demo  # policy, agent state, log, pid, run id, tools used
readonly tiers=(frontend web backend db)
readonly ports=(80 8080 5432)
readonly agent_wait_seconds=30

mode=run
case "${1:-}" in
  "") ;;
  --keep) mode=keep ;;
  --down) mode=down ;;
  *)
    echo "usage: $0 [--keep|--down]" >&2
    exit 2
    ;;
esac

ctl() { "${bin}/stockadectl" --instance "${run}" "$@"; }

# Stops our agent (by its recorded pid), removes the containers, uninstalls
# the instance, removes the network and ${dir}. Every step tolerates what is
# already gone; ${dir} stays if a step fails, so that --down can try again.
teardown() {
  echo "== removing the demo (${run})"
  local pid
  pid=$(cat "${dir}/stockaded.pid" 2>/dev/null || true)
  if [ -n "${pid}" ] && [ "$(cat "/proc/${pid}/comm" 2>/dev/null)" = stockaded ]; then
    kill "${pid}" || true
    for _ in $(seq 50); do
      [ -d "/proc/${pid}" ] || break
      sleep 0.2
    done
    [ ! -d "/proc/${pid}" ] || kill -9 "${pid}" || true
  fi
  local removed=yes containers networks
  # Containers first: with their interfaces gone there is nothing left to detach.
  mapfile -t containers < <(docker ps -aq --filter "label=stockade-demo=${run}")
  [ ${#containers[@]} -eq 0 ] || docker rm -f "${containers[@]}" >/dev/null || removed=no
  "${bin}/stockaded" --uninstall --instance "${run}" || removed=no
  mapfile -t networks < <(docker network ls -q --filter "label=stockade-demo=${run}")
  [ ${#networks[@]} -eq 0 ] || docker network rm "${networks[@]}" >/dev/null || removed=no
  if [ "${removed}" = no ]; then
    echo "docker-demo: not everything of ${run} is removed; $0 --down tries again" >&2
    return 1
  fi
  rm -rf "${dir}"
}

if [ "$(id -u)" -ne 0 ]; then
  echo "docker-demo: needs root (BPF, namespaces, the Docker socket)" >&2
  exit 1
fi
if [ "${mode}" = down ]; then
  if [ ! -f "${dir}/run" ]; then
    echo "docker-demo: no demo left running (${dir} is missing)"
    exit 0
  fi
  run=$(cat "${dir}/run")
  bin=$(cat "${dir}/bin")  # the tools that ran it
  teardown
  exit 0
fi
if [ -e "${dir}" ]; then
  echo "docker-demo: a demo is still up (${dir}); remove it with: $0 --down" >&2
  exit 1
fi
for tool in stockaded stockadectl stockade-tail; do
  if [ ! -x "${bin}/${tool}" ]; then
    echo "docker-demo: ${bin}/${tool} is missing; run scripts/build.sh" >&2
    exit 1
  fi
done
if ! docker image inspect "${image}" >/dev/null 2>&1; then
  echo "docker-demo: no ${image}; run scripts/ensure-dockerd.sh" >&2
  exit 1
fi

# One id names everything of this run: instance, network, containers.
run="stkdemo-$(date +%s | tail -c 6)$$"
mkdir -p "${dir}/policy"
echo "${run}" >"${dir}/run"
realpath "${bin}" >"${dir}/bin"
trap teardown EXIT
network="${run}-net"

echo "== network ${network} and four containers, each serving on ports ${ports[*]}"
docker network create --label "stockade-demo=${run}" "${network}" >/dev/null
declare -A ip
for tier in "${tiers[@]}"; do
  docker run -d --name "${run}-${tier}" --network "${network}" --label "stockade-demo=${run}" \
    --label "stockade.tier=${tier}" "${image}" sh -c \
    "for port in ${ports[*]}; do nc -ll -p \$port -e echo \"hello from ${tier}:\$port\" & done; wait" >/dev/null
  ip[${tier}]=$(docker inspect --format "{{(index .NetworkSettings.Networks \"${network}\").IPAddress}}" \
    "${run}-${tier}")
  printf '  %-10s %s  label stockade.tier=%s\n' "${run}-${tier}" "${ip[${tier}]}" "${tier}"
done

cat >"${dir}/policy/chain.yaml" <<'EOF'
apiVersion: stockade/v1
kind: Policy
metadata: {name: web-ingress}
spec:
  endpointSelector: {matchLabels: {tier: web}}
  ingress:
    - fromEndpoints: [{matchLabels: {tier: frontend}}]
      toPorts: [{ports: [{port: "80", protocol: TCP}]}]
---
apiVersion: stockade/v1
kind: Policy
metadata: {name: backend-ingress}
spec:
  endpointSelector: {matchLabels: {tier: backend}}
  ingress:
    - fromEndpoints: [{matchLabels: {tier: web}}]
      toPorts: [{ports: [{port: "8080", protocol: TCP}]}]
---
apiVersion: stockade/v1
kind: Policy
metadata: {name: db-ingress}
spec:
  endpointSelector: {matchLabels: {tier: db}}
  ingress:
    - fromEndpoints: [{matchLabels: {tier: backend}}]
      toPorts: [{ports: [{port: "5432", protocol: TCP}]}]
EOF
echo "== policy ${dir}/policy/chain.yaml: frontend -> web tcp/80, web -> backend tcp/8080, backend -> db tcp/5432"

echo "== starting stockaded (instance ${run}, log ${dir}/stockaded.log)"
# setsid: with --keep the agent outlives this script and its terminal.
setsid "${bin}/stockaded" --instance "${run}" --policy-dir "${dir}/policy" --state-dir "${dir}/state" \
  >"${dir}/stockaded.log" 2>&1 </dev/null &
echo $! >"${dir}/stockaded.pid"
enforcing=0
for _ in $(seq $((agent_wait_seconds * 5))); do
  enforcing=$(ctl endpoint list 2>/dev/null | grep -c " enforcing" || true)
  [ "${enforcing}" -eq 3 ] && break
  sleep 0.2
done
if [ "${enforcing}" -ne 3 ]; then
  echo "docker-demo: stockaded did not enforce web, backend and db within ${agent_wait_seconds}s:" >&2
  tail -n 20 "${dir}/stockaded.log" >&2
  exit 1
fi
echo
ctl endpoint list

# probe FROM TO PORT KIND EXPECTED: one request from FROM's container.
mismatches=0
probe() {
  local from=$1 to=$2 port=$3 kind=$4 expected=$5 out got
  out=$(docker exec "${run}-${from}" sh -c "echo hi | nc -w 1 ${ip[${to}]} ${port}" 2>&1 || true)
  case "${out}" in
    *hello*) got="answered (${out})" ;;
    *"timed out"*) got="dropped (no answer within 1s)" ;;
    *) got="${out:-no output}" ;;
  esac
  [[ "${got}" == "${expected}"* ]] || { got="${got}  <-- UNEXPECTED"; mismatches=$((mismatches + 1)); }
  printf '%-36s %-10s %s\n' "${from} -> ${to}:${port} (${kind})" "${expected}" "${got}"
}
echo
printf '%-36s %-10s %s\n' PROBE EXPECTED GOT
probe frontend web 80 hop answered
probe web backend 8080 hop answered
probe backend db 5432 hop answered
probe frontend backend 8080 skip dropped
probe frontend db 5432 skip dropped
probe web db 5432 skip dropped
probe db backend 8080 lateral dropped
probe frontend web 8080 "wrong port" dropped

echo
echo "== stockade-tail --last 20: each drop with both containers and the rule that decided it"
"${bin}/stockade-tail" --instance "${run}" --no-follow --last 20 --color never
echo
echo "== stockadectl status (drops counts the packets dropped, by reason)"
ctl status
for args in "frontend web 80" "frontend db 5432" "db backend 8080" "frontend web 8080"; do
  read -r from to port <<<"${args}"
  echo
  echo "== stockadectl explain ${run}-${from} ${run}-${to} ${port}"
  ctl explain "${run}-${from}" "${run}-${to}" "${port}"
done
echo
if [ "${mismatches}" -eq 0 ]; then
  echo "docker-demo: every probe went as the policy says"
else
  echo "docker-demo: ${mismatches} probe(s) did not go as the policy says" >&2
fi

if [ "${mode}" = keep ]; then
  trap - EXIT
  cat <<EOF

Left running: stockaded pid $(cat "${dir}/stockaded.pid"), instance ${run}, containers ${run}-*.
Look around:
  ${bin}/stockadectl --instance ${run} endpoint list
  ${bin}/stockadectl --instance ${run} policy get
  ${bin}/stockade-tail --instance ${run}          (drops as they happen; Ctrl-C for a summary)
  curl -s \$(${bin}/stockadectl --instance ${run} -o json status | sed -n 's/.*"metrics": "\(.*\)".*/\1/p')/metrics
  docker exec ${run}-frontend sh -c 'echo hi | nc -w 1 ${ip[backend]} 8080'
  edit ${dir}/policy/chain.yaml: the agent applies it when it is saved
Remove it all:
  $0 --down
EOF
fi
[ "${mismatches}" -eq 0 ]
