#!/usr/bin/env bash
# Two Wharf binaries side by side (say, before and after a change) on the small-request hot
# paths, in one run, rounds interleaved (the machine is noisy: compare within a run only).
#
#   bench/ab-small-get.sh OLD_BINARY NEW_BINARY [SECONDS] [ROUNDS]
#
# OLD_CONFIG / NEW_CONFIG (environment, optional): a wharf.toml for that side, to compare two
# settings of one binary (say, `[log] access = false` against the default).
#
# Each binary serves its own fresh data directory with access control off; wrk runs 64
# connections against GET of a manifest by tag and GET of a 2 KiB blob. Prints the best req/s of
# each and the ratio new/old. Needs wrk, curl, python3. Loopback only.
set -euo pipefail
OLD=${1:?old binary}
NEW=${2:?new binary}
SECS=${3:-5}
ROUNDS=${4:-3}
WORK=$(mktemp -d /tmp/wharf-ab.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_up() { for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$1/readyz" && return; sleep 0.1; done; echo "server on $1 did not start" >&2; exit 1; }

head -c 2048 /dev/urandom > "$WORK/blob"
BLOB=sha256:$(sha256sum "$WORK/blob" | cut -d' ' -f1)
printf '{}' > "$WORK/cfg"
CFG=sha256:$(sha256sum "$WORK/cfg" | cut -d' ' -f1)
MANIFEST="{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"config\":{\"mediaType\":\"application/vnd.oci.empty.v1+json\",\"digest\":\"$CFG\",\"size\":2},\"layers\":[{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\",\"digest\":\"$BLOB\",\"size\":2048}]}"

declare -A PORT
for side in old new; do
  bin=$OLD; cfg=${OLD_CONFIG:-}
  if [ "$side" = new ]; then bin=$NEW; cfg=${NEW_CONFIG:-}; fi
  p=$(port)
  mkdir -p "$WORK/$side" # serve refuses a missing --data-dir without --init (mkdir suits older binaries too)
  "$bin" serve ${cfg:+--config "$cfg"} --listen "127.0.0.1:$p" --data-dir "$WORK/$side" > "$WORK/$side.log" 2>&1 &
  wait_up "$p"
  u="http://127.0.0.1:$p"
  curl -sf -X POST "$u/v2/ab/app/blobs/uploads/?digest=$CFG" --data-binary @"$WORK/cfg" -o /dev/null
  curl -sf -X POST "$u/v2/ab/app/blobs/uploads/?digest=$BLOB" --data-binary @"$WORK/blob" -o /dev/null
  curl -sf -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' "$u/v2/ab/app/manifests/v1" -d "$MANIFEST" -o /dev/null
  PORT[$side]=$p
done

rps() {
  local out
  out=$(wrk -t2 -c64 -d"${SECS}s" "$1")
  if grep -q 'Non-2xx' <<<"$out"; then echo "non-2xx answers: $out" >&2; exit 1; fi
  awk '/Requests\/sec/ {print int($2)}' <<<"$out"
}
declare -A best
for _ in $(seq "$ROUNDS"); do
  for what in manifest blob; do
    for side in old new; do
      path=/v2/ab/app/manifests/v1; [ "$what" = blob ] && path=/v2/ab/app/blobs/$BLOB
      r=$(rps "http://127.0.0.1:${PORT[$side]}$path")
      k=$what-$side
      if [ "${best[$k]:-0}" -lt "$r" ]; then best[$k]=$r; fi
    done
  done
done
printf '%-10s %10s %10s %7s\n' figure old new ratio
for what in manifest blob; do
  python3 -c "print('%-10s %10d %10d %7.2f' % ('$what', ${best[$what-old]}, ${best[$what-new]}, ${best[$what-new]} / ${best[$what-old]}))"
done
