#!/usr/bin/env bash
# Boots the firmware under QEMU (mps2-an386, Cortex-M4F): a boot-only build
# must log its banner (artifact checked, memory budget) and exit 0, with the
# default Darcy artifact and with DDIS_ARTIFACT=../models/poisson32.ddis; a
# build that panics at boot must exit with the firmware's panic code (2),
# never hang.
set -euo pipefail
cd "$(dirname "$0")/../firmware"

run() {
    timeout 60 qemu-system-arm -machine mps2-an386 -nographic \
        -semihosting-config enable=on,target=native \
        -kernel target/thumbv7em-none-eabihf/release/ddis-firmware
}

cargo build --release --features boot-only
out=$(run) || { echo "firmware exited with $? (expected 0): $out"; exit 1; }
grep -q "ddis firmware" <<<"$out" || { echo "no banner in: $out"; exit 1; }
echo "boot: ok ($out)"

# The other shipped artifact, chosen at build time, links and boots too.
DDIS_ARTIFACT=../models/poisson32.ddis cargo build --release --features boot-only
out=$(run) || { echo "poisson firmware exited with $? (expected 0): $out"; exit 1; }
grep -q "poisson artifact" <<<"$out" || { echo "no poisson banner in: $out"; exit 1; }
echo "boot with DDIS_ARTIFACT=../models/poisson32.ddis: ok"

cargo build --release --features panic-at-boot
set +e
run >/dev/null
rc=$?
set -e
cargo build --release   # leave the serving image in place for tests/tests/hil.rs
llvm_size=$(ls ~/.rustup/toolchains/*/lib/rustlib/*/bin/llvm-size 2>/dev/null | head -1 || true)
[ -n "$llvm_size" ] && "$llvm_size" target/thumbv7em-none-eabihf/release/ddis-firmware
[ "$rc" -eq 2 ] || { echo "panicking firmware exited with $rc (expected 2)"; exit 1; }
echo "panic exit code: ok (2)"
