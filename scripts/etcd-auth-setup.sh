#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# etcd's own auth for stockade (docs/multihost.md, "etcd's auth, per host"):
# the root user and role, then per host a role that reads and writes its own
# subtree /stockade/v1/hosts/<host-id>/ and reads all of /stockade/v1/hosts/,
# and a user of that role; then auth is enabled. Safe to run again: what
# exists is kept (a user's password is set anew), and once auth is on the
# calls are made as root.
#
#   scripts/etcd-auth-setup.sh --endpoint https://10.0.0.1:2379 \
#       [--cacert ca.pem --cert root.pem --key root-key.pem] \
#       --root-password-file /etc/stockade/etcd-root.password \
#       --host web-1:/etc/stockade/etcd-web-1.password --host db-1:/secrets/db-1.password
#
# Host <id> gets user and role "stockade-<id>"; its agent is given
# --user stockade-<id> and its password file. Passwords are the first line of
# their file (mode 0600, like a key); they never go on a command line: jq
# reads them from the file and curl reads the request from its stdin. The
# root token travels in a header file of mode 0600, not in argv.
#
# curl against etcd's JSON gateway rather than etcdctl: curl and jq are
# already what the build and tests use, etcdctl is another package (Debian's
# etcd-client), and etcdctl takes passwords on its command line.
set -euo pipefail

readonly HOSTS_PREFIX=/stockade/v1/hosts/

usage() {
  sed -n '/^#   scripts/,/^#$/p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

endpoint=""
root_password_file=""
declare -a hosts=()
declare -a tls=()
while (($#)); do
  case "$1" in
    --endpoint) endpoint="${2:?}"; shift 2 ;;
    --cacert) tls+=(--cacert "${2:?}"); shift 2 ;;
    --cert) tls+=(--cert "${2:?}"); shift 2 ;;
    --key) tls+=(--key "${2:?}"); shift 2 ;;
    --root-password-file) root_password_file="${2:?}"; shift 2 ;;
    --host) hosts+=("${2:?}"); shift 2 ;;
    -h|--help) usage ;;
    *) echo "etcd-auth-setup: unknown argument '$1'" >&2; usage ;;
  esac
done
[[ -n "$endpoint" && -n "$root_password_file" ]] || usage
for tool in curl jq base64; do
  command -v "$tool" >/dev/null || { echo "etcd-auth-setup: $tool is missing (scripts/install-deps.sh)" >&2; exit 1; }
done

# A password file must be private to its owner, as the client demands.
check_private() {
  local file="$1" mode
  [[ -f "$file" ]] || { echo "etcd-auth-setup: password file $file is not a regular file" >&2; exit 1; }
  mode=$(stat -L -c %a "$file")
  if (( (8#$mode & 8#077) != 0 )); then
    echo "etcd-auth-setup: password file $file has mode $mode, which lets group or others use it: chmod 600 $file" >&2
    exit 1
  fi
}

work=$(mktemp -d /tmp/stockade-etcd-auth-XXXXXX)
trap 'rm -rf "$work"' EXIT
header_file="$work/authorization"
: >"$header_file"
chmod 600 "$header_file"

b64() { printf '%s' "$1" | base64 -w0; }

# POST of stdin's JSON to the gateway's $1; prints the answer. With a root
# token the Authorization header comes from its file.
post() {
  local path="$1"
  local -a auth=()
  [[ -s "$header_file" ]] && auth=(-H "@$header_file")
  curl -sS --max-time 10 "${tls[@]}" "${auth[@]}" -H 'Content-Type: application/json' \
    -X POST "${endpoint%/}$path" --data-binary @-
}

# post, failing on an etcd error other than the one ($2) that means "done".
call() {
  local path="$1" tolerated="${2:-}" answer error
  answer=$(post "$path")
  error=$(jq -r '.error // empty | if type == "object" then .message else . end' <<<"$answer")
  if [[ -n "$error" && ( -z "$tolerated" || "$error" != *"$tolerated"* ) ]]; then
    echo "etcd-auth-setup: $path at $endpoint: $error" >&2
    exit 1
  fi
}

# {"name": $1, "password": first line of file $2}, the password read by jq.
password_request() { jq -Rnc --arg name "$1" '{name: $name, password: input}' <"$2"; }

check_private "$root_password_file"
for spec in "${hosts[@]}"; do
  host="${spec%%:*}"
  file="${spec#*:}"
  [[ "$spec" == *:* && -n "$host" && -n "$file" ]] || { echo "etcd-auth-setup: --host wants <host-id>:<password-file>, got '$spec'" >&2; exit 1; }
  [[ "$host" =~ ^[A-Za-z0-9._-]{1,253}$ && "$host" != "." && "$host" != ".." ]] ||
    { echo "etcd-auth-setup: host id '$host' is not 1 to 253 of [A-Za-z0-9._-]" >&2; exit 1; }
  check_private "$file"
done

# Auth already on: everything below is done as root.
answer=$(password_request root "$root_password_file" | post /v3/auth/authenticate)
if token=$(jq -er '.token' <<<"$answer" 2>/dev/null); then
  printf 'Authorization: %s\n' "$token" >"$header_file"
  unset token
elif ! grep -q 'authentication is not enabled' <<<"$answer"; then
  echo "etcd-auth-setup: authenticate as root at $endpoint: $(jq -r '.error // .message // .' <<<"$answer")" >&2
  exit 1
fi

password_request root "$root_password_file" | call /v3/auth/user/add "user name already exists"
jq -nc '{name: "root"}' | call /v3/auth/role/add "role name already exists"
jq -nc '{user: "root", role: "root"}' | call /v3/auth/user/grant

# A key range [key, range_end): a prefix's end is the prefix with its last
# byte, '/', raised to '0'.
grant() {
  local role="$1" prefix="$2" type="$3"
  jq -nc --arg name "$role" --arg key "$(b64 "$prefix")" --arg range_end "$(b64 "${prefix%/}0")" --arg type "$type" \
    '{name: $name, perm: {key: $key, range_end: $range_end, permType: $type}}' | call /v3/auth/role/grant
}

for spec in "${hosts[@]}"; do
  host="${spec%%:*}"
  file="${spec#*:}"
  name="stockade-$host"
  jq -nc --arg name "$name" '{name: $name}' | call /v3/auth/role/add "role name already exists"
  grant "$name" "$HOSTS_PREFIX$host/" READWRITE
  grant "$name" "$HOSTS_PREFIX" READ
  password_request "$name" "$file" | call /v3/auth/user/add "user name already exists"
  password_request "$name" "$file" | call /v3/auth/user/changepw
  jq -nc --arg user "$name" --arg role "$name" '{user: $user, role: $role}' | call /v3/auth/user/grant
  echo "etcd-auth-setup: user $name: read-write $HOSTS_PREFIX$host/, read $HOSTS_PREFIX"
done

jq -nc '{}' | call /v3/auth/enable
echo "etcd-auth-setup: auth enabled at $endpoint"
