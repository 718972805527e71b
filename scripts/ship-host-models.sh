#!/usr/bin/env bash
# Copies the final f32 weights of the default host models from their run
# folders (trained by the commands in models/host/README.md) into
# models/host/<pde>32-<model>/: config.json, model.bin (weights only, no
# optimiser state) and summary.json. Checkpoints, splits and loss curves
# stay in runs/ and are never committed.
set -euo pipefail
cd "$(dirname "$0")/.."

ship() {
    local run="runs/$1" dest="models/host/$2"
    for f in config.json model.bin summary.json; do
        [[ -f "$run/$f" ]] || { echo "error: $run/$f missing: train $1 first (models/host/README.md)" >&2; exit 1; }
    done
    rm -rf "$dest"
    mkdir -p "$dest"
    cp "$run/config.json" "$run/model.bin" "$run/summary.json" "$dest/"
    printf '%-28s %9d bytes\n' "$dest" "$(stat -c %s "$dest/model.bin")"
}

ship prior-device      darcy32-prior
ship op-device-p100    darcy32-op-p100
ship op-device-p1      darcy32-op-p1
ship poisson-prior     poisson32-prior
ship poisson-op-p100   poisson32-op-p100
ship poisson-op-p1     poisson32-op-p1
ship joint-unet-p100-s1 darcy32-joint-unet-p100
du -sh models/host
