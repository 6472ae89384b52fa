# Shared by the packaging tests: the package's file list, the preconditions,
# and the guard that keeps them off a stockade that is not theirs.
# shellcheck shell=bash disable=SC2034

# The files of the package (dpkg -x root relative) and their modes; nothing else.
readonly package_files="755 usr/sbin/stockaded
755 usr/bin/stockadectl
755 usr/bin/stockade-tail
644 lib/systemd/system/stockaded.service
644 usr/share/doc/stockade/copyright
644 usr/share/doc/stockade/changelog.gz
644 usr/share/doc/stockade/examples/policy.yaml
644 usr/share/doc/stockade/examples/stockade.default
644 usr/share/man/man8/stockaded.8.gz
644 usr/share/man/man1/stockadectl.1.gz
644 usr/share/man/man1/stockade-tail.1.gz
644 usr/share/bash-completion/completions/stockadectl
644 usr/share/bash-completion/completions/stockade-tail"

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

# A test that cannot run here skips (ctest SKIP_RETURN_CODE 77), and fails under CI.
cannot_run() {
  if [ "${CI:-}" = true ]; then fail "$* (CI=true: a privileged test that cannot run fails)"; fi
  echo "SKIP: $*"
  exit 77
}

require_host() {
  [ "$(id -u)" -eq 0 ] || cannot_run "needs root (dpkg -i, namespaces, BPF)"
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null || cannot_run "$tool missing (scripts/install-deps.sh installs it)"
  done
}

# The tests install and purge the package for real: never over one that is
# here already, nor over a default instance's pins that are not theirs.
guard_no_stockade() {
  local status
  status=$(dpkg-query -W -f='${db:Status-Abbrev}' stockade 2>/dev/null || true)
  case "$status" in
    "" | "un "*) ;;
    *) fail "a stockade package is on this machine already (dpkg status '$status'): the packaging tests install and purge one of their own; remove it first (dpkg --purge stockade)" ;;
  esac
  [ ! -e /sys/fs/bpf/stockade/default ] ||
    fail "/sys/fs/bpf/stockade/default exists: the default instance is someone else's; the packaging tests would purge it"
}

# Say how long each step takes, so a slow test shows where.
step() { printf '[%5ss] %s\n' "$SECONDS" "$*"; }
