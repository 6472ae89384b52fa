#!/usr/bin/env bash
# What the Docker tests must leave on the host as they found it: Docker's own
# links (docker0, docker_gwbridge, br-*) with their ifindex and addresses,
# Docker's networks, and the host's iptables, ip6tables and nft rule sets.
# ctest runs `record` before the first Docker test and `check` after the
# last (a fixture); `check` fails with the difference, and when
# `docker run --rm` on the default bridge no longer works.
#   tests/docker/host_guard.sh record DIR
#   tests/docker/host_guard.sh check DIR
set -euo pipefail

readonly image=stockade-test:busybox
mode=${1:?usage: host_guard.sh record|check DIR}
dir=${2:?usage: host_guard.sh record|check DIR}

if ! timeout 10 docker info >/dev/null 2>&1; then
  if [ "${CI:-}" = true ]; then
    echo "host_guard: no dockerd answers; the Docker tests cannot run" >&2
    exit 1
  fi
  echo "host_guard: no dockerd answers: nothing to guard (skipped)"
  rm -f "$dir/before"
  exit 0
fi

snapshot() {
  echo "## links"
  local ifindex name
  ip -o link show | awk -F': ' '{sub(/@.*/, "", $2); print $1, $2}' |
    while read -r ifindex name; do
      case "$name" in
        docker0 | docker_gwbridge | br-*)
          echo "$ifindex $name $(ip -o addr show dev "$name" | awk '{print $4}' | sort | tr '\n' ' ')"
          ;;
      esac
    done
  echo "## networks"
  docker network ls --no-trunc --format '{{.ID}} {{.Name}} {{.Driver}} {{.Scope}}' | sort
  # Counters and the date stamps change on their own; the rules must not.
  echo "## iptables"
  iptables-save | sed -e '/^#/d' -e 's/ \[[0-9]*:[0-9]*\]$//'
  echo "## ip6tables"
  ip6tables-save | sed -e '/^#/d' -e 's/ \[[0-9]*:[0-9]*\]$//'
  echo "## nft"
  nft list ruleset 2>/dev/null | sed -E 's/counter packets [0-9]+ bytes [0-9]+/counter/'
}

case "$mode" in
  record)
    mkdir -p "$dir"
    snapshot >"$dir/before"
    echo "host_guard: recorded $(grep -c . "$dir/before") lines of the host's Docker state in $dir/before"
    ;;
  check)
    if [ ! -f "$dir/before" ]; then
      echo "host_guard: nothing was recorded (no dockerd at the start): nothing to check"
      exit 0
    fi
    snapshot >"$dir/after"
    failed=0
    if ! diff -u "$dir/before" "$dir/after" >"$dir/diff"; then
      echo "host_guard: the Docker tests changed the host's Docker state (- before, + after):" >&2
      cat "$dir/diff" >&2
      failed=1
    fi
    # What a user of the host notices first: a container on the default bridge.
    if ! out=$(timeout 60 docker run --rm "$image" true 2>&1); then
      echo "host_guard: 'docker run --rm $image true' fails after the Docker tests: $out" >&2
      failed=1
    fi
    [ $failed -eq 0 ] && echo "host_guard: the host's Docker links, networks and rule sets are as they were"
    exit $failed
    ;;
  *)
    echo "usage: host_guard.sh record|check DIR" >&2
    exit 2
    ;;
esac
