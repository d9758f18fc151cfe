#!/usr/bin/env bash
# Side-by-side benchmark of cutout's local ONNX engine against rembg itself,
# same model file, same pictures, same thread count. A documented command,
# not a timed test: run it on a quiet machine.
#
#   scripts/bench-onnx.sh [PICTURE...]      # default: ../shared/samples/*.png
#
# For each picture, one process each (cold: start, load the model, decode →
# mask → encode, exit):
#   cutout   run_cutout below
#   rembg    rembg i -m isnet-general-use PICTURE OUT.png
#            (U2NET_HOME = a folder holding the same model file,
#             MODEL_CHECKSUM_DISABLED=1, OMP_NUM_THREADS=THREADS)
# then all pictures in one process each (warm: the model loaded once):
#   cutout   run_cutout with every picture
#   rembg    rembg p -m isnet-general-use IN_DIR OUT_DIR
# Reports wall seconds and peak RSS (/usr/bin/time -v) of each, and the
# largest per-pixel difference between the two alpha masks (goal: ≤ 2/255).
#
# Environment (defaults in brackets):
#   MODEL       the .onnx file                 [models/isnet-general-use.onnx]
#   KIND        its model kind / rembg name    [isnet-general-use]
#   THREADS     inference threads for both     [2]
#   ORT_DYLIB_PATH  runtime for cutout         [libonnxruntime.so.* beside MODEL]
#   CUTOUT_BIN  cutout's binary                [target/release/examples/cutout_one]
#   REMBG       rembg's command; "none" skips  [rembg on PATH]
#   PYTHON      python with numpy + PIL for the mask diff [the one beside rembg]
#   OUT         where outputs and timings go   [a new temporary folder]
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MODEL=${MODEL:-$repo/models/isnet-general-use.onnx}
KIND=${KIND:-isnet-general-use}
THREADS=${THREADS:-2}
CUTOUT_BIN=${CUTOUT_BIN:-$repo/target/release/examples/cutout_one}
OUT=${OUT:-$(mktemp -d -t cutout-bench.XXXXXX)}

# The one line to change when `cutout process` exists: OUT_DIR PICTURE... →
# OUT_DIR/<stem>.png (RGBA, mask as alpha).
run_cutout() { "$CUTOUT_BIN" --model "$MODEL" --kind "$KIND" --threads "$THREADS" --out-dir "$1" "${@:2}"; }
export -f run_cutout
export MODEL KIND THREADS CUTOUT_BIN
cutout_cmd=(bash -c 'run_cutout "$@"' run_cutout)

say() { printf '%s\n' "$*" >&2; }

[ -f "$MODEL" ] || { say "no model at $MODEL: cutout models fetch $KIND --dir $(dirname "$MODEL")"; exit 1; }
MODEL=$(cd "$(dirname "$MODEL")" && pwd)/$(basename "$MODEL")
if [ -z "${ORT_DYLIB_PATH:-}" ]; then
    ORT_DYLIB_PATH=$(find "$(dirname "$MODEL")" -maxdepth 1 -name 'libonnxruntime.so.*' | sort -V | tail -n 1)
    [ -n "$ORT_DYLIB_PATH" ] || { say "no ONNX Runtime: cutout models fetch onnxruntime --dir $(dirname "$MODEL")"; exit 1; }
fi
export ORT_DYLIB_PATH
[ -x /usr/bin/time ] || { say "needs GNU time at /usr/bin/time (apt-get install time)"; exit 1; }
if [ "$CUTOUT_BIN" = "$repo/target/release/examples/cutout_one" ]; then
    (cd "$repo" && cargo build --release --locked --example cutout_one >&2)
fi
[ -x "$CUTOUT_BIN" ] || command -v "$CUTOUT_BIN" >/dev/null || { say "no cutout binary at $CUTOUT_BIN (set CUTOUT_BIN)"; exit 1; }

REMBG=${REMBG:-$(command -v rembg || echo none)}
if [ "$REMBG" != none ]; then
    PYTHON=${PYTHON:-$(dirname "$(command -v "$REMBG")")/python}
else
    PYTHON=${PYTHON:-python3}
fi

if [ $# -gt 0 ]; then
    pictures=("$@")
else
    pictures=("$repo"/../shared/samples/*.png)
fi

mkdir -p "$OUT"/{in,cutout-cold,cutout-warm,rembg-cold,rembg-warm,time,u2net}
for p in "${pictures[@]}"; do cp "$p" "$OUT/in/"; done
# rembg looks for U2NET_HOME/<name>.onnx: give it the very same file.
ln -sf "$MODEL" "$OUT/u2net/$KIND.onnx"
rembg_env=(env U2NET_HOME="$OUT/u2net" MODEL_CHECKSUM_DISABLED=1 OMP_NUM_THREADS="$THREADS")

# timed LABEL CMD...: runs CMD under /usr/bin/time -v; its output goes to OUT/time/LABEL.log.
timed() {
    local label=$1
    shift
    /usr/bin/time -v -o "$OUT/time/$label.time" "$@" >"$OUT/time/$label.log" 2>&1 ||
        { say "$label failed: see $OUT/time/$label.log"; return 1; }
}
wall() { awk -F': ' '/Elapsed \(wall clock\)/ { n = split($2, t, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + t[i]; printf "%.2f", s }' "$OUT/time/$1.time"; }
rss_mb() { awk '/Maximum resident set size/ { printf "%.0f", $NF / 1024 }' "$OUT/time/$1.time"; }

say "model: $MODEL ($KIND), $THREADS threads, runtime $ORT_DYLIB_PATH"
say "cutout: $CUTOUT_BIN"
say "rembg:  $REMBG"
say "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
say "outputs: $OUT"
say ""

printf '%-16s %9s | %9s %9s | %11s %11s | %8s %8s\n' picture size "cutout s" "rembg s" "cutout MB" "rembg MB" "max diff" ">2/255"
for p in "$OUT"/in/*; do
    stem=$(basename "${p%.*}")
    timed "cutout-$stem" "${cutout_cmd[@]}" "$OUT/cutout-cold" "$p"
    c_s=$(wall "cutout-$stem") c_mb=$(rss_mb "cutout-$stem")
    r_s=- r_mb=- diff=- over=-
    if [ "$REMBG" != none ]; then
        timed "rembg-$stem" "${rembg_env[@]}" "$REMBG" i -m "$KIND" "$p" "$OUT/rembg-cold/$stem.png"
        r_s=$(wall "rembg-$stem") r_mb=$(rss_mb "rembg-$stem")
        read -r diff over < <("$PYTHON" - "$OUT/cutout-cold/$stem.png" "$OUT/rembg-cold/$stem.png" <<'PY'
import sys
import numpy as np
from PIL import Image
a, b = (np.asarray(Image.open(f).convert("RGBA"))[:, :, 3].astype(int) for f in sys.argv[1:3])
d = np.abs(a - b)
print(d.max(), f"{(d > 2).mean() * 100:.3f}%")
PY
)
    fi
    size=$("$PYTHON" -c "from PIL import Image; import sys; print('%dx%d' % Image.open(sys.argv[1]).size)" "$p" 2>/dev/null || echo "?")
    printf '%-16s %9s | %9s %9s | %11s %11s | %8s %8s\n' "$stem" "$size" "$c_s" "$r_s" "$c_mb" "$r_mb" "$diff" "$over"
done

n=${#pictures[@]}
timed cutout-all "${cutout_cmd[@]}" "$OUT/cutout-warm" "$OUT"/in/*
line=$(printf 'all %d in one process: cutout %ss (%s MB)' "$n" "$(wall cutout-all)" "$(rss_mb cutout-all)")
if [ "$REMBG" != none ]; then
    timed rembg-all "${rembg_env[@]}" "$REMBG" p -m "$KIND" "$OUT/in" "$OUT/rembg-warm"
    line+=$(printf ', rembg p %ss (%s MB)' "$(wall rembg-all)" "$(rss_mb rembg-all)")
fi
echo "$line"
# cutout_one also times each picture inside the process (decode → mask → encode, model already loaded).
grep -h '^picture:' "$OUT/time/cutout-all.log" 2>/dev/null | sed 's/^/  cutout in-process /' || true
