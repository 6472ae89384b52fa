#!/usr/bin/env bash
# Installs every Debian package that stockade's build, tests, demo and benchmark
# need. Idempotent: a second run on a ready machine changes nothing.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: run as root (apt-get needs it)" >&2
  exit 1
fi

# libbpf 1.1 in bookworm has no TCX; bookworm-backports carries 1.4 and bpftool 7.5.
backports=/etc/apt/sources.list.d/stockade-bookworm-backports.sources
if ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
  cat >"$backports" <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
fi

packages_main=(
  build-essential cmake pkg-config clang-19 llvm-19 libclang-rt-19-dev
  libabsl-dev libgtest-dev googletest libgmock-dev libelf-dev zlib1g-dev
  libcurl4-openssl-dev nlohmann-json3-dev libyaml-dev libyaml-cpp-dev libmicrohttpd-dev
  linux-libc-dev iproute2 iputils-ping netcat-openbsd ethtool
  iptables nftables ipset iperf3 netsniff-ng gnuplot-nox
  docker.io docker-compose busybox-static procps psmisc openssl
  libcap-dev systemd etcd-server jq
  help2man lintian dpkg-dev bash-completion
)
packages_backports=(libbpf-dev bpftool)

missing=()
for p in "${packages_main[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
need_bpf=0
libbpf_ver=$(dpkg-query -W -f='${Version}' libbpf-dev 2>/dev/null || true)
if [ -z "$libbpf_ver" ] || dpkg --compare-versions "$libbpf_ver" lt 1:1.4; then need_bpf=1; fi
command -v bpftool >/dev/null 2>&1 && bpftool version >/dev/null 2>&1 || need_bpf=1

if [ ${#missing[@]} -gt 0 ] || [ $need_bpf -eq 1 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  if [ ${#missing[@]} -gt 0 ]; then
    apt-get install -y -q --no-install-recommends "${missing[@]}"
  fi
  if [ $need_bpf -eq 1 ]; then
    apt-get install -y -q --no-install-recommends -t bookworm-backports "${packages_backports[@]}"
  fi
fi

# bpffs is where pinned maps and links live; most hosts mount it, containers may not.
if ! mountpoint -q /sys/fs/bpf; then
  mount -t bpf bpf /sys/fs/bpf
fi
echo "install-deps: all packages present"
