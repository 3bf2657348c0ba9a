#!/usr/bin/env bash
# Builds every cargo-fuzz target and runs each one for SECONDS (default 180), one after the
# other, then prints per target: executions, executions per second, corpus size, coverage
# (libFuzzer's cov/ft) and crashes.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# Works on the stable toolchain: `--sanitizer none` keeps cargo-fuzz from passing
# `-Zsanitizer=address` (nightly only); libFuzzer's coverage instrumentation
# (`-Cpasses=sancov-module` and `-Cllvm-args=-sanitizer-coverage-*`) is stable. Panics, debug
# assertions and overflow checks (`-a`) are the crash oracle; there is no AddressSanitizer, which
# the crates (no unsafe code) do not need.
#
# Each target's committed seeds (fuzz/corpus/TARGET, read-only here) are merged with a working
# corpus (fuzz/work/TARGET, git-ignored, kept between runs) where libFuzzer writes what it
# finds. Crashing inputs land in fuzz/artifacts/TARGET/: add them to the seeds (with a
# descriptive name) once fixed, so `cargo test` replays them.
#
# CARGO_TARGET_DIR (default fuzz/target) is where the instrumented build goes. Targets run one at
# a time on one core (no -jobs/-workers): the figures are per core.
set -euo pipefail

secs=${1:-180}
shift || true
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

command -v cargo-fuzz >/dev/null || {
	echo "cargo-fuzz is missing: cargo install cargo-fuzz" >&2
	exit 2
}

targets=("$@")
explicit=$#
if [ ${#targets[@]} -eq 0 ]; then
	mapfile -t targets < <(cargo fuzz list --fuzz-dir fuzz)
fi

target_dir=${CARGO_TARGET_DIR:-$root/fuzz/target}
flags=(--fuzz-dir fuzz --sanitizer none --release --debug-assertions --target-dir "$target_dir")

if [ "$explicit" -eq 0 ]; then
	cargo fuzz build "${flags[@]}"
else
	for t in "${targets[@]}"; do cargo fuzz build "${flags[@]}" "$t"; done
fi

summary=()
status=0
for t in "${targets[@]}"; do
	mkdir -p "fuzz/work/$t" "fuzz/artifacts/$t" "fuzz/corpus/$t"
	log=$(mktemp)
	echo "== $t: ${secs}s"
	set +e
	cargo fuzz run "${flags[@]}" "$t" "fuzz/work/$t" "fuzz/corpus/$t" -- \
		-max_total_time="$secs" -print_final_stats=1 -rss_limit_mb=2048 -timeout=10 \
		-artifact_prefix="fuzz/artifacts/$t/" >"$log" 2>&1
	rc=$?
	set -e
	# libFuzzer prints its progress lines as `#N ... cov: C ft: F corp: K/S exec/s: E`.
	last=$(grep -E '^#[0-9]+' "$log" | tail -n 1 || true)
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
	rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
	cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
	ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
	corp=$(sed -n 's/.* corp: \([0-9]*\/[0-9]*[a-zA-Z]*\).*/\1/p' <<<"$last")
	crashes=$(find "fuzz/artifacts/$t" -type f | wc -l)
	if [ "$rc" -ne 0 ]; then
		status=1
		grep -E 'panicked at|^==[0-9]+== ERROR|deadly signal|Test unit written to' "$log" | head -n 5
	fi
	summary+=("$(printf '%-18s execs %-10s exec/s %-7s corpus %-10s cov %-6s ft %-6s crashes %s' \
		"$t" "${execs:-?}" "${rate:-?}" "${corp:-?}" "${cov:-?}" "${ft:-?}" "$crashes")")
	rm -f "$log"
done

echo
printf '%s\n' "${summary[@]}"
exit "$status"
