#!/usr/bin/env python3
"""Reads bench/out/ (written by bench/run.sh) and prints the ddis vs PyTorch
table. Standard library only.

Inputs:
  out/fno_step.txt        output of `cargo bench -p ddis-trainer --bench fno_step`
  out/ddis_rec_T.txt      one "posterior samples in X s" line per repeat, thread count T
  out/torch_*_T.txt       RESULT {json} lines of torch_ddis.py, thread count T
  out/machine.txt         free text, printed as is
"""

import glob
import json
import os
import re
import statistics
import sys

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "out")


def parse_fno_step(path):
    """{config: {threads: steps/s}} from the bench's table.

    Lines look like `ndarray/device   264449   5.23   5.01   0.96x`; the
    header names the second thread count (`2 threads /s`)."""
    res = {}
    if not os.path.exists(path):
        return res
    text = open(path).read()
    m = re.search(r"(\d+) threads /s", text)
    all_threads = int(m.group(1)) if m else None
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[0].startswith("ndarray/"):
            name = parts[0].split("/", 1)[1]
            try:
                r1, rall = float(parts[2]), float(parts[3])
            except ValueError:
                continue
            res[name] = {1: r1}
            if all_threads is not None:
                res[name][all_threads] = rall
    return res


def parse_ddis_rec():
    res = {}
    for path in glob.glob(os.path.join(OUT, "ddis_rec_*.txt")):
        t = int(re.search(r"ddis_rec_(\d+)\.txt$", path).group(1))
        secs = [float(x) for x in re.findall(r"posterior samples in ([0-9.]+) s", open(path).read())]
        if secs:
            res[t] = secs
    return res


def parse_torch():
    fno, rec = {}, {}
    for path in glob.glob(os.path.join(OUT, "torch_*.txt")):
        for line in open(path):
            if not line.startswith("RESULT "):
                continue
            r = json.loads(line[len("RESULT "):])
            if r["kind"] == "fno_step":
                fno.setdefault(r["config"], {}).setdefault(r["threads"], {})[r["spectral"]] = r["steps_per_s"]
            elif r["kind"] == "reconstruct":
                # Several processes may each report a few timed runs: pool them.
                e = rec.setdefault(r["threads"], {}).setdefault(r["spectral"], {"all": [], "cold": [], "clamped": []})
                e["all"] += r["all"]
                e["cold"].append(r["cold"])
                e["clamped"].append(r["clamped"])
    for d in rec.values():
        for sp, e in d.items():
            d[sp] = (statistics.median(e["all"]), e["all"], e["cold"], e["clamped"])
    return fno, rec


def fmt(v, unit=""):
    return "—" if v is None else f"{v:.2f}{unit}"


def ratio(a, b):
    return "—" if a is None or b is None or b == 0 else f"{a / b:.2f}x"


def main():
    machine = os.path.join(OUT, "machine.txt")
    if os.path.exists(machine):
        print(open(machine).read().rstrip())
        print()
    ddis_fno = parse_fno_step(os.path.join(OUT, "fno_step.txt"))
    ddis_rec = parse_ddis_rec()
    torch_fno, torch_rec = parse_torch()
    threads = sorted({t for d in ddis_fno.values() for t in d} | set(ddis_rec) | set(torch_rec)
                     | {t for d in torch_fno.values() for t in d})

    head = f"{'benchmark':<36} {'thr':>3} {'ddis':>9} {'torch fft':>10} {'torch dft':>10} {'ddis/fft':>9} {'ddis/dft':>9}"
    print("Speeds: FNO training steps per second (higher is faster); reconstruction in seconds")
    print("(lower is faster). Ratios are ddis speed / torch speed: > 1 means ddis is faster.")
    print(head)
    print("-" * len(head))
    for name, label in (("device", "fno_step device (steps/s)"), ("width32-modes12", "fno_step width32-modes12 (steps/s)")):
        for t in threads:
            d = ddis_fno.get(name, {}).get(t)
            tf = torch_fno.get(name, {}).get(t, {})
            f, g = tf.get("fft"), tf.get("dft")
            if d is None and f is None and g is None:
                continue
            print(f"{label:<36} {t:>3} {fmt(d):>9} {fmt(f):>10} {fmt(g):>10} {ratio(d, f):>9} {ratio(d, g):>9}")
    for t in threads:
        secs = ddis_rec.get(t)
        d = statistics.median(secs) if secs else None
        tr = torch_rec.get(t, {})
        f = tr["fft"][0] if "fft" in tr else None
        g = tr["dft"][0] if "dft" in tr else None
        if d is None and f is None and g is None:
            continue
        # speed ratio = torch time / ddis time
        print(f"{'reconstruct 20x1x5, 1 sample (s)':<36} {t:>3} {fmt(d):>9} {fmt(f):>10} {fmt(g):>10} "
              f"{ratio(f, d):>9} {ratio(g, d):>9}")
    print()
    print("Details:")
    if ddis_fno:
        print(f"  ddis fno_step (all configs, steps/s by thread count): "
              + "; ".join(f"{k}: " + ", ".join(f"{t}T {v:.2f}" for t, v in sorted(d.items())) for k, d in ddis_fno.items()))
    for t, secs in sorted(ddis_rec.items()):
        print(f"  ddis reconstruct {t}T: runs {', '.join(f'{s:.2f}' for s in secs)} s (each a fresh process), "
              f"median {statistics.median(secs):.2f} s")
    for t, d in sorted(torch_rec.items()):
        for sp, (sec, runs, cold, clamped) in sorted(d.items()):
            print(f"  torch reconstruct {sp} {t}T: runs {', '.join(f'{s:.2f}' for s in runs)} s, median {sec:.2f} s; "
                  f"warm-up runs {', '.join(f'{s:.2f}' for s in cold)} s (clamped values per run ~{max(clamped)}: random weights)")
    if not ddis_fno:
        print("  ddis fno_step: no result (see out/fno_step.txt)")
    if not ddis_rec:
        print("  ddis reconstruct: no result (see the messages above / out/ddis_rec_*.txt)")


if __name__ == "__main__":
    main()
