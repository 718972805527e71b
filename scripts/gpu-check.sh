#!/usr/bin/env bash
# One short run that shows whether `--backend cuda` works on this machine
# (issue 16). Needs an NVIDIA GPU, its driver and NVRTC (a CUDA toolkit).
#
#   bash scripts/gpu-check.sh            # everything, about 10 minutes
#
# What it does, each step printed with PASS / FAIL:
#   1. the libraries: nvidia-smi lists a GPU, libcuda and libnvrtc load;
#   2. builds ddis with --features cuda;
#   3. trains the surrogate and the prior 200 steps at 32 x 32 on the GPU,
#      then the same on the CPU, and compares the final training loss
#      (GPU_LOSS_REL, TF32 matmuls: 2e-3 per step compounds, so 10 %);
#   4. kills a GPU run at step 100 and resumes it to step 200;
#   5. steps/s at 64 x 64 for both presets (surrogate, 50 steps);
#   6. loads the GPU-trained surrogate on the CPU (`ddis eval-operator`) and
#      prints its error beside the GPU's own test figure (not yet compared:
#      eval-operator scores every sample, the summary the test split).
#
# Not covered yet (issue 16, item 4): burn's `fusion` and `autotune` in the
# `cuda` feature (and steps/s with and without them); per-tensor
# comparisons of the forward pass, loss, guidance gradient and one Adam step
# from CPU-initialised weights; a device index on the commands; the
# inference commands (reconstruct, eval, eval-operator) on the GPU; CUDA's
# own error message when the device does not start.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
WORK="${GPU_CHECK_DIR:-$(mktemp -d)}"
GPU_LOSS_REL=0.10
FAILED=0
pass() { echo "PASS  $*"; }
fail() { echo "FAIL  $*"; FAILED=1; }

# 1. libraries ------------------------------------------------------------------
if nvidia-smi -L 2>/dev/null | grep -q GPU; then pass "nvidia-smi: $(nvidia-smi -L | head -1)"; else fail "nvidia-smi lists no GPU"; fi
for lib in libcuda.so libnvrtc.so; do
  if ldconfig -p 2>/dev/null | grep -q "$lib" || compgen -G "/usr/local/cuda*/lib64/$lib*" > /dev/null; then
    pass "$lib found"
  else
    fail "$lib not found (driver: libcuda; CUDA toolkit: libnvrtc; add its lib64 folder to LD_LIBRARY_PATH)"
  fi
done

# 2. build ----------------------------------------------------------------------
if cargo build --release -p ddis-trainer --features cuda -q; then pass "cargo build --features cuda"; else fail "cargo build --features cuda"; exit 1; fi
DDIS="$(cargo metadata -q --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/ddis"

# 3. 200 steps on each backend --------------------------------------------------
"$DDIS" --quiet data gen --pde darcy --res 32 --count 1200 --seed 0 --out "$WORK/d32" || fail "data gen 32"
"$DDIS" --quiet data gen --pde darcy --res 64 --count 200 --seed 0 --out "$WORK/d64" || fail "data gen 64"
last_loss() { tail -1 "$1/loss.csv" | cut -d, -f2; }
for kind in operator prior; do
  extra=(); [ "$kind" = operator ] && extra=(--paired-fraction 1.0)
  for be in cuda ndarray; do
    if "$DDIS" --quiet train "$kind" --data "$WORK/d32" --out "$WORK/$kind-$be" --size device --steps 200 \
        --batch 16 --checkpoint-every 100 --backend "$be" "${extra[@]}" 2> "$WORK/$kind-$be.err"; then
      pass "train $kind --backend $be: loss $(last_loss "$WORK/$kind-$be")"
    else
      fail "train $kind --backend $be: $(tail -1 "$WORK/$kind-$be.err")"
    fi
  done
  g="$(last_loss "$WORK/$kind-cuda" 2>/dev/null)"; c="$(last_loss "$WORK/$kind-ndarray" 2>/dev/null)"
  if python3 -c "import sys; g,c=float('$g'),float('$c'); sys.exit(abs(g-c) > $GPU_LOSS_REL*abs(c))" 2>/dev/null; then
    pass "$kind: GPU loss $g vs CPU $c (within $GPU_LOSS_REL)"
  else
    fail "$kind: GPU loss $g vs CPU $c"
  fi
done

# 4. kill and resume ------------------------------------------------------------
"$DDIS" --quiet train operator --data "$WORK/d32" --out "$WORK/resumed" --size device --steps 200 --batch 16 \
  --checkpoint-every 100 --paired-fraction 1.0 --backend cuda --halt-after 100 2> /dev/null
if "$DDIS" --quiet train operator --data "$WORK/d32" --out "$WORK/resumed" --size device --steps 200 --batch 16 \
    --checkpoint-every 100 --paired-fraction 1.0 --backend cuda --resume 2> "$WORK/resumed.err"; then
  pass "kill at 100, resume to 200: loss $(last_loss "$WORK/resumed") (uninterrupted: $(last_loss "$WORK/operator-cuda"))"
else
  fail "resume: $(tail -1 "$WORK/resumed.err")"
fi

# 5. steps/s at 64 x 64 ---------------------------------------------------------
for size in device host; do
  out="$WORK/speed-$size"
  if "$DDIS" --quiet train operator --data "$WORK/d64" --out "$out" --size "$size" --steps 50 --batch 16 \
      --checkpoint-every 50 --paired-fraction 1.0 --backend cuda 2> /dev/null; then
    secs="$(python3 -c "import json; print(json.load(open('$out/summary.json'))['train_seconds'])")"
    pass "64 x 64, $size preset: $(python3 -c "print(f'{50 / $secs:.1f}')") steps/s"
  else
    fail "64 x 64, $size preset"
  fi
done

# 6. the GPU-trained surrogate on the CPU ----------------------------------------
if [ -f "$WORK/operator-cuda/summary.json" ]; then
  gpu="$(python3 -c "import json; print(json.load(open('$WORK/operator-cuda/summary.json'))['test_rel_l2'])")"
  cpu="$("$DDIS" eval-operator --operator "$WORK/operator-cuda" --data "$WORK/d32" 2>/dev/null | grep -oE '[0-9.]+(e-?[0-9]+)? *%?' | head -1)"
  echo "      GPU summary test rel. L2 $gpu; CPU eval-operator on all of d32: $cpu (all samples, not only the test split)"
fi

echo "work folder: $WORK"
exit "$FAILED"
