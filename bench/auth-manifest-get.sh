#!/usr/bin/env bash
# Authenticated vs anonymous manifest GET throughput on one Wharf binary, in one run, rounds
# interleaved (the machine is noisy: compare within a run, never across runs).
#
#   bench/auth-manifest-get.sh [WHARF_BINARY] [SECONDS] [ROUNDS]
#
# Modes, each with wrk at 64 connections against GET /v2/bench/app/manifests/v1:
#   no-auth      access control off (no identities)
#   anon-token   access control on, anonymous pull allowed, anonymous Bearer token
#   user-token   access control on, a user's Bearer token from /token
#   basic        access control on, Basic credentials on every request
# Needs wrk, curl and python3 (scripts/install-test-deps.sh installs them). Loopback only.
set -euo pipefail
BIN=${1:-target/release/wharf}
SECS=${2:-5}
ROUNDS=${3:-2}
WORK=$(mktemp -d /tmp/wharf-auth-bench.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_up() { for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$1/readyz" && return; sleep 0.1; done; echo "server on $1 did not start" >&2; exit 1; }

printf '{}' > "$WORK/cfg"
CFG=sha256:$(sha256sum "$WORK/cfg" | cut -d' ' -f1)
MANIFEST="{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"config\":{\"mediaType\":\"application/vnd.oci.empty.v1+json\",\"digest\":\"$CFG\",\"size\":2},\"layers\":[]}"

seed() { # URL [curl auth args...]
  local url=$1; shift
  curl -sf "$@" -X POST "$url/v2/bench/app/blobs/uploads/?digest=$CFG" --data-binary @"$WORK/cfg" -o /dev/null
  curl -sf "$@" -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' "$url/v2/bench/app/manifests/v1" -d "$MANIFEST" -o /dev/null
}

# Server without access control.
P1=$(port)
mkdir -p "$WORK/open" # serve refuses a missing --data-dir without --init (mkdir suits older binaries too)
"$BIN" serve --listen "127.0.0.1:$P1" --data-dir "$WORK/open" > "$WORK/open.log" 2>&1 &
wait_up "$P1"
seed "http://127.0.0.1:$P1"

# Server with access control.
mkdir -p "$WORK/auth"  # the CLI refuses a missing --data-dir (older binaries create it)
echo 'bench-password' | "$BIN" user add bench --data-dir "$WORK/auth" > /dev/null
"$BIN" rule add user:bench --repo 'bench/*' --actions pull,push --data-dir "$WORK/auth" > /dev/null
printf '[auth]\nanonymous_pull = ["bench/*"]\n' > "$WORK/auth.toml"
P2=$(port)
"$BIN" serve --listen "127.0.0.1:$P2" --data-dir "$WORK/auth" --config "$WORK/auth.toml" > "$WORK/auth.log" 2>&1 &
wait_up "$P2"
seed "http://127.0.0.1:$P2" -u bench:bench-password
tok() { curl -sf "$@" "http://127.0.0.1:$P2/token?service=wharf&scope=repository:bench/app:pull" | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])'; }
USER_TOKEN=$(tok -u bench:bench-password)
ANON_TOKEN=$(tok)
BASIC=$(printf 'bench:bench-password' | base64)

rps() { # URL [header]
  local out
  if [ -n "${2:-}" ]; then out=$(wrk -t2 -c64 -d"${SECS}s" -H "$2" "$1"); else out=$(wrk -t2 -c64 -d"${SECS}s" "$1"); fi
  if grep -q 'Non-2xx' <<<"$out"; then echo "non-2xx answers: $out" >&2; exit 1; fi
  awk '/Requests\/sec/ {print int($2)}' <<<"$out"
}
declare -A best
for _ in $(seq "$ROUNDS"); do
  for mode in no-auth anon-token user-token basic; do
    case $mode in
      no-auth) r=$(rps "http://127.0.0.1:$P1/v2/bench/app/manifests/v1") ;;
      anon-token) r=$(rps "http://127.0.0.1:$P2/v2/bench/app/manifests/v1" "Authorization: Bearer $ANON_TOKEN") ;;
      user-token) r=$(rps "http://127.0.0.1:$P2/v2/bench/app/manifests/v1" "Authorization: Bearer $USER_TOKEN") ;;
      basic) r=$(rps "http://127.0.0.1:$P2/v2/bench/app/manifests/v1" "Authorization: Basic $BASIC") ;;
    esac
    if [ "${best[$mode]:-0}" -lt "$r" ]; then best[$mode]=$r; fi
  done
done
printf '%-12s %10s %8s\n' mode req/s ratio
for mode in no-auth anon-token user-token basic; do
  python3 -c "import sys; print('%-12s %10d %8.2f' % ('$mode', ${best[$mode]}, ${best[$mode]} / ${best[no-auth]}))"
done
