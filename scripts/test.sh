#!/usr/bin/env bash
# The test command (README "Run the tests"; .ci/run calls exactly this).
# Sets up what the tests need on a fresh machine, then runs `cargo test`.
#  - ONNX Runtime's shared library from the PyPI `onnxruntime` wheel (for the
#    local-model tests), into ./models/, exported as ORT_DYLIB_PATH;
#  - systemd-analyze (Debian's `systemd` package) to verify the unit file.
# Each step is skipped with a message when it cannot be done; the tests that
# need it then say why they are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -x scripts/fetch-onnxruntime.sh ] && [ -z "${ORT_DYLIB_PATH:-}" ]; then
  if lib=$(scripts/fetch-onnxruntime.sh models | tail -n 1) && [ -f "$lib" ]; then
    export ORT_DYLIB_PATH="$lib"
    echo "test.sh: ORT_DYLIB_PATH=$ORT_DYLIB_PATH"
  else
    echo "test.sh: could not install ONNX Runtime ($lib); ONNX tests will be skipped"
  fi
fi

if ! command -v systemd-analyze >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd >/dev/null) \
      || echo "test.sh: could not install systemd; the unit verification test will be skipped"
  fi
fi

# The release profile: the tests run the real binary doing real pixel work,
# and `cargo run --release` (the README's other command) then shares every
# compiled crate with the tests instead of building them all a second time.
cargo test --workspace --locked --release "$@"
