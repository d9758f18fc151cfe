#!/usr/bin/env bash
# Put the ONNX Runtime shared library that cutout's local engine loads into DIR.
#
#   scripts/fetch-onnxruntime.sh [DIR]        # DIR defaults to ./models
#
# cutout is built with `ort`'s load-dynamic and api-31 features: it needs
# libonnxruntime 1.31 or newer at run time and nothing at build time. The
# library comes from the PyPI `onnxruntime` wheel (`pip download`, no
# install), which ships it as onnxruntime/capi/libonnxruntime.so.<version>.
#
# Environment:
#   ORT_VERSION   wheel version to fetch (default 1.31.1, the tested one)
#   PYTHON        python with pip (default python3)
#
# Prints the library's absolute path as the last line of stdout, so
#   export ORT_DYLIB_PATH="$(scripts/fetch-onnxruntime.sh models | tail -n 1)"
# works. Idempotent: returns at once when the library is already in DIR.
set -euo pipefail

dir=${1:-./models}
version=${ORT_VERSION:-1.31.1}
python=${PYTHON:-python3}
lib_name="libonnxruntime.so.${version}"

say() { printf '%s\n' "$*" >&2; }

case "$(uname -s)" in
Linux) ;;
*) say "fetch-onnxruntime.sh: only Linux is handled (the wheel for $(uname -s) ships a differently named library)"; exit 1 ;;
esac

mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
lib="$dir/$lib_name"

if [ -s "$lib" ]; then
    say "ONNX Runtime ${version} is already in $dir"
    say "  export ORT_DYLIB_PATH=$lib"
    printf '%s\n' "$lib"
    exit 0
fi

command -v "$python" >/dev/null || { say "fetch-onnxruntime.sh: needs $python with pip"; exit 1; }
"$python" -m pip --version >/dev/null 2>&1 || { say "fetch-onnxruntime.sh: needs pip ($python -m pip)"; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

say "downloading the onnxruntime ${version} wheel with pip…"
# The wheel for this interpreter; if pip has none for it (a too new or too
# old Python), any CPython 3.11 manylinux wheel carries the same library.
if ! "$python" -m pip download --quiet --no-deps --only-binary=:all: -d "$tmp" "onnxruntime==${version}" >&2; then
    say "no wheel for this python; trying the CPython 3.11 one"
    "$python" -m pip download --quiet --no-deps --only-binary=:all: -d "$tmp" \
        --python-version 3.11 --implementation cp --abi cp311 \
        --platform "manylinux_2_28_$(uname -m)" --platform "manylinux_2_27_$(uname -m)" \
        --platform "manylinux_2_17_$(uname -m)" "onnxruntime==${version}" >&2
fi

wheel=$(find "$tmp" -maxdepth 1 -name 'onnxruntime-*.whl' | head -n 1)
[ -n "$wheel" ] || { say "fetch-onnxruntime.sh: pip downloaded no onnxruntime wheel"; exit 1; }

"$python" - "$wheel" "$lib" "$lib_name" <<'PY'
import shutil, sys, zipfile
wheel, dest, name = sys.argv[1:4]
with zipfile.ZipFile(wheel) as z:
    member = f"onnxruntime/capi/{name}"
    if member not in z.namelist():
        sys.exit(f"{member} is not in {wheel}")
    with z.open(member) as src, open(dest + ".part", "wb") as out:
        shutil.copyfileobj(src, out)
PY
chmod 755 "$lib.part"
mv "$lib.part" "$lib"

say "ONNX Runtime ${version}: $lib ($(du -h "$lib" | cut -f1))"
say "  export ORT_DYLIB_PATH=$lib"
say "  or in cutout's config: onnxruntime = \"$lib\""
printf '%s\n' "$lib"
