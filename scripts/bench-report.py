"""The summary of scripts/bench-onnx.sh: medians over the rounds of wall
time and peak RSS (from /usr/bin/time -v), pictures per second and ratios,
cutout's per-picture breakdown (from its debug/trace log), bare inference
per picture, and mask parity between cutout and rembg.

    python bench-report.py OUT ROUNDS "cutout-p1 cutout-p1-arena ..."
"""
import glob
import os
import re
import statistics as st
import sys

import numpy as np
from PIL import Image

out, rounds, settings = sys.argv[1], int(sys.argv[2]), sys.argv[3].split()
n = len(glob.glob(os.path.join(out, "photos", "*")))


def timing(label):
    text = open(os.path.join(out, "time", label + ".time")).read()
    w = re.search(r"Elapsed \(wall clock\) time.*: (\S+)", text).group(1)
    secs = 0.0
    for part in w.split(":"):
        secs = secs * 60 + float(part)
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1)) / 1024
    user = float(re.search(r"User time \(seconds\): (\S+)", text).group(1))
    sys_ = float(re.search(r"System time \(seconds\): (\S+)", text).group(1))
    return secs, rss, user, sys_


def med(xs):
    return st.median(xs) if xs else float("nan")


FIELD = re.compile(r'(\w+)=("[^"]*"|\S+)')


def fields(line):
    return {k: v.strip('"') for k, v in FIELD.findall(line)}


rows = {}
for label in settings + ["rembg", "bare"]:
    ts = [timing(f"{label}-r{r}") for r in range(1, rounds + 1)]
    rows[label] = tuple(med([t[i] for t in ts]) for i in range(4))

# Bare inference: the median run per picture (the first run of a session is
# a warm-up and left out), and the session's load.
bare_ms, bare_load = [], []
for r in range(1, rounds + 1):
    lines = open(os.path.join(out, "time", f"bare-r{r}.log")).read().splitlines()
    runs = [float(fields(l)["infer_ms"]) for l in lines if "infer_ms=" in l]
    bare_ms += runs[1:]
    bare_load += [float(fields(l)["load_ms"]) for l in lines if "load_ms=" in l]
version = next((fields(l).get("onnxruntime") for l in open(os.path.join(out, "time", "bare-r1.log")) if "load_ms=" in l), "?")
bare_pic = med(bare_ms) / 1000

print(f"\n{n} photos, {rounds} rounds, medians (load {open('/proc/loadavg').read().split()[0]} at the end)\n")
print(f"{'':22} {'wall s':>7} {'s/picture':>9} {'pictures/s':>10} {'peak RSS MB':>11} {'user s':>7} {'sys s':>6}")
for label, (wall, rss, user, sys_) in rows.items():
    name = {"rembg": "rembg p", "bare": f"bare ORT {version}"}.get(label, label)
    print(f"{name:22} {wall:7.2f} {wall / n:9.2f} {n / wall:10.3f} {rss:11.0f} {user:7.1f} {sys_:6.1f}")
print(f"{'bare inference only':22} {'':7} {bare_pic:9.2f} {1 / bare_pic:10.3f}   (median run, session load {med(bare_load) / 1000:.2f} s)")

rembg_wall = rows["rembg"][0]
for p in settings:
    wall = rows[p][0]
    print(f"{p}: pictures/s {rembg_wall / wall:.2f}× rembg's; "
          f"wall per picture {wall / n / bare_pic:.2f}× bare inference")

# cutout's per-picture breakdown (parallel = first setting), medians in ms.
steps = {k: [] for k in ["read", "decode+validate", "resize", "inference", "resize back", "compose", "encode", "write"]}
p0 = settings[0]
for r in range(1, rounds + 1):
    for line in open(os.path.join(out, "time", f"{p0}-r{r}.log")):
        f = fields(line)
        if "blocking step" in line and f.get("what") == "read input":
            steps["read"].append(int(f["run_us"]))
        elif "blocking step" in line and f.get("what") == "validate":
            steps["decode+validate"].append(int(f["run_us"]))
        elif "onnx steps" in line:
            steps["resize"].append(int(f["resize_us"]))
            steps["inference"].append(int(f["infer_us"]))
            steps["resize back"].append(int(f["resize_back_us"]))
            steps["compose"].append(int(f["compose_us"]))
        elif "output written" in line:
            steps["encode"].append(int(f["encode_us"]))
            steps["write"].append(int(f["write_us"]))
print(f"\n{p0} per picture (median ms over {rounds}×{n}):")
print("  " + "  ".join(f"{k} {med(v) / 1000:.1f}" for k, v in steps.items()))
total = sum(med(v) for v in steps.values()) / 1000
per_pic = rows[p0][0] / n * 1000
infer = med(steps["inference"]) / 1000
print(f"  sum {total:.0f} ms; wall per picture {per_pic:.0f} ms = {per_pic / infer:.2f}× its own inference step "
      f"(start-up and model load included)")

# Mask parity, cutout (parallel = first setting, round 1) vs rembg (round 1).
print("\nmask parity, cutout vs rembg (alpha): max |diff|, share > 2/255, IoU at 128")
for f in sorted(glob.glob(os.path.join(out, "photos", "*"))):
    stem = os.path.splitext(os.path.basename(f))[0]
    c = glob.glob(os.path.join(out, f"{p0}-r1", "outbox", stem + ".*"))
    rp = os.path.join(out, "rembg-r1", stem + ".png")
    if not c or not os.path.exists(rp):
        print(f"  {stem}: missing output")
        continue
    a = np.asarray(Image.open(c[0]).convert("RGBA"))[:, :, 3].astype(int)
    b = np.asarray(Image.open(rp).convert("RGBA"))[:, :, 3].astype(int)
    d = np.abs(a - b)
    inter = ((a >= 128) & (b >= 128)).sum()
    union = ((a >= 128) | (b >= 128)).sum()
    print(f"  {stem:20} {d.max():4d} {(d > 2).mean() * 100:7.3f}% {inter / max(union, 1):.4f}")
