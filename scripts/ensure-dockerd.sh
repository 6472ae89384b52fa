#!/usr/bin/env bash
# Makes sure a Docker daemon answers and that the test image exists, for the
# tests labelled `docker`. Idempotent: on a ready machine it changes nothing.
#
#   scripts/ensure-dockerd.sh            # as root
#
# - If nothing answers on $DOCKER_HOST (default unix:///var/run/docker.sock),
#   starts Debian's dockerd in the background, logging to
#   /tmp/stockade-dockerd.log, and waits (bounded) until `docker info` answers.
#   The daemon is left running for later runs; it is never restarted or stopped.
# - If the image stockade-test:busybox is missing, imports it from a root
#   filesystem made of busybox-static: no registry is needed (none is reachable).
#
# Note: dockerd sets the host's iptables FORWARD policy to DROP and adds NAT
# rules when it starts; stockade's tests do not depend on host iptables.
set -euo pipefail

readonly image=stockade-test:busybox
readonly log=/tmp/stockade-dockerd.log
readonly wait_seconds=60

docker_answers() { timeout 10 docker info >/dev/null 2>&1; }

# Two concurrent runs must not both start a daemon.
exec 9>/tmp/stockade-ensure-dockerd.lock
flock -w $((wait_seconds + 30)) 9

if ! docker_answers; then
  if [ -n "${DOCKER_HOST:-}" ] && [ "${DOCKER_HOST}" != "unix:///var/run/docker.sock" ]; then
    echo "ensure-dockerd: DOCKER_HOST=${DOCKER_HOST} does not answer; start that daemon yourself" >&2
    exit 1
  fi
  if [ "$(id -u)" -ne 0 ]; then
    echo "ensure-dockerd: no dockerd answers and starting one needs root" >&2
    exit 1
  fi
  if pgrep -x dockerd >/dev/null; then
    echo "ensure-dockerd: dockerd is running but not answering yet; waiting"
  else
    echo "ensure-dockerd: starting dockerd (log: ${log})"
    # setsid: the daemon outlives this script and its session; it does not
    # inherit the lock, so later runs are not blocked by it.
    setsid dockerd >>"${log}" 2>&1 </dev/null 9>&- &
  fi
  deadline=$((SECONDS + wait_seconds))
  until docker_answers || ((SECONDS >= deadline)); do
    sleep 1
  done
  if ! docker_answers; then
    echo "ensure-dockerd: dockerd did not answer within ${wait_seconds}s; last log lines:" >&2
    tail -n 30 "${log}" >&2
    exit 1
  fi
fi

if ! docker image inspect "${image}" >/dev/null 2>&1; then
  busybox=/bin/busybox  # from busybox-static: no shared libraries needed
  if [ ! -x "${busybox}" ]; then
    echo "ensure-dockerd: ${busybox} missing; run scripts/install-deps.sh" >&2
    exit 1
  fi
  rootfs=$(mktemp -d /tmp/stockade-rootfs.XXXXXX)
  trap 'rm -rf "${rootfs}"' EXIT
  mkdir -p "${rootfs}"/{bin,etc,tmp,proc,sys,dev,root}
  cp "${busybox}" "${rootfs}/bin/busybox"
  # One symlink per applet: sh, sleep, nc, ping, wget, ip, ...
  for applet in $("${rootfs}/bin/busybox" --list); do
    [ -e "${rootfs}/bin/${applet}" ] || ln -s busybox "${rootfs}/bin/${applet}"
  done
  echo "root:x:0:0:root:/root:/bin/sh" >"${rootfs}/etc/passwd"
  echo "root:x:0:" >"${rootfs}/etc/group"
  tar -C "${rootfs}" -c . |
    docker import --change 'CMD ["/bin/sh"]' --change 'ENV PATH=/bin' - "${image}" >/dev/null
  echo "ensure-dockerd: imported ${image}"
fi
echo "ensure-dockerd: dockerd answers, ${image} present"
