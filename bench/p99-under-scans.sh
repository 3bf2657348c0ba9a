#!/usr/bin/env bash
# Manifest GET latency while the server runs its big scans: does p99 stay flat while an audit
# query walks 100k events and while garbage collection marks 100k manifests? One or more Wharf
# binaries side by side (say, before and after a change), in one run.
#
#   bench/p99-under-scans.sh [EVENTS] [SECONDS] BINARY [BINARY...]
#
# For each binary: a fresh data directory with an admin user; EVENTS distinct manifests pushed
# (each push is one audit event and one manifest for the GC mark to walk; pushed with a bearer
# token over keep-alive connections by bench/push_many.py). Then wrk (2 threads, 8 connections,
# --latency) GETs one manifest for SECONDS in three phases:
#   idle    nothing else running
#   audit   a loop of GET /api/v1/audit?action=no-such-action (a full scan of every event)
#   gc      a loop of POST /api/v1/gc {"dry_run": true, "grace_seconds": 0} (a full mark)
# and prints p50/p99/max and req/s per phase, plus how many scans ran during the phase.
# Needs wrk, curl, python3. Loopback only. The machine is noisy: compare within a run.
set -euo pipefail
EVENTS=${1:-100000}
SECS=${2:-10}
shift 2 || true
[ $# -ge 1 ] || { echo "usage: $0 [EVENTS] [SECONDS] BINARY [BINARY...]" >&2; exit 2; }
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
WORK=$(mktemp -d /tmp/wharf-p99.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_up() { for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$1/readyz" && return; sleep 0.1; done; echo "server on $1 did not start" >&2; exit 1; }

# Runs "$@" in a loop until the file $WORK/stop appears; counts runs into $WORK/count.
loop() {
  local n=0
  while [ ! -e "$WORK/stop" ]; do "$@" > /dev/null; n=$((n + 1)); done
  echo "$n" > "$WORK/count"
}

phase() { # NAME URL TOKEN [loop command...]
  local name=$1 url=$2 token=$3; shift 3
  rm -f "$WORK/stop" "$WORK/count"
  local lp=""
  if [ $# -gt 0 ]; then loop "$@" & lp=$!; sleep 0.5; fi
  local out
  out=$(wrk -t2 -c8 -d"${SECS}s" --latency -H "Authorization: Bearer $token" "$url")
  touch "$WORK/stop"
  [ -n "$lp" ] && wait "$lp"
  if grep -q 'Non-2xx' <<<"$out"; then echo "non-2xx answers: $out" >&2; exit 1; fi
  local p50 p99 max rps scans
  p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
  p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
  max=$(awk '$1 == "Latency" {print $4; exit}' <<<"$out")
  rps=$(awk '/Requests\/sec/ {print int($2)}' <<<"$out")
  scans=$(cat "$WORK/count" 2>/dev/null || echo -)
  printf '%-28s %-6s %9s %9s %9s %8s %6s\n' "$BINNAME" "$name" "$p50" "$p99" "$max" "$rps" "$scans"
}

printf '%-28s %-6s %9s %9s %9s %8s %6s\n' binary phase p50 p99 max req/s scans
i=0
for bin in "$@"; do
  i=$((i + 1))
  BINNAME="$i:$(basename "$bin")"
  dir="$WORK/data$i"
  mkdir -p "$dir"  # the CLI refuses a missing --data-dir (older binaries create it)
  echo 'bench-password' | "$bin" user add bench --admin --data-dir "$dir" > /dev/null
  p=$(port)
  "$bin" serve --listen "127.0.0.1:$p" --data-dir "$dir" > "$WORK/server$i.log" 2>&1 &
  srv=$!
  wait_up "$p"
  u="http://127.0.0.1:$p"
  token=$(curl -sf -u bench:bench-password "$u/token?service=wharf&scope=repository:bench/app:pull,push" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
  start=$SECONDS
  python3 "$HERE/push_many.py" "$u" "$token" bench/app "$EVENTS" >&2
  echo "# $BINNAME: $EVENTS manifests pushed in $((SECONDS - start)) s" >&2
  t0=$(date +%s.%N)
  curl -sf -u bench:bench-password "$u/api/v1/audit?action=no-such-action&limit=1" -o /dev/null
  t1=$(date +%s.%N)
  curl -sf -u bench:bench-password -X POST -H 'Content-Type: application/json' \
    -d '{"dry_run": true, "grace_seconds": 0}' "$u/api/v1/gc" -o /dev/null
  t2=$(date +%s.%N)
  python3 -c "print('# $BINNAME: one audit scan %.2f s, one GC dry run %.2f s' % ($t1 - $t0, $t2 - $t1))" >&2
  url="$u/v2/bench/app/manifests/t0"
  phase idle "$url" "$token"
  phase audit "$url" "$token" curl -sf -u bench:bench-password "$u/api/v1/audit?action=no-such-action&limit=1"
  phase gc "$url" "$token" curl -sf -u bench:bench-password -X POST -H 'Content-Type: application/json' \
    -d '{"dry_run": true, "grace_seconds": 0}' "$u/api/v1/gc"
  kill "$srv"; wait "$srv" 2>/dev/null || true
done
