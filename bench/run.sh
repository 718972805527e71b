#!/usr/bin/env bash
# ddis vs PyTorch on the same CPU, thread counts pinned (see bench/README.md).
#
#   bash bench/run.sh
#
# Environment knobs (defaults in brackets):
#   BENCH_THREADS      thread counts for the reconstruction and torch ["1 $(nproc)"]
#                      (cargo's fno_step bench always runs 1 and all cores)
#   BENCH_FNO_REPEATS  repeats of each FNO timing, median reported [5]
#   BENCH_FNO_STEPS    training steps per repeat [3]
#   BENCH_REC_REPEATS  reconstructions per thread count, median reported [5]
#   BENCH_SKIP_DDIS=1  PyTorch side only;  BENCH_SKIP_TORCH=1  ddis side only
#   BENCH_OMP_WAIT_POLICY  OpenMP wait policy of the torch processes [auto]: "auto" keeps
#                      libgomp's default (spin) on an idle machine and uses PASSIVE when the
#                      1-minute load average is >= nproc - 0.5 (spinning OpenMP threads on
#                      shared cores slow torch down by 5-20x); "default" never sets it
#   BENCH_TORCH_BUDGET seconds per torch item after which no further repeat starts [60]
#   TORCH_INDEX_URL    extra pip index for torch (e.g. a CPU-only wheel index); default: PyPI only
#   BENCH_PRIOR, BENCH_OPERATOR  runs used by the ddis reconstruction [runs/prior-device, runs/op-device-p100, else the shipped models/host/darcy32-prior, darcy32-op-p100]
#   PYTHON             interpreter for the venv [python3]
set -euo pipefail

BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$BENCH/.." && pwd)"
cd "$ROOT"
OUT="$BENCH/out"
VENV="$BENCH/.venv"
mkdir -p "$OUT"
rm -f "$OUT"/*.txt "$OUT"/obs.csv

NPROC="$(nproc)"
THREADS="${BENCH_THREADS:-$( [ "$NPROC" -gt 1 ] && echo "1 $NPROC" || echo 1 )}"
FNO_REPEATS="${BENCH_FNO_REPEATS:-5}"
FNO_STEPS="${BENCH_FNO_STEPS:-3}"
REC_REPEATS="${BENCH_REC_REPEATS:-5}"
PYTHON="${PYTHON:-python3}"
TORCH_BUDGET="${BENCH_TORCH_BUDGET:-60}"
LOAD1="$(cut -d' ' -f1 /proc/loadavg)"
WAIT_POLICY="${BENCH_OMP_WAIT_POLICY:-auto}"
if [ "$WAIT_POLICY" = auto ]; then
  if awk -v l="$LOAD1" -v n="$NPROC" 'BEGIN { exit !(l >= n - 0.5) }'; then WAIT_POLICY=PASSIVE; else WAIT_POLICY=""; fi
elif [ "$WAIT_POLICY" = default ]; then
  WAIT_POLICY=""
fi
log() { echo "[bench] $*" >&2; }
# torch_py T ARGS...: torch_ddis.py in its own process, every thread knob pinned to T.
torch_py() {
  local t="$1"; shift
  env OMP_NUM_THREADS="$t" MKL_NUM_THREADS="$t" ${WAIT_POLICY:+OMP_WAIT_POLICY=$WAIT_POLICY} \
    "$VENV/bin/python" "$BENCH/torch_ddis.py" --threads "$t" --obs "$OUT/obs.csv" --budget "$TORCH_BUDGET" "$@"
}
T0=$SECONDS

# --- machine -----------------------------------------------------------------
{
  echo "machine: $(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -1), $NPROC CPUs ($(uname -m)), $(free -g | awk '/^Mem:/{print $2}') GiB RAM"
  echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "rustc: $(rustc --version 2>/dev/null || echo '?')"
  echo "torch OpenMP wait policy: ${WAIT_POLICY:-libgomp default}"
} > "$OUT/machine.txt"

# --- python environment --------------------------------------------------------
if [ -z "${BENCH_SKIP_TORCH:-}" ]; then
  if ! "$VENV/bin/python" -c "import torch, numpy" 2>/dev/null; then
    log "creating $VENV and installing torch + numpy (large download: PyPI's torch wheel carries CUDA libraries)"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --upgrade pip || true
    if [ -n "${TORCH_INDEX_URL:-}" ]; then
      "$VENV/bin/pip" install --index-url "$TORCH_INDEX_URL" torch || log "torch from $TORCH_INDEX_URL failed, trying PyPI"
    fi
    "$VENV/bin/pip" install torch numpy
  fi
  TORCH_VERSION="$("$VENV/bin/python" -c 'import torch; print(torch.__version__)')"
  echo "torch: $TORCH_VERSION ($("$VENV/bin/python" -c 'import torch; print(next((l.strip() for l in torch.__config__.parallel_info().splitlines() if "parallel backend" in l), "?"))' 2>/dev/null))" >> "$OUT/machine.txt"
  log "torch $TORCH_VERSION; checking that the torch models match the Rust presets"
  OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 "$VENV/bin/python" "$BENCH/torch_ddis.py" --threads 1 --check
fi

# --- sensor file: 31 distinct nodes of the 32x32 grid ----------------------------
"$PYTHON" - "$OUT/obs.csv" <<'EOF'
import random, sys
rng = random.Random(0)
n = 32
nodes = rng.sample(range(n * n), 31)
with open(sys.argv[1], "w") as f:
    f.write("x,y,value\n")
    for k in nodes:
        i, j = divmod(k, n)
        f.write(f"{j / (n - 1)!r},{i / (n - 1)!r},{rng.uniform(0.0, 0.1)!r}\n")
EOF

# --- FNO training step: ddis -------------------------------------------------------------------
if [ -z "${BENCH_SKIP_DDIS:-}" ]; then
  log "ddis: cargo bench -p ddis-trainer --bench fno_step (FNO_BENCH_REPEATS=$FNO_REPEATS FNO_BENCH_STEPS=$FNO_STEPS)"
  if FNO_BENCH_REPEATS="$FNO_REPEATS" FNO_BENCH_STEPS="$FNO_STEPS" \
      cargo bench -q -p ddis-trainer --bench fno_step > "$OUT/fno_step.txt" 2> "$OUT/fno_step.err"; then
    cat "$OUT/fno_step.txt" >&2
  else
    log "cargo bench failed (tail of its stderr below); the ddis FNO column stays empty"
    tail -20 "$OUT/fno_step.err" >&2
  fi

fi

# --- FNO training step: PyTorch ---------------------------------------------------
if [ -z "${BENCH_SKIP_TORCH:-}" ]; then
  for T in $THREADS; do
    log "torch fno_step: --threads $T (own process, OMP_NUM_THREADS=MKL_NUM_THREADS=$T${WAIT_POLICY:+, OMP_WAIT_POLICY=$WAIT_POLICY})"
    torch_py "$T" --skip-rec --fno-repeats "$FNO_REPEATS" --fno-steps "$FNO_STEPS" > "$OUT/torch_fno_$T.txt"
  done
fi

# --- reconstruction: ddis and PyTorch interleaved -----------------------------------
# Per thread count, REC_REPEATS rounds of one ddis process and one torch process
# (a warm-up reconstruction, then one timed one per spectral form), so that both
# sides see the same background load.
# Your runs first, else the shipped host weights.
run_or_shipped() { if [[ -f "runs/$1/model.bin" ]]; then echo "runs/$1"; else echo "models/host/$2"; fi; }
PRIOR="${BENCH_PRIOR:-$(run_or_shipped prior-device darcy32-prior)}"
OPERATOR="${BENCH_OPERATOR:-$(run_or_shipped op-device-p100 darcy32-op-p100)}"
DDIS=""
if [ -z "${BENCH_SKIP_DDIS:-}" ]; then
  if [ ! -f "$PRIOR/model.bin" ] || [ ! -f "$OPERATOR/model.bin" ]; then
    log "$PRIOR or $OPERATOR is missing: the ddis reconstruction is skipped."
    log "Create them as in docs/results.md (about 1 h on 2 cores; ddis = cargo run --release -p ddis-trainer --):"
    log "  ddis data gen --pde darcy --res 32 --count 10000 --seed 0 --out data/darcy32"
    log "  ddis --threads 1 train operator --data data/darcy32 --out $OPERATOR --size device --steps 12000 --batch 16 --checkpoint-every 1000 --paired-fraction 1.0"
    log "  ddis --threads 1 train prior --data data/darcy32 --out $PRIOR --size device --steps 6000 --batch 16 --checkpoint-every 1000 --stat-samples 128"
  elif ! cargo build -q --release -p ddis-trainer 2> "$OUT/build.err"; then
    log "cargo build --release -p ddis-trainer failed; the ddis reconstruction is skipped"
    tail -20 "$OUT/build.err" >&2
  else
    # Run the built binary directly: a `cargo run` per repeat could rebuild
    # mid-benchmark if a source file changes meanwhile.
    TARGET_DIR="$(cargo metadata -q --format-version 1 --no-deps | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
    DDIS="$TARGET_DIR/release/ddis"
  fi
fi
REC_DIR="$(mktemp -d)"
trap 'rm -rf "$REC_DIR"' EXIT
for T in $THREADS; do
  log "reconstruct (daps-lite, 1 sample), $T thread(s): $REC_REPEATS rounds"
  for r in $(seq "$REC_REPEATS"); do
    if [ -n "$DDIS" ]; then
      if "$DDIS" --threads "$T" reconstruct --prior "$PRIOR" --operator "$OPERATOR" --obs "$OUT/obs.csv" \
          --out "$REC_DIR/rec" --sampler daps-lite --samples 1 --seed "$r" 2>> "$OUT/ddis_rec_$T.txt" >/dev/null; then
        grep "posterior samples in" "$OUT/ddis_rec_$T.txt" | tail -1 | sed 's/^/    ddis:  /' >&2
      else
        log "ddis reconstruct failed:"; tail -5 "$OUT/ddis_rec_$T.txt" >&2; DDIS=""
      fi
    fi
    if [ -z "${BENCH_SKIP_TORCH:-}" ]; then
      if ! torch_py "$T" --skip-fno --rec-repeats 1 --seed "$r" >> "$OUT/torch_rec_$T.txt" 2> "$REC_DIR/torch.err"; then
        cat "$REC_DIR/torch.err" >&2; exit 1
      fi
      grep "reconstruct" "$REC_DIR/torch.err" | sed 's/^ */    torch: /' >&2 || true
    fi
  done
done

echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg); bench/run.sh took $((SECONDS - T0)) s" >> "$OUT/machine.txt"
echo
"$PYTHON" "$BENCH/report.py" "$OUT" | tee "$OUT/table.txt"
