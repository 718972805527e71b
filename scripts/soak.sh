#!/usr/bin/env bash
# The long soak of the firmware under QEMU: the in-suite test
# `soak_mixed_requests_all_answered_no_reset` (tests/tests/hil.rs) with more
# rounds. Each round sends 22 requests back to back: a valid reconstruction
# compared bit for bit with the host runtime, cancels before and during
# runs, a request during a run (Busy), seven hostile frames, a burst of six
# pings in one write, an idle Cancel and Info. The last line it prints
# holds the counts (docs/results.md records them).
#
#   bash scripts/soak.sh            # 25 rounds, 550 requests
#   bash scripts/soak.sh 100        # 100 rounds
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-25}
(cd firmware && cargo build --release)
DDIS_SOAK_ROUNDS=$rounds cargo test -p ddis-e2e --test hil soak_ -- --nocapture 2>&1 | tee /dev/stderr | grep '^soak:'
