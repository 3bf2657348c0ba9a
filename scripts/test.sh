#!/usr/bin/env bash
# The whole test suite, as the README shows it and as CI runs it (through .ci/run).
# 1. installs the tools the end-to-end tests drive, 2. checks formatting and lints,
# 3. runs the whole test suite (cargo test --workspace --profile ci: release optimisation
# without LTO or debug info, so the ~20 test binaries link in seconds, not minutes). Usage:
#        scripts/test.sh
# Honours CARGO_TARGET_DIR if set (cargo does).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

step() { printf '\n=== %s (%ss) ===\n' "$*" "$SECONDS"; }

step "install test dependencies"
bash scripts/install-test-deps.sh </dev/null

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo test --workspace --profile ci --no-fail-fast"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace --profile ci --no-fail-fast 2>&1 </dev/null | tee "$log"
status=${PIPESTATUS[0]}
set -e

# cargo's last "test result" line is the doc-tests' (often 0 tests): end with the total.
step "done"
awk '/^test result:/ {
       for (i = 2; i <= NF; i++) {
         if ($i == "passed;") p += $(i - 1)
         if ($i == "failed;") f += $(i - 1)
         if ($i == "ignored;") s += $(i - 1)
       }
     }
     END { printf "total: %d passed, %d failed, %d skipped\n", p, f, s }' "$log"
exit "$status"
