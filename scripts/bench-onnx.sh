#!/usr/bin/env bash
# Batch benchmark of cutout's local ONNX engine against rembg and against
# bare ONNX Runtime inference: same 8 photos, same model file, same thread
# count, interleaved in ONE run (round after round), so a busy machine slows
# all of them alike. A documented command, not a timed test.
#
#   scripts/bench-onnx.sh
#
# The photos (scripts/bench-photos.py): ../shared/samples/*.png and
# scikit-image's rocket photo, each also mirrored and re-encoded as JPEG.
# Each round runs, each under /usr/bin/time -v (wall, peak RSS):
#   cutout   `cutout process` on an inbox holding the 8 photos (engine onnx,
#            concurrency = parallel = P, for every P in PARALLEL), debug log
#            kept for the per-picture breakdown
#   rembg    `rembg p -m KIND IN OUT` (PyPI rembg 2.0.86; U2NET_HOME = a folder
#            holding the same model file, MODEL_CHECKSUM_DISABLED=1,
#            OMP_NUM_THREADS=THREADS)
#   bare     scripts/bench-bare.py: one ONNX Runtime session, the model run
#            once per photo (python onnxruntime in the same venv as rembg)
# Then prints medians over the rounds, ratios, the per-picture breakdown of
# cutout's steps, and mask parity (cutout vs rembg: max |diff|, IoU at 128).
#
# Environment (defaults in brackets):
#   MODEL     the .onnx file        [models/isnet-general-use.onnx]
#   KIND      model kind/rembg name [isnet-general-use]
#   THREADS   inference threads     [2]
#   PARALLEL  cutout settings       ["1"]  e.g. "1 2" (threads stays THREADS)
#   ARENA     memory_arena settings ["false"]  e.g. "false true"
#   ALSO_MODEL  a second model file cutout also runs (labels end in -also),
#             e.g. the float16 original of an `--fp32` MODEL [none]
#   ROUNDS    rounds                [3]
#   ORT_DYLIB_PATH  cutout's runtime [libonnxruntime.so.* beside MODEL]
#   SAMPLES   the sample photos    [../shared/samples beside the repo]
#   VENV      python venv with rembg 2.0.86 + onnxruntime + scikit-image
#             [target/rembg-venv, created with pip when missing]
#   OUT       outputs and logs      [a new temporary folder]
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MODEL=${MODEL:-$repo/models/isnet-general-use.onnx}
KIND=${KIND:-isnet-general-use}
THREADS=${THREADS:-2}
PARALLEL=${PARALLEL:-1}
ARENA=${ARENA:-false}
ROUNDS=${ROUNDS:-3}
SAMPLES=${SAMPLES:-$repo/../shared/samples}
VENV=${VENV:-$repo/target/rembg-venv}
OUT=${OUT:-$(mktemp -d -t cutout-bench.XXXXXX)}
say() { printf '%s\n' "$*" >&2; }

[ -f "$MODEL" ] || { say "no model at $MODEL: cutout models fetch $KIND --dir $(dirname "$MODEL")"; exit 1; }
MODEL=$(cd "$(dirname "$MODEL")" && pwd)/$(basename "$MODEL")
if [ -z "${ORT_DYLIB_PATH:-}" ]; then
    ORT_DYLIB_PATH=$(find "$(dirname "$MODEL")" -maxdepth 1 -name 'libonnxruntime.so.*' | sort -V | tail -n 1)
    [ -n "$ORT_DYLIB_PATH" ] || { say "no ONNX Runtime: cutout models fetch onnxruntime --dir $(dirname "$MODEL")"; exit 1; }
fi
export ORT_DYLIB_PATH
[ -x /usr/bin/time ] || { say "needs GNU time at /usr/bin/time (apt-get install time)"; exit 1; }
(cd "$repo" && cargo build --release --locked --bin cutout >&2)
CUTOUT=$repo/target/release/cutout
if [ ! -x "$VENV/bin/rembg" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q "rembg[cli]==2.0.86" onnxruntime scikit-image >&2
fi
PY=$VENV/bin/python

# The photos.
rocket=$("$PY" -c 'import os, skimage; print(os.path.join(os.path.dirname(skimage.__file__), "data", "rocket.jpg"))')
[ -f "$rocket" ] || { say "scikit-image's rocket.jpg is not at $rocket"; exit 1; }
"$PY" "$repo/scripts/bench-photos.py" "$OUT/photos" "$SAMPLES"/*.png "$rocket"
mkdir -p "$OUT/u2net" "$OUT/time"
ln -sf "$MODEL" "$OUT/u2net/$KIND.onnx"

timed() { # LABEL CMD...: CMD under /usr/bin/time -v, stdout+stderr to OUT/time/LABEL.log
    local label=$1
    shift
    /usr/bin/time -v -o "$OUT/time/$label.time" "$@" >"$OUT/time/$label.log" 2>&1 ||
        { say "$label failed: see $OUT/time/$label.log"; return 1; }
}

run_cutout() { # ROUND P ARENA [MODEL SUFFIX]
    local label=cutout-p$2${3/#true/-arena}
    label=${label%false}${5:-}
    local model=${4:-$MODEL}
    local dir=$OUT/$label-r$1
    mkdir -p "$dir/inbox" "$dir/outbox"
    cp "$OUT"/photos/* "$dir/inbox/"
    cat >"$dir/cutout.toml" <<TOML
state_dir = "$dir/state"
[queue]
concurrency = $2
[[inbox]]
path = "$dir/inbox"
outbox = "$dir/outbox"
archive = "$dir/archive"
rejected = "$dir/rejected"
failed = "$dir/failed"
provider = "onnx"
settle = "0s"
[providers.onnx]
kind = "local"
engine = "onnx"
model = "$model"
model_kind = "$KIND"
threads = $THREADS
parallel = $2
memory_arena = $3
TOML
    timed "$label-r$1" "$CUTOUT" process -c "$dir/cutout.toml" --log info,cutout=trace
}
run_rembg() { # ROUND
    rm -rf "$OUT/rembg-r$1"
    timed "rembg-r$1" env U2NET_HOME="$OUT/u2net" MODEL_CHECKSUM_DISABLED=1 OMP_NUM_THREADS="$THREADS" \
        "$VENV/bin/rembg" p -m "$KIND" "$OUT/photos" "$OUT/rembg-r$1"
}
run_bare() { # ROUND
    timed "bare-r$1" "$PY" "$repo/scripts/bench-bare.py" "$MODEL" "$THREADS" "$OUT"/photos/*
}

say "model $MODEL ${ALSO_MODEL:+(and $ALSO_MODEL for cutout) }($KIND), $THREADS threads, runtime $ORT_DYLIB_PATH, rounds $ROUNDS, cutout parallel: $PARALLEL"
say "outputs and logs: $OUT"
for r in $(seq 1 "$ROUNDS"); do
    say "round $r/$ROUNDS (load $(cut -d' ' -f1-3 /proc/loadavg))"
    for p in $PARALLEL; do for a in $ARENA; do
        run_cutout "$r" "$p" "$a"
        [ -z "${ALSO_MODEL:-}" ] || run_cutout "$r" "$p" "$a" "$ALSO_MODEL" -also
    done; done
    run_rembg "$r"
    run_bare "$r"
done
labels=()
for p in $PARALLEL; do for a in $ARENA; do
    l=cutout-p$p${a/#true/-arena}
    labels+=("${l%false}")
    [ -z "${ALSO_MODEL:-}" ] || labels+=("${l%false}-also")
done; done
"$PY" "$repo/scripts/bench-report.py" "$OUT" "$ROUNDS" "${labels[*]}"
