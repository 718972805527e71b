#!/usr/bin/env bash
# The whole test suite, as CI runs it (after .ci/run has installed the tools):
# host tests, the runtime built and linted for the device target, the `cuda`
# feature type-checked (so the GPU path never rots), the firmware linted, its
# defmt/RTT build linked, its defmt build's log under QEMU decoded and checked
# against a snapshot, and the firmware linked against its 1 MiB / 256 KiB
# budget and booted under QEMU.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "firmware (release) for the tests under QEMU: the Poisson image, the defmt-semihosting images (boot log, panic), then the default"
elf=target/thumbv7em-none-eabihf/release/ddis-firmware
(cd firmware \
    && DDIS_ARTIFACT=../models/poisson32.ddis cargo build --release \
    && cp "$elf" target/ddis-firmware-poisson \
    && cargo build --release --features defmt-semihosting,boot-only \
    && cp "$elf" target/ddis-firmware-defmt-boot \
    && cargo build --release --features defmt-semihosting,panic-at-boot \
    && cp "$elf" target/ddis-firmware-defmt-panic \
    && cargo build --release)

step "host tests (workspace, including tests/tests/hil.rs on QEMU)"
cargo test --workspace

step "the defmt build's log under QEMU, decoded against its ELF and checked against tests/snapshots (tests/defmt-log, its own workspace)"
cargo clippy --manifest-path tests/defmt-log/Cargo.toml --all-targets -- -D warnings
cargo test --manifest-path tests/defmt-log/Cargo.toml

step "runtime for thumbv7em-none-eabihf, clippy -D warnings"
cargo build -p ddis-runtime --target thumbv7em-none-eabihf --release
cargo clippy -p ddis-runtime --target thumbv7em-none-eabihf -- -D warnings
cargo clippy -p ddis-runtime --all-targets -- -D warnings

step "trainer: clippy, and clippy of the cuda feature (the GPU tests included)"
cargo clippy -p ddis-trainer -p ddis-e2e --all-targets -- -D warnings
cargo clippy -p ddis-trainer --features cuda --all-targets -- -D warnings

step "firmware: clippy -D warnings (semihosting, defmt/RTT, defmt-semihosting); the defmt/RTT build for a real board links"
(cd firmware && cargo clippy --release -- -D warnings \
    && cargo clippy --release --features defmt -- -D warnings \
    && cargo clippy --release --features defmt-semihosting -- -D warnings \
    && cargo build --release --features defmt)

step "firmware links within its memory budget and boots under QEMU (ends with the serving image)"
bash scripts/firmware-smoke.sh
