#!/usr/bin/env bash
# Installs what the test suite needs on a fresh machine (Debian, rustup):
# QEMU for the firmware tests, the Cortex-M4F target, clippy and llvm-tools,
# and flip-link, the firmware's linker.
set -euo pipefail

# Debian's qemu-system-arm models the MPS2 boards. Installing it may remove
# qemu-utils, a packaging conflict that does not concern us.
if ! command -v qemu-system-arm >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    sudo_cmd=""
    [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    $sudo_cmd apt-get install -y -qq qemu-system-arm
fi

rustup target add thumbv7em-none-eabihf
rustup component add clippy rustfmt llvm-tools

# The firmware links through flip-link (firmware/.cargo/config.toml): the
# stack below the statics, so an overflow faults instead of corrupting them.
command -v flip-link >/dev/null || cargo install --locked flip-link
