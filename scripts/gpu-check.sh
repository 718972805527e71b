#!/usr/bin/env bash
# The one run that proves `--backend cuda` on a machine with an NVIDIA GPU
# (issue 16). About 5-8 minutes on one H200 with 16 cores, most of it the
# release build; on a machine without a usable GPU it stops in seconds,
# before building, saying what is missing.
#
#   bash scripts/gpu-check.sh              # GPU 0
#   bash scripts/gpu-check.sh --gpu 1      # another GPU
#   GPU_CHECK_DIR=/tmp/gc bash scripts/gpu-check.sh   # keep the work folder there
#
# Each check prints one PASS or FAIL line; the exit status is 1 if any
# failed. At the end a Markdown block holds every figure, ready to paste
# into docs/results.md.
#
#   1. the GPU and the libraries: nvidia-smi lists the GPU; libcuda (the
#      driver) and libnvrtc (NVRTC, CUDA's run-time compiler, part of the
#      toolkit) load;
#   2. builds ddis and the GPU comparison tests with `--features cuda`
#      (burn-cuda with fusion and autotuning);
#   3. CPU against GPU from the same CPU-drawn weights, fused and unfused
#      (`cargo test --features cuda --test gpu -- --ignored`): forward
#      pass, loss, weight gradients, one guidance gradient and one Adam
#      step, each within GPU_TOL (relative L2 difference);
#   4. trains the surrogate and the prior 200 steps at 32 x 32 on the GPU
#      and on the CPU (the GPU run draws its weights on the CPU, and both
#      see the same batches), and compares the last training loss
#      (GPU_LOSS_REL);
#   5. stops a GPU run at step 100 as if killed (`--halt-after`) and
#      resumes it to 200: same loss as the uninterrupted GPU run;
#   6. steps/s at 64 x 64, surrogate and prior, `--size device` and
#      `--size host`, with and without kernel fusion (steps 10 to 50 of 60,
#      past the kernels' compilation and autotuning);
#   7. loads the GPU-trained surrogate on the CPU and reproduces its test
#      error (`ddis eval-operator --test-split`, within GPU_TOL), and runs
#      the inference commands on the GPU: eval-operator and reconstruct.
set -uo pipefail

# The relative L2 difference allowed between a GPU and a CPU result of one
# operation: TF32 matrix products keep 10 mantissa bits (about 1e-3 each).
GPU_TOL=2e-3
# The two 200-step runs share batches but not exactly their initial
# weights (burn draws them lazily, in the order first used) and compound
# rounding: their last logged training loss (a mean over the last 2 steps)
# may differ by this fraction.
GPU_LOSS_REL=0.10

GPU=0
while [ $# -gt 0 ]; do
  case "$1" in
    --gpu) GPU="$2"; shift 2 ;;
    *) echo "usage: bash scripts/gpu-check.sh [--gpu INDEX]" >&2; exit 2 ;;
  esac
done

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
WORK="${GPU_CHECK_DIR:-$(mktemp -d)}"
mkdir -p "$WORK"
FAILED=0
REPORT=""
T_START=$SECONDS
pass() { echo "PASS  $*"; }
fail() { echo "FAIL  $*"; FAILED=1; }
row() { REPORT+="$*"$'\n'; }
# `within A B TOL [abs]`: |A - B| <= TOL * |B| (or <= TOL with `abs`).
within() { awk -v a="$1" -v b="$2" -v t="$3" -v m="${4:-rel}" 'BEGIN {
  if (a == "" || b == "") exit 1; d = a - b; if (d < 0) d = -d; s = (m == "abs") ? 1 : (b < 0 ? -b : b);
  exit !(d <= t * s) }'; }
reldiff() { awk -v a="$1" -v b="$2" 'BEGIN { d = a - b; if (d < 0) d = -d; s = b < 0 ? -b : b; printf "%.2e", (s > 0 ? d / s : d) }'; }
json() { grep -o "\"$2\": *[-0-9.eE+]*" "$1" 2>/dev/null | head -1 | sed 's/.*: *//'; }
last_loss() { tail -1 "$1/loss.csv" 2>/dev/null | cut -d, -f2; }

# 1. the GPU and the libraries ---------------------------------------------------
# cubecl finds NVRTC on the loader path; the toolkit's usual place helps.
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
  [ -d "$d" ] && export LD_LIBRARY_PATH="${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}$d"
done
# The same names cudarc (burn-cuda's loader) tries, most common first.
find_lib() {
  local lib="$1" name dir
  for name in "$lib.so.1" "$lib.so" $(ls -1 /usr/local/cuda*/lib64/"$lib".so.* 2>/dev/null | xargs -rn1 basename); do
    ldconfig -p 2>/dev/null | grep -qE "(^|[[:space:]])$name[[:space:]]" && { echo "$name (ldconfig)"; return 0; }
    for dir in ${LD_LIBRARY_PATH:+${LD_LIBRARY_PATH//:/ }}; do [ -e "$dir/$name" ] && { echo "$dir/$name"; return 0; }; done
  done
  return 1
}
if GPU_NAME="$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader -i "$GPU" 2>&1)"; then
  pass "nvidia-smi: GPU $GPU is $GPU_NAME"
else
  fail "nvidia-smi: no GPU $GPU (${GPU_NAME##*: }): install the NVIDIA driver, or run where a GPU is visible"
fi
if where="$(find_lib libcuda)"; then pass "libcuda (NVIDIA driver): $where"; else
  fail "libcuda (NVIDIA driver) not found by ldconfig or on LD_LIBRARY_PATH: it comes with the driver"; fi
if where="$(find_lib libnvrtc)"; then pass "libnvrtc (NVRTC, CUDA toolkit): $where"; else
  fail "libnvrtc not found by ldconfig, in /usr/local/cuda*/lib64 or on LD_LIBRARY_PATH: burn compiles its kernels at run time with NVRTC, which comes with the CUDA toolkit, not the driver; add its lib64 folder to LD_LIBRARY_PATH"; fi
if [ "$FAILED" = 1 ]; then
  echo "no usable GPU here: nothing built or run ($((SECONDS - T_START)) s)"
  exit 1
fi

# 2. build ----------------------------------------------------------------------
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
DDIS="$TARGET/release/ddis"
t=$SECONDS
if cargo build --release -p ddis-trainer --features cuda -q \
   && cargo test --release -p ddis-trainer --features cuda --test gpu --no-run -q 2> "$WORK/build.err"; then
  pass "cargo build --release --features cuda, and the GPU tests ($((SECONDS - t)) s)"
else
  fail "build: $(tail -3 "$WORK/build.err")"; exit 1
fi
DD=("$DDIS" --quiet)
ON_GPU=(--backend cuda --gpu "$GPU")
train() { # train KIND OUT ARGS... -> the run in OUT (replaced unless --resume); stderr in OUT.err
  local kind="$1" out="$2"; shift 2
  local extra=(); [ "$kind" = prior ] && extra=(--stat-samples 4)
  [[ " $* " == *" --resume "* ]] || rm -rf "$out"
  "${DD[@]}" train "$kind" --out "$out" "${extra[@]}" "$@" 2> "$out.err"
}
"${DD[@]}" data gen --pde darcy --res 32 --count 400 --seed 0 --out "$WORK/d32" --force 2> /dev/null || fail "data gen 32"
"${DD[@]}" data gen --pde darcy --res 64 --count 100 --seed 0 --out "$WORK/d64" --force 2> /dev/null || fail "data gen 64"
# One GPU step first: if CUDA does not start, ddis says what failed (the
# driver, NVRTC, the device) and nothing else is worth running.
if train operator "$WORK/start" --data "$WORK/d32" --steps 1 "${ON_GPU[@]}"; then
  pass "CUDA starts on GPU $GPU (one training step)"
else
  fail "CUDA on GPU $GPU:"; sed 's/^/      /' "$WORK/start.err"; exit 1
fi
row "GPU check: $GPU_NAME; $(nproc) CPU cores; ddis $(git rev-parse --short HEAD 2>/dev/null); $(date -u +%Y-%m-%d)."
row ""
row "| check | GPU | CPU | tolerance | |"
row "|---|---|---|---|---|"

# 3. operation by operation -----------------------------------------------------
t=$SECONDS
DDIS_GPU="$GPU" DDIS_GPU_TOL="$GPU_TOL" cargo test --release -p ddis-trainer --features cuda --test gpu -q \
  -- --ignored --nocapture --test-threads 1 > "$WORK/compare.log" 2>&1
compare_rc=$?
grep "^gpu-compare" "$WORK/compare.log" | sed 's/^gpu-compare \(PASS\|FAIL\) */\1  /'
grep -q "^gpu-compare FAIL" "$WORK/compare.log" && FAILED=1
if [ "$compare_rc" != 0 ] && ! grep -q "^gpu-compare FAIL" "$WORK/compare.log"; then
  fail "the GPU comparison tests did not run through: $(grep -m3 -E 'panicked|error' "$WORK/compare.log")"
fi
while read -r _ verdict backend rest; do
  what="${rest% rel. L2 difference*}"; diff="$(echo "$rest" | grep -o 'difference [0-9.e+-]*' | cut -d' ' -f2)"
  row "| $what ($backend) | rel. L2 difference $diff | reference | $GPU_TOL | $verdict |"
done < <(grep "^gpu-compare" "$WORK/compare.log")
echo "      ($((SECONDS - t)) s)"

# 4. 200 steps on each backend --------------------------------------------------
for kind in operator prior; do
  for be in cuda cpu; do
    flags=(--backend cpu); [ "$be" = cuda ] && flags=("${ON_GPU[@]}")
    t=$SECONDS
    if train "$kind" "$WORK/$kind-$be" --data "$WORK/d32" --size device --steps 200 --checkpoint-every 100 "${flags[@]}"; then
      pass "train $kind --backend $be, 200 steps: loss $(last_loss "$WORK/$kind-$be") ($((SECONDS - t)) s)"
    else
      fail "train $kind --backend $be: $(tail -1 "$WORK/$kind-$be.err")"
    fi
  done
  g="$(last_loss "$WORK/$kind-cuda")"; c="$(last_loss "$WORK/$kind-cpu")"
  if within "$g" "$c" "$GPU_LOSS_REL"; then v=PASS; pass "$kind: GPU loss $g, CPU $c after 200 steps (within $GPU_LOSS_REL)"
  else v=FAIL; fail "$kind: GPU loss $g, CPU $c after 200 steps (more than $GPU_LOSS_REL apart)"; fi
  row "| $kind, 32 x 32, 200 steps: last training loss | $g | $c | $GPU_LOSS_REL relative | $v |"
done

# 5. stopped and resumed --------------------------------------------------------
args=(--data "$WORK/d32" --size device --steps 200 --checkpoint-every 100 "${ON_GPU[@]}")
train operator "$WORK/resumed" "${args[@]}" --halt-after 100
if train operator "$WORK/resumed" "${args[@]}" --resume; then
  r="$(last_loss "$WORK/resumed")"; u="$(last_loss "$WORK/operator-cuda")"
  same="not bit for bit"; cmp -s "$WORK/resumed/model.bin" "$WORK/operator-cuda/model.bin" && same="bit for bit"
  if within "$r" "$u" "$GPU_TOL"; then v=PASS; pass "stopped at 100, resumed to 200 on the GPU: loss $r, uninterrupted $u ($same)"
  else v=FAIL; fail "stopped at 100, resumed to 200 on the GPU: loss $r, uninterrupted $u"; fi
  row "| operator stopped at step 100 and resumed on the GPU: last loss | $r (uninterrupted: $u; weights $same) | | $GPU_TOL relative | $v |"
else
  fail "resume: $(tail -1 "$WORK/resumed.err")"
fi

# 6. steps/s at 64 x 64 ---------------------------------------------------------
# Steps 10 to 50 of 60 from loss.csv (one row per step), so neither the
# kernels' first compilation nor the final checkpoint is timed.
rate() { awk -F, '$1 == 10 { a = $5 } $1 == 50 { b = $5 } END { if (b > a) printf "%.1f", 40 / (b - a); else print "?" }' "$1/loss.csv" 2>/dev/null; }
row ""
row "Steps/s at 64 x 64, batch 16 ($GPU_NAME):"
row ""
row "| model | preset | fused | unfused |"
row "|---|---|---|---|"
for kind in operator prior; do
  for size in device host; do
    line="| $kind | $size |"
    for be in cuda cuda-unfused; do
      out="$WORK/speed-$kind-$size-$be"
      if train "$kind" "$out" --data "$WORK/d64" --size "$size" --steps 60 --checkpoint-every 60 \
          --backend "$be" --gpu "$GPU"; then
        s="$(rate "$out")"; pass "64 x 64, $kind --size $size, --backend $be: $s steps/s"
      else
        s="failed"; fail "64 x 64, $kind --size $size, --backend $be: $(tail -1 "$out.err")"
      fi
      line+=" $s |"
    done
    row "$line"
  done
done
row ""

# 7. the GPU-trained surrogate on the CPU; inference on the GPU -----------------
gpu_test="$(json "$WORK/operator-cuda/summary.json" test_rel_l2)"
cpu_test="$("${DD[@]}" eval-operator --operator "$WORK/operator-cuda" --data "$WORK/d32" --test-split 2> "$WORK/eval.err" | awk '{ print $3 }')"
if within "$cpu_test" "$gpu_test" "$GPU_TOL" abs; then v=PASS; pass "GPU-trained surrogate on the CPU: test rel. L2 $cpu_test, on the GPU $gpu_test (within $GPU_TOL)"
else v=FAIL; fail "GPU-trained surrogate on the CPU: test rel. L2 '$cpu_test', on the GPU '$gpu_test' $(tail -1 "$WORK/eval.err")"; fi
row "| GPU-trained surrogate, test rel. L2 (eval-operator --test-split) | $gpu_test | $cpu_test | $GPU_TOL absolute | $v |"
gpu_eval="$("${DD[@]}" eval-operator --operator "$WORK/operator-cuda" --data "$WORK/d32" --test-split "${ON_GPU[@]}" 2> "$WORK/eval-gpu.err" | awk '{ print $3 }')"
if within "$gpu_eval" "$cpu_test" "$GPU_TOL" abs; then v=PASS; pass "eval-operator --backend cuda: $gpu_eval (CPU $cpu_test)"
else v=FAIL; fail "eval-operator --backend cuda: '$gpu_eval' (CPU $cpu_test) $(tail -1 "$WORK/eval-gpu.err")"; fi
row "| eval-operator --backend cuda, same run and samples | $gpu_eval | $cpu_test | $GPU_TOL absolute | $v |"
printf 'x,y,value\n0.25,0.25,0.010\n0.5,0.5,0.030\n0.75,0.25,0.012\n0.25,0.75,0.011\n0.75,0.75,0.009\n0.5,0.2,0.020\n' > "$WORK/readings.csv"
for be in cpu cuda; do
  flags=(--backend cpu); [ "$be" = cuda ] && flags=("${ON_GPU[@]}")
  t=$SECONDS
  if "${DD[@]}" reconstruct --prior "$WORK/prior-cuda" --operator "$WORK/operator-cuda" --obs "$WORK/readings.csv" \
      --samples 4 --out "$WORK/rec-$be" --force "${flags[@]}" 2> "$WORK/rec-$be.err"; then
    pass "reconstruct --backend $be with the GPU-trained models ($((SECONDS - t)) s)"
  else
    fail "reconstruct --backend $be: $(tail -1 "$WORK/rec-$be.err")"
  fi
done
row "| reconstruct (DAPS, 4 samples), GPU-trained models | $(grep -o 'in [0-9.]* s' "$WORK/rec-cuda.err" | head -1) | $(grep -o 'in [0-9.]* s' "$WORK/rec-cpu.err" | head -1) | runs | |"

echo
echo "---- for docs/results.md ----"
printf '%s' "$REPORT"
echo "-----------------------------"
echo "work folder: $WORK; $((SECONDS - T_START)) s in all"
[ "$FAILED" = 0 ] && echo "PASS  all checks" || echo "FAIL  see the FAIL lines above"
exit "$FAILED"
