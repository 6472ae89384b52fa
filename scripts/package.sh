#!/usr/bin/env bash
# Builds the Debian package from a configured build tree (scripts/build.sh
# makes build/) with CPack: build/packages/stockade_<version>_<arch>.deb.
#   scripts/package.sh [--build-dir DIR] [--out DIR] [--version VERSION]
# --version overrides the package's version (the binaries' --version stays
# the build's); the tests build two versions of one tree with it.
set -euo pipefail
cd "$(dirname "$0")/.."

build=build out="" version=""
while [ $# -gt 0 ]; do
  case "$1" in
    --build-dir) build=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --version) version=$2; shift 2 ;;
    -h | --help) sed -n '2,6s/^# \{0,1\}//p' "$0"; exit 0 ;;
    *) echo "package: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
if [ ! -f "$build/CPackConfig.cmake" ]; then
  echo "package: $build is not a configured build tree; run scripts/build.sh first" >&2
  exit 1
fi
build=$(cd "$build" && pwd)
out=${out:-$build/packages}
mkdir -p "$out"
out=$(cd "$out" && pwd)

# Only what the package holds: the three binaries, their man pages, the changelog.
cmake --build "$build" --target package_files >&2
args=(--config "$build/CPackConfig.cmake" -B "$out")
[ -n "$version" ] && args+=(-D "CPACK_PACKAGE_VERSION=$version")
# CPack's staging tree goes to $out/_CPack_Packages; only the .deb is kept.
cpack "${args[@]}" >"$out/cpack.log" 2>&1 || { cat "$out/cpack.log" >&2; exit 1; }
rm -rf "$out/_CPack_Packages"
deb=$(sed -n 's/^CPack: - package: \(.*\.deb\) generated\.$/\1/p' "$out/cpack.log")
[ -f "$deb" ] || { cat "$out/cpack.log" >&2; echo "package: no .deb in the cpack output" >&2; exit 1; }
echo "$deb"
