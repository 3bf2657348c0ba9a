#!/usr/bin/env bash
# Measures `wharf backup` (through the server, and on the stopped server's data directory, copied
# and hard-linked) and `wharf restore` on N blobs of SIZE_MIB MiB of random data.
# Usage: bench/backup.sh [WHARF_BINARY] (default: target/release/wharf); env N (16), SIZE_MIB (64).
set -euo pipefail
WHARF=${1:-target/release/wharf}
N=${N:-16}
SIZE_MIB=${SIZE_MIB:-64}
PORT=${PORT:-5077}
W=$(mktemp -d)
trap 'kill $PID 2>/dev/null || true; rm -rf "$W"' EXIT
mkdir -p "$W/src" "$W/data" # serve refuses a missing --data-dir without --init (mkdir suits older binaries too)
"$WHARF" serve --listen 127.0.0.1:$PORT --data-dir "$W/data" >"$W/server.log" 2>&1 &
PID=$!
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$PORT/v2/" >/dev/null && break; sleep 0.1; done
t0=$(date +%s.%N)
for i in $(seq "$N"); do
  f="$W/src/$i"
  head -c $((SIZE_MIB << 20)) /dev/urandom >"$f"
  d="sha256:$(sha256sum "$f" | cut -d' ' -f1)"
  loc=$(curl -fsS -o /dev/null -D - -X POST "http://127.0.0.1:$PORT/v2/bench/blobs/uploads/" | tr -d '\r' | sed -n 's/^[Ll]ocation: //p')
  curl -fsS -o /dev/null -X PUT -H 'Content-Type: application/octet-stream' --data-binary @"$f" "http://127.0.0.1:$PORT$loc?digest=$d"
  rm "$f"
done
echo "pushed $N x $SIZE_MIB MiB in $(echo "$(date +%s.%N) - $t0" | bc) s"
timed() { local t; t=$(date +%s.%N); "$@" >/dev/null; echo "$(echo "$(date +%s.%N) - $t" | bc)"; }
MIB=$((N * SIZE_MIB))
s=$(timed "$WHARF" backup --quiet --server "http://127.0.0.1:$PORT" --to "$W/remote")
echo "backup --server:        ${s}s  $(echo "$MIB / $s" | bc) MiB/s"
kill $PID; wait $PID 2>/dev/null || true
s=$(timed "$WHARF" backup --quiet --data-dir "$W/data" --to "$W/local")
echo "backup --data-dir:      ${s}s  $(echo "$MIB / $s" | bc) MiB/s"
s=$(timed "$WHARF" backup --quiet --hard-link --data-dir "$W/data" --to "$W/linked")
echo "backup --hard-link:     ${s}s  $(echo "$MIB / $s" | bc) MiB/s (verification reads)"
s=$(timed "$WHARF" restore --quiet --from "$W/remote" --data-dir "$W/restored")
echo "restore:                ${s}s  $(echo "$MIB / $s" | bc) MiB/s"
