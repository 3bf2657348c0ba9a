#!/usr/bin/env bash
# Pull-through cache benchmark, one run, rounds interleaved (the machine is noisy: compare within
# a run, never across runs). The upstream is CNCF Distribution (Debian's docker-registry) on
# loopback; Wharf caches it as `upstream.test`.
#
#   bench/cache-pull.sh [WHARF_BINARY] [SIZE_MIB] [ROUNDS] [CONCURRENT]
#
# For each round a fresh random blob of SIZE_MIB is pushed to the upstream and to a local
# repository of Wharf, then:
#   ttfb_upstream   time to first byte of a GET straight from the upstream
#   ttfb_cold       time to first byte of the first GET through the cache (nothing cached yet)
#   pull_upstream   whole GET straight from the upstream, MB/s
#   pull_cold       whole first GET through the cache, MB/s (the cache fills while it streams)
#   pull_committing whole GET through the cache right after the cold one, while the fill's commit
#                   (fsync) runs: read from the upload, as the fill's followers read, MB/s
#   pull_warm       whole GET through the cache once cached and committed, MB/s
#   pull_local      whole GET of the same bytes from a local (pushed) repository of Wharf, MB/s
#   relay_plain     whole GET through bench/relay.py forwarding only (no disk, no hash), MB/s
#   relay_verify    the same relay hashing in a second thread while it forwards and holding the
#                   last byte until the digest matches: what verifying alone costs on this
#                   machine, the ceiling for a cold pull through any verifying cache
#   cpu_*           CPU seconds (user + system) of one whole GET: the upstream's for a direct
#                   pull; the upstream's and Wharf's for a cold pull through the cache
#   concurrent      CONCURRENT clients GET one uncached blob at once: upstream transfers counted
#                   from Distribution's access log (1 is the goal), and the slowest client's time
# Needs curl, python3, docker-registry (scripts/install-test-deps.sh installs them). Loopback only.
set -euo pipefail
BIN=${1:-target/release/wharf}
MIB=${2:-256}
ROUNDS=${3:-3}
CONC=${4:-8}
WORK=$(mktemp -d /tmp/wharf-cache-bench.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

. "$(dirname "$0")/lib.sh"

UP=$(port)
cat > "$WORK/up.yml" <<EOF
version: 0.1
log:
  level: info
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: $WORK/up
http:
  addr: 127.0.0.1:$UP
EOF
docker-registry serve "$WORK/up.yml" > "$WORK/up.log" 2>&1 &
UPID=$!
wait_up "http://127.0.0.1:$UP/v2/"

WP=$(port)
cat > "$WORK/wharf.toml" <<EOF
[[cache.upstream]]
host = "upstream.test"
url = "http://127.0.0.1:$UP"
EOF
mkdir -p "$WORK/wharf" # serve refuses a missing --data-dir without --init (mkdir suits older binaries too)
"$BIN" serve --listen "127.0.0.1:$WP" --data-dir "$WORK/wharf" --config "$WORK/wharf.toml" > "$WORK/wharf.log" 2>&1 &
WPID=$!
wait_up "http://127.0.0.1:$WP/readyz"
RP=$(port)
python3 "$(dirname "$0")/relay.py" "$RP" "$UP" plain > "$WORK/relay-plain.log" 2>&1 &
RV=$(port)
python3 "$(dirname "$0")/relay.py" "$RV" "$UP" hash > "$WORK/relay-verify.log" 2>&1 &
wait_up "http://127.0.0.1:$RP/v2/"
wait_up "http://127.0.0.1:$RV/v2/"
UPURL="http://127.0.0.1:$UP"
WURL="http://127.0.0.1:$WP"

push() { # URL REPO FILE DIGEST
  curl -sf -X POST "$1/v2/$2/blobs/uploads/" -D "$WORK/h" -o /dev/null
  local loc
  loc=$(grep -i '^location:' "$WORK/h" | tr -d '\r' | cut -d' ' -f2)
  case "$loc" in http*) ;; *) loc="$1$loc" ;; esac
  case "$loc" in *\?*) loc="$loc&digest=$4" ;; *) loc="$loc?digest=$4" ;; esac
  curl -sf -X PUT -H 'Content-Type: application/octet-stream' --data-binary @"$3" "$loc" -o /dev/null
}
# time_starttransfer and speed of one GET, as "TTFB_S MBPS".
get() { curl -sf -o /dev/null -w '%{time_starttransfer} %{speed_download}\n' "$1" | awk '{printf "%.4f %.1f\n", $1, $2/1e6}'; }

TICK=$(getconf CLK_TCK)
best() { sort -g | head -1; }
bestr() { sort -gr | head -1; }
declare -A R
for round in $(seq "$ROUNDS"); do
  head -c $((MIB * 1024 * 1024)) /dev/urandom > "$WORK/blob"
  D=sha256:$(sha256sum "$WORK/blob" | cut -d' ' -f1)
  push "$UPURL" bench/app "$WORK/blob" "$D"
  u0=$(cpu "$UPID")
  read -r t1 s1 < <(get "$UPURL/v2/bench/app/blobs/$D")
  u1=$(cpu "$UPID"); w1=$(cpu "$WPID")
  read -r t2 s2 < <(get "$WURL/v2/upstream.test/bench/app/blobs/$D")
  u2=$(cpu "$UPID"); w2=$(cpu "$WPID")
  R[cpu_upstream_direct]+="$(echo "scale=2; ($u1 - $u0) / $TICK" | bc) "
  R[cpu_cold_upstream]+="$(echo "scale=2; ($u2 - $u1) / $TICK" | bc) "
  R[cpu_cold_wharf]+="$(echo "scale=2; ($w2 - $w1) / $TICK" | bc) "
  # Straight after the cold pull the fill is still committing (fsync of the whole blob): a
  # second client then reads the upload as the fill's followers do. Once committed, the stored
  # blob is read (2 s is ample for 256 MiB here).
  read -r _ s7 < <(get "$WURL/v2/upstream.test/bench/app/blobs/$D")
  sleep 2
  read -r _ s3 < <(get "$WURL/v2/upstream.test/bench/app/blobs/$D")
  read -r _ s5 < <(get "http://127.0.0.1:$RP/v2/bench/app/blobs/$D")
  read -r _ s6 < <(get "http://127.0.0.1:$RV/v2/bench/app/blobs/$D")
  # The same bytes pushed to Wharf itself: a local repository (the blob is stored once).
  curl -sf -X POST "$WURL/v2/local/app/blobs/uploads/?mount=$D&from=upstream.test/bench/app" -o /dev/null
  read -r _ s4 < <(get "$WURL/v2/local/app/blobs/$D")
  R[ttfb_upstream]+="$t1 "; R[ttfb_cold]+="$t2 "; R[pull_upstream]+="$s1 "
  R[pull_cold]+="$s2 "; R[pull_warm]+="$s3 "; R[pull_local]+="$s4 "
  R[relay_plain]+="$s5 "; R[relay_verify]+="$s6 "; R[pull_committing]+="$s7 "

  # Concurrent cold pulls of a fresh blob.
  head -c $((MIB * 1024 * 1024)) /dev/urandom > "$WORK/blob2"
  D2=sha256:$(sha256sum "$WORK/blob2" | cut -d' ' -f1)
  push "$UPURL" bench/app "$WORK/blob2" "$D2"
  before=$(grep -c "GET /v2/bench/app/blobs/$D2" "$WORK/up.log" || true)
  start=$(date +%s.%N)
  for _ in $(seq "$CONC"); do curl -sf -o /dev/null "$WURL/v2/upstream.test/bench/app/blobs/$D2" & done
  wait $(jobs -p | tail -n "$CONC")
  end=$(date +%s.%N)
  after=$(grep -c "GET /v2/bench/app/blobs/$D2" "$WORK/up.log" || true)
  R[concurrent_transfers]+="$((after - before)) "
  R[concurrent_seconds]+="$(echo "$end - $start" | bc) "
done

echo "cache benchmark: ${MIB} MiB blobs, best of $ROUNDS rounds, $CONC concurrent clients"
printf '%-22s %12s\n' metric value
t_up=$(tr ' ' '\n' <<<"${R[ttfb_upstream]}" | grep . | best)
t_cold=$(tr ' ' '\n' <<<"${R[ttfb_cold]}" | grep . | best)
printf '%-22s %10.1f ms\n' ttfb_upstream "$(echo "$t_up * 1000" | bc)"
printf '%-22s %10.1f ms  (+%.1f ms)\n' ttfb_cold "$(echo "$t_cold * 1000" | bc)" "$(echo "($t_cold - $t_up) * 1000" | bc)"
declare -A B
for k in pull_upstream pull_cold pull_committing pull_warm pull_local relay_plain relay_verify; do
  B[$k]=$(tr ' ' '\n' <<<"${R[$k]}" | grep . | bestr)
  printf '%-22s %10.1f MB/s\n' "$k" "${B[$k]}"
done
# Ratios of the best rounds: Wharf's cold pull, and the bare verifying relay, against a direct pull.
for k in pull_cold relay_verify; do
  printf '%-22s %10.2fx\n' "${k}_ratio" "$(echo "scale=4; ${B[$k]} / ${B[pull_upstream]}" | bc)"
done
# CPU seconds of one whole GET (the last round's): what a cold pull costs beyond a direct one.
for k in cpu_upstream_direct cpu_cold_upstream cpu_cold_wharf; do
  printf '%-22s %10s s\n' "$k" "$(tr ' ' '\n' <<<"${R[$k]}" | grep . | tail -1)"
done
printf '%-22s %12s\n' concurrent_transfers "$(tr ' ' '\n' <<<"${R[concurrent_transfers]}" | grep . | sort -g | tail -1) (max over rounds)"
printf '%-22s %10.2f s\n' concurrent_seconds "$(tr ' ' '\n' <<<"${R[concurrent_seconds]}" | grep . | best)"
