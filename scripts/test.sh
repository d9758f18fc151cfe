#!/usr/bin/env bash
# The test command (README "Run the tests"; .ci/run calls exactly this).
# Sets up what the tests need on a fresh machine, then runs `cargo test`.
#  - the models block below (U²-Net-p and the ONNX Runtime library);
#  - systemd-analyze (Debian's `systemd` package) to verify the unit file;
#  - sshd and rsync (Debian's `openssh-server`, `rsync`) for the real-client
#    upload tests (tests/intake.rs);
#  - PostgreSQL (Debian's `postgresql`: initdb + pg_ctl) for the shared-state
#    tests (tests/store_pg.rs; tests/support/postgres.rs starts a throwaway
#    cluster as an unprivileged user).
#  - chromium and chromedriver (Debian's `chromium`, `chromium-driver`) for
#    the review page's browser test (tests/browser.rs).
# Each step is skipped with a message when it cannot be done; the tests that
# need it then say why they are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

# --- models (owner: `cutout models`, src/models) ---------------------------
# U²-Net-p (4.6 MB) and the ONNX Runtime library (from the PyPI `onnxruntime`
# wheel) into ./models with cutout's own command, SHA-256 checked; then the
# real-weights tests run (tests/models.rs: a real photo through the daemon,
# mask parity with rembg) and the tiny-model tests find the runtime.
# Idempotent: what is installed and verified is not fetched again.
cargo run --release --locked --quiet -- models fetch u2netp --dir models \
  || echo "test.sh: could not fetch all of u2netp and the ONNX Runtime; the tests that need them will say they are skipped"
if [ -f models/u2netp.onnx ]; then
  export CUTOUT_TEST_MODELS="$PWD/models"
fi
if [ -z "${ORT_DYLIB_PATH:-}" ] && [ -f models/libonnxruntime.so.1.31.1 ]; then
  export ORT_DYLIB_PATH="$PWD/models/libonnxruntime.so.1.31.1"
fi
echo "test.sh: CUTOUT_TEST_MODELS=${CUTOUT_TEST_MODELS:-} ORT_DYLIB_PATH=${ORT_DYLIB_PATH:-}"
# --- end of models block -----------------------------------------------------

if ! command -v systemd-analyze >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd >/dev/null) \
      || echo "test.sh: could not install systemd; the unit verification test will be skipped"
  fi
fi

if ! command -v /usr/sbin/sshd >/dev/null 2>&1 || ! command -v rsync >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server openssh-client rsync >/dev/null) \
      || echo "test.sh: could not install openssh-server/rsync; the sftp and rsync upload tests will be skipped"
  fi
fi

if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) \
      || echo "test.sh: could not install postgresql; the shared-state tests will be skipped"
  fi
fi

# Chromium and its WebDriver (Debian's `chromium`, `chromium-driver`) for the
# review page's browser test (tests/browser.rs).
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
      || echo "test.sh: could not install chromium/chromium-driver; the browser test will be skipped"
  fi
fi

# The release profile: the tests run the real binary doing real pixel work,
# and `cargo run --release` (the README's other command) then shares every
# compiled crate with the tests instead of building them all a second time.
cargo test --workspace --locked --release "$@"
