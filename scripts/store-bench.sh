#!/usr/bin/env bash
# The store's scale on one real agent (issue 20; docs/benchmarks.md, "Store"):
# an etcd of its own on loopback, a stockaded following it (no Docker, its
# own instance), and stockade-store-load playing the other hosts. Not a
# test: a measurement that prints its numbers and the commands that made
# them.
#
#   scripts/store-bench.sh [--build-dir build] [--small 100x100] [--large 1000x100] [--churn-rate 100]
#
# 1. --small hosts x endpoints published with the agent running, then churn
#    at --churn-rate starts+stops/s for 20 s: put to the agent's map write.
# 2. --large published (kept), then the agent restarted: its start to every
#    remote endpoint in its maps (initial sync).
# 3. etcd restarted under it: from etcd's return to the agent current again.
# Everything it starts is stopped by pid, and its directories removed.
set -euo pipefail

build_dir=build
small=100x100
large=1000x100
churn_rate=100
while (($#)); do
  case "$1" in
    --build-dir) build_dir=$2; shift 2 ;;
    --small) small=$2; shift 2 ;;
    --large) large=$2; shift 2 ;;
    --churn-rate) churn_rate=$2; shift 2 ;;
    *) echo "usage: $0 [--build-dir DIR] [--small HxE] [--large HxE] [--churn-rate R]" >&2; exit 2 ;;
  esac
done
readonly stockaded="${build_dir}/tools/stockaded" stockadectl="${build_dir}/tools/stockadectl"
readonly load="${build_dir}/tools/stockade-store-load"
for tool in "${stockaded}" "${stockadectl}" "${load}" /usr/bin/etcd; do
  [ -x "${tool}" ] || { echo "missing ${tool}" >&2; exit 1; }
done
echo "command: $0 --build-dir ${build_dir} --small ${small} --large ${large} --churn-rate ${churn_rate}"

readonly instance="stk-storebench$$"
work=$(mktemp -d /tmp/stockade-store-bench.XXXXXX)
readonly work
etcd_pid="" agent_pid=""
port=$((20000 + $$ % 20000))
readonly url="http://127.0.0.1:${port}"

start_etcd() {
  /usr/bin/etcd --name bench --data-dir "${work}/etcd" --listen-client-urls "${url}" --advertise-client-urls "${url}" \
    --listen-peer-urls "http://127.0.0.1:$((port + 1))" --initial-advertise-peer-urls "http://127.0.0.1:$((port + 1))" \
    --initial-cluster "bench=http://127.0.0.1:$((port + 1))" --log-level warn >>"${work}/etcd.log" 2>&1 &
  etcd_pid=$!
  for _ in $(seq 100); do
    curl -s -m 1 -X POST "${url}/v3/kv/range" -d '{"key":"AA=="}' >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "etcd did not answer; its log:" >&2
  tail -20 "${work}/etcd.log" >&2
  exit 1
}
stop_etcd() {
  if [ -n "${etcd_pid}" ]; then
    kill "${etcd_pid}" 2>/dev/null
    wait "${etcd_pid}" 2>/dev/null || true  # its status is SIGTERM's
  fi
  etcd_pid=""
}
start_agent() {
  "${stockaded}" --instance "${instance}" --no-docker --state-dir "${work}/state" --metrics-address 127.0.0.1:0 \
    --etcd-endpoints "${url}" --host-id bench-agent >>"${work}/agent.log" 2>&1 &
  agent_pid=$!
}
stop_agent() {
  if [ -n "${agent_pid}" ]; then
    kill "${agent_pid}" 2>/dev/null
    wait "${agent_pid}" 2>/dev/null || true
  fi
  agent_pid=""
}
status_field() {  # a top-level field of `stockadectl status`, or of its store section
  "${stockadectl}" --instance "${instance}" -o json status 2>/dev/null | jq -r "$1" 2>/dev/null || echo ""
}
wait_for() {  # wait_for EXPR VALUE SECONDS: until status EXPR is VALUE; prints the seconds it took
  local start now
  start=$(date +%s%N)
  while [ "$(status_field "$1")" != "$2" ]; do
    now=$(date +%s%N)
    if ((now - start > $3 * 1000000000)); then
      echo "timeout"
      return 1
    fi
    sleep 0.02
  done
  now=$(date +%s%N)
  printf '%d.%03d\n' $(((now - start) / 1000000000)) $((((now - start) / 1000000) % 1000))
}
cleanup() {
  set +e
  stop_agent
  "${stockaded}" --instance "${instance}" --uninstall >/dev/null 2>&1
  stop_etcd
  rm -rf "${work}" "/var/lib/stockade/${instance}"
}
trap cleanup EXIT

start_etcd
start_agent
wait_for '.store.state' connected 30 >/dev/null

IFS=x read -r hosts endpoints <<<"${small}"
echo "== 1. ${hosts} hosts x ${endpoints} endpoints published with the agent running, churn ${churn_rate}/s"
"${load}" --etcd-endpoints="${url}" --hosts="${hosts}" --endpoints-per-host="${endpoints}" --batch=100 \
  --churn-rate="${churn_rate}" --churn-seconds=20 --agent-instance="${instance}"

IFS=x read -r hosts endpoints <<<"${large}"
total=$((hosts * endpoints))
echo "== 2. ${hosts} hosts x ${endpoints} endpoints in etcd, then the agent restarted"
"${load}" --etcd-endpoints="${url}" --hosts="${hosts}" --endpoints-per-host="${endpoints}" --batch=100 \
  --churn-rate=0 --lease-ttl=900 --keep --agent-instance="${instance}"
stop_agent
start_agent
synced=$(wait_for '.remote_enforced' "${total}" 120)
echo "initial sync: agent start to all ${total} remote endpoints in its maps: ${synced} s"
rss=$(grep VmHWM "/proc/${agent_pid}/status" | awk '{print $2 / 1024 " MiB"}')
echo "agent peak RSS with ${total} remote endpoints: ${rss}"

echo "== 3. etcd restarted under the agent (${total} remote endpoints)"
stop_etcd
wait_for '.store.state' unreachable 30 >/dev/null
start_etcd
back=$(wait_for '.store.state' connected 60)
echo "reconverged: etcd answering to the agent current again: ${back} s (remote endpoints in its maps: $(status_field '.remote_enforced'))"
