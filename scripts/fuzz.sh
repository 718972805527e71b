#!/usr/bin/env bash
# The long runs of the seeded fuzz loops over the device's inputs (artifact
# parser, deframer, request decoding, request validation; runtime/src/
# tests_fuzz.rs and tests.rs): the same loops the test suite runs with a
# few thousand cases, here with CASES of each (default 1 000 000), in
# release. Each loop prints its counts; docs/results.md records a run.
#
#   scripts/fuzz.sh            # 1 M cases per loop
#   scripts/fuzz.sh 200000     # fewer
#
# With cargo-fuzz and a nightly toolchain, runtime/fuzz/ holds the same
# targets for libFuzzer (coverage-guided): see runtime/fuzz/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
CASES="${1:-1000000}"
DDIS_FUZZ_CASES="$CASES" cargo test --release -p ddis-runtime --lib fuzz_ -- --nocapture --test-threads 1
