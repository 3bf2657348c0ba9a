#!/usr/bin/env bash
# Two Wharf binaries side by side on a cold pull through the pull-through cache: the wall-clock
# speed of the first GET and the CPU that Wharf spends on the whole fill (receive, write, hash,
# read back, send, and the commit's fsync). One upstream (CNCF Distribution, Debian's
# docker-registry) on loopback serves both; rounds alternate between the binaries (the machine is
# noisy: compare within a run only).
#
#   bench/ab-cache-fill.sh OLD_BINARY NEW_BINARY [SIZE_MIB] [ROUNDS]
#
# Each round pushes a fresh random blob to the upstream, GETs it directly, then through each
# Wharf once (cold), and reads the server's CPU time (user + system) before the GET and one second
# after it, when the commit is done. Prints every round, new/old for both, and the median of each
# column (read the ratios: the machine slows every fill down as the rounds go on, both sides alike). Needs
# curl, python3, docker-registry (scripts/install-test-deps.sh). Loopback only.
set -euo pipefail
OLD=${1:?old binary}
NEW=${2:?new binary}
MIB=${3:-256}
ROUNDS=${4:-5}
WORK=$(mktemp -d /tmp/wharf-ab-fill.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

. "$(dirname "$0")/lib.sh"
TICK=$(getconf CLK_TCK)

UP=$(port)
cat > "$WORK/up.yml" <<Y
version: 0.1
storage:
  filesystem:
    rootdirectory: $WORK/up
http:
  addr: 127.0.0.1:$UP
Y
docker-registry serve "$WORK/up.yml" > "$WORK/up.log" 2>&1 &
wait_up "http://127.0.0.1:$UP/v2/"

declare -A PORT PID
for side in old new; do
  bin=$OLD; [ "$side" = new ] && bin=$NEW
  PORT[$side]=$(port)
  mkdir -p "$WORK/$side"
  printf '[[cache.upstream]]\nhost = "upstream.test"\nurl = "http://127.0.0.1:%s"\n' "$UP" > "$WORK/$side.toml"
  "$bin" serve --listen "127.0.0.1:${PORT[$side]}" --data-dir "$WORK/$side" --config "$WORK/$side.toml" \
    > "$WORK/$side.log" 2>&1 &
  PID[$side]=$!
  wait_up "http://127.0.0.1:${PORT[$side]}/readyz"
done

speed() { curl -sf -o /dev/null -w '%{speed_download}' "$1" | awk '{printf "%.0f", $1 / 1e6}'; }
FMT='%-6s %10s %10s %10s %10s %10s %10s %10s\n'
printf "$FMT" round direct_MBps old_MBps new_MBps old_cpu_s new_cpu_s speed_n/o cpu_n/o
declare -A COL
for round in $(seq "$ROUNDS"); do
  head -c $((MIB * 1024 * 1024)) /dev/urandom > "$WORK/blob"
  D=sha256:$(sha256sum "$WORK/blob" | cut -d' ' -f1)
  curl -sf -X POST "http://127.0.0.1:$UP/v2/bench/app/blobs/uploads/" -D "$WORK/h" -o /dev/null
  loc=$(grep -i '^location:' "$WORK/h" | tr -d '\r' | cut -d' ' -f2)
  curl -sf -X PUT -H 'Content-Type: application/octet-stream' --data-binary @"$WORK/blob" \
    "$loc&digest=$D" -o /dev/null
  rm "$WORK/blob"
  # Earlier rounds' writes still in the page cache slow every later fill down (writeback): start
  # each round with them on disk.
  sync
  row=("$round" "$(speed "http://127.0.0.1:$UP/v2/bench/app/blobs/$D")")
  declare -A S C
  # Alternate which side goes first, so neither always meets a warmer page cache.
  order="old new"; [ $((round % 2)) = 0 ] && order="new old"
  for side in $order; do
    c0=$(cpu "${PID[$side]}")
    S[$side]=$(speed "http://127.0.0.1:${PORT[$side]}/v2/upstream.test/bench/app/blobs/$D")
    sleep 1
    sync
    C[$side]=$(echo "scale=2; ($(cpu "${PID[$side]}") - $c0) / $TICK" | bc)
  done
  row+=("${S[old]}" "${S[new]}" "${C[old]}" "${C[new]}")
  row+=("$(echo "scale=2; ${S[new]} / ${S[old]}" | bc)" "$(echo "scale=2; ${C[new]} / ${C[old]}" | bc)")
  for i in 1 2 3 4 5 6 7; do COL[$i]+="${row[$i]} "; done
  printf "$FMT" "${row[@]}"
done
med() { tr ' ' '\n' <<<"$1" | grep . | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
printf "$FMT" median "$(med "${COL[1]}")" "$(med "${COL[2]}")" "$(med "${COL[3]}")" \
  "$(med "${COL[4]}")" "$(med "${COL[5]}")" "$(med "${COL[6]}")" "$(med "${COL[7]}")"
