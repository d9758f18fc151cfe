#!/usr/bin/env bash
# Put a named background-removal model, and the ONNX Runtime library that runs
# it, into DIR: the documented way to get cutout's local engine going.
#
#   scripts/fetch-model.sh NAME [DIR]         # DIR defaults to ./models
#   scripts/fetch-model.sh --list
#
# NAME is rembg's model name (isnet-general-use, u2net, u2netp, birefnet-general,
# …); the file lands at DIR/NAME.onnx and is checked against a known hash.
# Sources, in order:
#   1. the usual public download address of rembg's models (fails fast when
#      it cannot be reached: 5 s to connect);
#   2. for isnet-general-use only: the npm package @imgly/background-removal-data
#      (`npm pack`), whose dist/resources.json lists the model's chunks under
#      /models/medium; they are joined in order. This is IMG.LY's float16 build
#      of IS-Net (input `input` float32 [1,3,1024,1024]), not byte-identical to
#      rembg's file, so it has its own SHA-256 below.
# Then scripts/fetch-onnxruntime.sh DIR puts the runtime beside it
# (FETCH_RUNTIME=0 skips that).
#
# Environment: CUTOUT_MODEL_BASE_URL (a mirror holding rembg's file names),
# IMGLY_DATA_VERSION (default 1.4.5, the version the hash below was measured on).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
base_url=${CUTOUT_MODEL_BASE_URL:-https://github.com/danielgatis/rembg/releases/download/v0.0.0}
imgly_version=${IMGLY_DATA_VERSION:-1.4.5}

# The npm model's SHA-256, measured on @imgly/background-removal-data 1.4.5
# (22 chunks, 88188479 bytes).
IMGLY_MEDIUM_SHA256=b6e8497ba978a6f5fbb647e419d2696cd80df5a23cb6a8ea532021911bd76acb

# NAME → "remote file name  md5 published by rembg".
declare -A REMOTE=(
    [u2net]="u2net.onnx 60024c5c889badc19c04ad937298a77b"
    [u2netp]="u2netp.onnx 8e83ca70e441ab06c318d82300c84806"
    [u2net_human_seg]="u2net_human_seg.onnx c09ddc2e0104f800e3e1bb4652583d1f"
    [silueta]="silueta.onnx 55e59e0d8062d2f5d013f4725ee84782"
    [isnet-general-use]="isnet-general-use.onnx fc16ebd8b0c10d971d3513d564d01e29"
    [isnet-anime]="isnet-anime.onnx 6f184e756bb3bd901c8849220a83e38e"
    [birefnet-general]="BiRefNet-general-epoch_244.onnx 7a35a0141cbbc80de11d9c9a28f52697"
    [birefnet-general-lite]="BiRefNet-general-bb_swin_v1_tiny-epoch_232.onnx 4fab47adc4ff364be1713e97b7e66334"
    [birefnet-portrait]="BiRefNet-portrait-epoch_150.onnx c3a64a6abf20250d090cd055f12a3b67"
    [birefnet-dis]="BiRefNet-DIS-epoch_590.onnx 2d4d44102b446f33a4ebb2e56c051f2b"
    [birefnet-hrsod]="BiRefNet-HRSOD_DHU-epoch_115.onnx c017ade5de8a50ff0fd74d790d268dda"
    [birefnet-cod]="BiRefNet-COD-epoch_125.onnx f6d0d21ca89d287f17e7afe9f5fd3b45"
    [birefnet-massive]="BiRefNet-massive-TR_DIS5K_TR_TEs-epoch_420.onnx 33e726a2136a3d59eb0fdf613e31e3e9"
)

say() { printf '%s\n' "$*" >&2; }
usage() {
    say "usage: scripts/fetch-model.sh NAME [DIR]   (DIR defaults to ./models)"
    say "names: $(printf '%s\n' "${!REMOTE[@]}" | sort | tr '\n' ' ')"
}

if [ "${1:-}" = "--list" ]; then
    printf '%s\n' "${!REMOTE[@]}" | sort
    exit 0
fi
if [ $# -lt 1 ] || [ $# -gt 2 ]; then
    usage
    exit 2
fi
name=$1
[ -n "${REMOTE[$name]:-}" ] || { say "unknown model '$name'"; usage; exit 2; }
dir=${2:-./models}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
dest="$dir/$name.onnx"
read -r remote_file md5 <<<"${REMOTE[$name]}"

# Whether FILE is a known good copy of the model: rembg's (md5) or, for
# isnet-general-use, the npm build (SHA-256).
verified() {
    local file=$1
    [ -s "$file" ] || return 1
    if [ "$name" = isnet-general-use ] && [ "$(sha256sum "$file" | cut -d' ' -f1)" = "$IMGLY_MEDIUM_SHA256" ]; then
        say "SHA-256 ok ($IMGLY_MEDIUM_SHA256)"
        return 0
    fi
    if [ "$(md5sum "$file" | cut -d' ' -f1)" = "$md5" ]; then
        say "MD5 ok ($md5, as published by rembg); SHA-256 $(sha256sum "$file" | cut -d' ' -f1)"
        return 0
    fi
    return 1
}

from_rembg() {
    local url="$base_url/$remote_file"
    say "downloading $url"
    curl -fL --connect-timeout 5 --progress-bar -o "$dest.part" "$url" || return 1
    verified "$dest.part" || { say "hash mismatch for $url"; rm -f "$dest.part"; return 1; }
    mv "$dest.part" "$dest"
}

from_npm() {
    command -v npm >/dev/null || { say "npm is not installed"; return 1; }
    local tmp
    tmp=$(mktemp -d)
    # shellcheck disable=SC2064
    trap "rm -rf '$tmp'" RETURN
    say "downloading @imgly/background-removal-data@$imgly_version with npm pack (136 MB)…"
    (cd "$tmp" && npm pack --silent "@imgly/background-removal-data@$imgly_version" >/dev/null) || return 1
    say "unpacking…"
    tar -xzf "$tmp"/imgly-background-removal-data-*.tgz -C "$tmp" package/dist || return 1
    python3 - "$tmp/package/dist" "$dest.part" <<'PY' || return 1
import hashlib, json, os, sys
dist, dest = sys.argv[1:3]
entry = json.load(open(os.path.join(dist, "resources.json")))["/models/medium"]
chunks, total, done = entry["chunks"], entry["size"], 0
with open(dest, "wb") as out:
    for i, chunk in enumerate(chunks, 1):
        start, end = chunk["offsets"]
        if start != done:
            sys.exit(f"chunk {i} starts at {start}, expected {done}")
        data = open(os.path.join(dist, chunk["hash"]), "rb").read()
        if len(data) != end - start or hashlib.sha256(data).hexdigest() != chunk["hash"]:
            sys.exit(f"chunk {i} ({chunk['hash']}) is damaged")
        out.write(data)
        done = end
        bar = "#" * (30 * done // total)
        print(f"\rjoining chunks [{bar:<30}] {i}/{len(chunks)} {done / 1e6:.0f}/{total / 1e6:.0f} MB",
              end="", file=sys.stderr, flush=True)
print(file=sys.stderr)
if done != total:
    sys.exit(f"joined {done} bytes, resources.json says {total}")
PY
    verified "$dest.part" || { say "SHA-256 mismatch: the npm package changed (expected $IMGLY_MEDIUM_SHA256)"; rm -f "$dest.part"; return 1; }
    mv "$dest.part" "$dest"
}

if [ -e "$dest" ] && verified "$dest"; then
    say "$name is already in $dir"
elif from_rembg; then
    :
elif [ "$name" = isnet-general-use ]; then
    say "rembg's download address cannot be reached; using the npm package instead"
    from_npm || { rm -f "$dest.part"; say "could not get $name"; exit 1; }
else
    rm -f "$dest.part"
    say "could not download $name: rembg's download address cannot be reached, and only isnet-general-use has another source"
    exit 1
fi

runtime=""
if [ "${FETCH_RUNTIME:-1}" != 0 ]; then
    runtime=$("$here/fetch-onnxruntime.sh" "$dir" | tail -n 1)
fi

say ""
say "model:   $dest"
[ -n "$runtime" ] && say "runtime: $runtime"
say ""
say "cutout config:"
say "  [providers.local]"
say "  kind = \"local\""
say "  engine = \"onnx\""
say "  model = \"$dest\""
say "  model_kind = \"$name\""
[ -n "$runtime" ] && say "  onnxruntime = \"$runtime\""
printf '%s\n' "$dest"
