#!/usr/bin/env bash
# The .deb of the tree the suite built: lintian finds no error; unpacked
# (dpkg -x), it holds the package's files with their modes and nothing else,
# the binaries answer --version with the build's version, the man pages and
# completions work; installed on this machine (dpkg -i) it enables nothing,
# systemd accepts its unit; removed and purged, nothing of it is left.
#   tests/packaging/package_test.sh BUILD_DIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"
build=$(cd "${1:?usage: package_test.sh BUILD_DIR}" && pwd)

require_host dpkg dpkg-deb lintian systemd-analyze
guard_no_stockade

tmp=$(mktemp -d /tmp/stockade-package-test.XXXXXX)
installed=0
cleanup() {
  local rc=$?
  if [ $installed -eq 1 ]; then dpkg --purge stockade >/dev/null 2>&1 || rc=1; fi
  rm -rf "$tmp"
  exit $rc
}
trap cleanup EXIT

step "build the package"
deb=$("$here/../../scripts/package.sh" --build-dir "$build" --out "$tmp/out")
echo "$deb"
dpkg-deb --info "$deb" | sed -n '/Package:/,$p'
depends=$(dpkg-deb -f "$deb" Depends)
[[ $depends == *libbpf1* && $depends == *libc6* ]] || fail "Depends is not computed from the libraries: '$depends'"

step "lintian"
lintian_out=$(lintian --display-level '>=pedantic' "$deb" 2>&1) || true
echo "${lintian_out:-lintian: no findings}"
if grep -q '^E: ' <<<"$lintian_out"; then fail "lintian reports errors"; fi

step "contents (dpkg -x)"
dpkg-deb -c "$deb" | tee "$tmp/contents"
root=$tmp/root
dpkg -x "$deb" "$root"
# Every entry root-owned; files exactly the list, with its modes.
if awk '$2 != "root/root"' "$tmp/contents" | grep -q .; then fail "entries not owned by root/root"; fi
(cd "$root" && find . -type f -printf '%m %P\n' | sort) >"$tmp/files"
sort <<<"$package_files" >"$tmp/expected"
diff -u "$tmp/expected" "$tmp/files" || fail "the package's files or modes differ from the list"
[ -d "$root/etc/stockade/policies" ] && [ -z "$(ls -A "$root/etc/stockade/policies")" ] ||
  fail "/etc/stockade/policies is not an empty directory in the package"
[ "$(stat -c %a "$root/etc/stockade/policies")" = 755 ] || fail "/etc/stockade/policies is not 0755"
if dpkg-deb -c "$deb" | grep -Eq 'stockade-(bench|microbench|netns-demo)|\.o$'; then
  fail "a bench, lab or demo tool, or a BPF object, is in the package"
fi

step "the unpacked binaries"
for binary in usr/sbin/stockaded usr/bin/stockadectl usr/bin/stockade-tail; do
  name=$(basename "$binary")
  got=$("$root/$binary" --version)
  want=$("$build/tools/$name" --version)
  echo "$got"
  [[ $got =~ ^$name\ [0-9]+\.[0-9]+\.[0-9]+\ \(git\ [^\)]+\)$ ]] || fail "$name --version: '$got'"
  [ "$got" = "$want" ] || fail "$name --version is '$got', the build tree's is '$want'"
done
"$root/usr/bin/stockadectl" policy validate "$root/usr/share/doc/stockade/examples/policy.yaml" ||
  fail "the example policy does not validate"
# The example configuration is all comments: the service's defaults until edited.
if grep -Ev '^(#|$)' "$root/usr/share/doc/stockade/examples/stockade.default"; then
  fail "the example default configuration sets something"
fi

step "man pages"
for page in man8/stockaded.8 man1/stockadectl.1 man1/stockade-tail.1; do
  name=$(basename "$page" | cut -d. -f1)
  text=$(MANWIDTH=100 man -l "$root/usr/share/man/$page.gz" 2>&1 | col -b)
  # The page says what --help says: every option of --help is in it.
  options=$("$build/tools/$name" --help | grep -oE -- '(^|[ ,[])--[a-z][a-z-]+' | tr -d ' ,[' | sort -u)
  [ -n "$options" ] || fail "$name --help lists no option"
  for option in $options; do
    grep -q -- "$option" <<<"$text" || fail "$page does not mention $option"
  done
  grep -q "SEE ALSO" <<<"$text" || fail "$page has no SEE ALSO"
done

step "bash completion"
complete_words() {
  local file=$1
  shift
  bash -c 'source /usr/share/bash-completion/bash_completion
           source "$0"
           COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}
           "$(complete -p "$1" | sed "s/.*-F \([^ ]*\) .*/\1/")"
           printf "%s\n" "${COMPREPLY[@]}"' "$file" "$@"
}
ctl=$root/usr/share/bash-completion/completions/stockadectl
tail_completion=$root/usr/share/bash-completion/completions/stockade-tail
[ "$(complete_words "$ctl" stockadectl pol)" = policy ] || fail "stockadectl pol<TAB>"
[ "$(complete_words "$ctl" stockadectl policy v)" = validate ] || fail "stockadectl policy v<TAB>"
[ "$(complete_words "$ctl" stockadectl -o json endpoint "")" = list ] || fail "stockadectl -o json endpoint <TAB>"
[ "$(complete_words "$tail_completion" stockade-tail --verdict d)" = dropped ] || fail "stockade-tail --verdict d<TAB>"
[ "$(complete_words "$tail_completion" stockade-tail --no-f)" = --no-follow ] || fail "stockade-tail --no-f<TAB>"
# Every option of each --help is offered: those of its Options section
# first thing, a command's own (on its line of Commands) after that command.
options_in() { grep -oE -- '(^|[ ,[])--?[a-z][a-z-]*' | tr -d ' ,[' | sort -u; }
for name in stockadectl stockade-tail; do
  completion=$root/usr/share/bash-completion/completions/$name
  help=$("$build/tools/$name" --help)
  offered=$(complete_words "$completion" "$name" -)
  for option in $(sed -n '/^Options:/,$p' <<<"$help" | options_in); do
    grep -qx -- "$option" <<<"$offered" || fail "$name's completion does not offer $option"
  done
  # "  endpoint list [--remote]   ...": the words before the first option, and its options.
  while read -r line; do
    words=$(sed -E 's/ +(\[|-).*//; s/  .*//' <<<"$line")
    # shellcheck disable=SC2086 # the command's words, one argument each
    offered=$(complete_words "$completion" "$name" $words -)
    for option in $(sed -E 's/  .*//' <<<"$line" | options_in); do
      grep -qx -- "$option" <<<"$offered" || fail "$name's completion does not offer $option after $words"
    done
  done < <(sed -n '/^Commands:/,/^$/p' <<<"$help" | grep -E '^  [a-z][a-z ]*[a-z] +(\[)?--')
done

step "dpkg -i"
installed=1
dpkg -i "$deb"
dpkg-query -W -f='${db:Status-Abbrev}\n' stockade | grep -q '^ii' || fail "stockade is not installed"
while read -r mode path; do
  [ -f "/$path" ] || fail "/$path not installed"
  [ "$(stat -c %a "/$path")" = "$mode" ] || fail "/$path has mode $(stat -c %a "/$path"), not $mode"
done <<<"$package_files"
[ -d /etc/stockade/policies ] || fail "/etc/stockade/policies not created"
/usr/sbin/stockaded --version && /usr/bin/stockadectl --version && /usr/bin/stockade-tail --version
# The installed unit as it is: its ExecStart exists now.
verify=$(systemd-analyze verify /lib/systemd/system/stockaded.service 2>&1) || fail "systemd-analyze verify: $verify"
[ -z "$verify" ] || fail "systemd-analyze verify warns: $verify"
# Enabled and started nothing.
if compgen -G '/etc/systemd/system/*.wants/stockaded.service' >/dev/null; then fail "the install enabled stockaded"; fi
if pgrep -f '^/usr/sbin/stockaded' >/dev/null; then fail "the install started stockaded"; fi
[ ! -e /sys/fs/bpf/stockade/default ] || fail "the install made pins"

step "dpkg -r"
dpkg -r stockade
for f in /usr/sbin/stockaded /usr/bin/stockadectl /usr/bin/stockade-tail /lib/systemd/system/stockaded.service; do
  [ ! -e "$f" ] || fail "$f left after dpkg -r"
done
step "dpkg --purge"
dpkg --purge stockade
installed=0
status=$(dpkg-query -W -f='${db:Status-Abbrev}' stockade 2>/dev/null || true)
case "$status" in "" | "un "*) ;; *) fail "dpkg still knows stockade after purge: '$status'" ;; esac
while read -r mode path; do
  [ ! -e "/$path" ] || fail "/$path left after purge"
done <<<"$package_files"
for d in /etc/stockade /var/lib/stockade /usr/share/doc/stockade /sys/fs/bpf/stockade/default; do
  [ ! -e "$d" ] || fail "$d left after purge"
done
step "PASS"
