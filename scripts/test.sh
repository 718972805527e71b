#!/usr/bin/env bash
# The whole test suite, as CI runs it (after .ci/run has installed the tools):
# host tests, the runtime built and linted for the device target, the `cuda`
# feature type-checked (so the GPU path never rots), the firmware linted, its
# defmt/RTT build linked, and the firmware linked against its 1 MiB / 256 KiB
# budget and booted under QEMU.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "firmware (release) for the hardware-in-the-loop tests under QEMU: the Poisson image, then the default"
(cd firmware \
    && DDIS_ARTIFACT=../models/poisson32.ddis cargo build --release \
    && cp target/thumbv7em-none-eabihf/release/ddis-firmware target/ddis-firmware-poisson \
    && cargo build --release)

step "host tests (workspace, including tests/tests/hil.rs on QEMU)"
cargo test --workspace

step "runtime for thumbv7em-none-eabihf, clippy -D warnings"
cargo build -p ddis-runtime --target thumbv7em-none-eabihf --release
cargo clippy -p ddis-runtime --target thumbv7em-none-eabihf -- -D warnings
cargo clippy -p ddis-runtime --all-targets -- -D warnings

step "trainer: clippy, and clippy of the cuda feature (the GPU tests included)"
cargo clippy -p ddis-trainer -p ddis-e2e --all-targets -- -D warnings
cargo clippy -p ddis-trainer --features cuda --all-targets -- -D warnings

step "firmware: clippy -D warnings; the defmt/RTT build for a real board links"
(cd firmware && cargo clippy --release -- -D warnings \
    && cargo clippy --release --features defmt -- -D warnings \
    && cargo build --release --features defmt)

step "firmware links within its memory budget and boots under QEMU (ends with the serving image)"
bash scripts/firmware-smoke.sh
