#!/usr/bin/env bash
# The benchmark and soak command of issue 6 (not part of the default test
# run; BENCHMARKS.md holds the figures it produced). In one go, on a release
# build:
#   1. benches/load.rs — the real `cutout` binary against the fake provider
#      on 127.0.0.1 (200 ms per picture): throughput by concurrency, the
#      rate-limited run, the naive curl loop side by side, the 10,000-file
#      burst, drop→cut-out latency, CPU per picture at 1/4/12 MP, and
#      the learned rate (`requests_per_second = "auto"` against an
#      undeclared 5/s and 20/s limit; BENCH_ONLY=autorate, repeats with
#      BENCH_AUTORATE="5:100,20:100,5:100,20:100");
#   1b. examples/finish_bench.rs — finishing CPU per picture at 1/4/12 MP
#      with three outputs (BENCH_ONLY=finish runs only this section);
#   1c. examples/review_bench.rs — review page server time with 100,000
#      indexed outcomes (BENCH_ONLY=review; REVIEW_BENCH_LINES to change);
#   1d. tests/scale_out.rs — 3 instances on PostgreSQL (BENCH_ONLY=scaleout
#      runs only this section; see docs/scale-out.md);
#   2. tests/crash.rs, full size — kill -9 at random moments during a
#      300-file batch, restart, 10 times; plus the quick fault runs
#      (provider outage, 5xx bursts, cut answers) on the release build.
# The report goes to stdout and to $BENCH_OUT (default
# target/bench/report.md, or under $CARGO_TARGET_DIR).
#
#   scripts/bench.sh                  # everything, about 10-15 minutes
#   BENCH_QUICK=1 scripts/bench.sh    # smoke run, about 2 minutes
#   BENCH_ONLY=burst,latency scripts/bench.sh   # some sections, no crash suite
#
# Every size is an environment variable; see `Knobs` in benches/load.rs
# (BENCH_FILES, BENCH_CONCURRENCY, BENCH_BURST, BENCH_CPU, …) and the top of
# tests/crash.rs (CRASH_FILES, CRASH_KILLS, CRASH_SEED). BENCH_DIR puts the
# temporary sites on another filesystem (default: the system temp folder).
# Run it on a quiet machine: the figures are wall-clock.
set -euo pipefail
cd "$(dirname "$0")/.."

target=${CARGO_TARGET_DIR:-target}
export BENCH_OUT=${BENCH_OUT:-$target/bench/report.md}
# Which code was measured (printed in the report).
rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
  rev="$rev + uncommitted changes"
fi
export BENCH_REV=${BENCH_REV:-$rev}
mkdir -p "$(dirname "$BENCH_OUT")"

if [ "${BENCH_QUICK:-0}" != 0 ]; then
  export CRASH_FILES=${CRASH_FILES:-60} CRASH_KILLS=${CRASH_KILLS:-3}
fi

echo "bench.sh: building (release)…" >&2
cargo build --release --locked --workspace
cargo test --release --locked --bench load --test crash --test scale_out --no-run

cargo test --release --locked --bench load -- --ignored --nocapture --test-threads=1

# Finishing (issue 12): CPU per picture at 1, 4, 12 MP with three outputs
# (amazon + transparent PNG + thumbnail), in memory. Goal ≤ 0.5 s at 12 MP.
case ",${BENCH_ONLY:-finish}," in
  *,finish,*)
    echo "bench.sh: finishing CPU per picture (examples/finish_bench.rs)…" >&2
    {
      echo
      echo "## Finishing: CPU per picture, three outputs (examples/finish_bench.rs)"
      echo
      echo '```'
      cargo run --release --locked --example finish_bench
      echo '```'
    } | tee -a "$BENCH_OUT"
    ;;
esac

# Review page (issue 15): server time of `/` and filtered pages with
# 100,000 indexed outcomes, median and p95. Goal ≤ 300 ms.
case ",${BENCH_ONLY:-review}," in
  *,review,*)
    echo "bench.sh: review page with 100,000 outcomes (examples/review_bench.rs)…" >&2
    {
      echo
      echo "## Review page: server time with 100,000 indexed outcomes (examples/review_bench.rs)"
      echo
      echo '```'
      cargo run --release --locked --example review_bench
      echo '```'
    } | tee -a "$BENCH_OUT"
    ;;
esac

# Scale-out (issue 16): 3 instances as 3 processes of the binary, one
# shared inbox (watch = "poll"), a real PostgreSQL (initdb + pg_ctl in a
# temp folder; skipped with the reason when the postgresql package is
# missing), the fake provider. Sizes: SCALE_FILES (600), SCALE_KILLS (5),
# SCALE_RATE_FILES (150).
case ",${BENCH_ONLY:-scaleout}," in
  *,scaleout,*)
    echo "bench.sh: scale-out on PostgreSQL (tests/scale_out.rs)…" >&2
    scale_log=$(mktemp)
    cargo test --release --locked --test scale_out -- --ignored --nocapture --test-threads=1 \
      2>&1 | tee "$scale_log" >&2 || true
    {
      echo
      echo "## Scale-out: 3 instances on PostgreSQL (tests/scale_out.rs)"
      echo
      echo '```'
      grep -oE 'SCALEOUT-RESULT.*|SKIPPED.*|test result.*' "$scale_log" || true
      echo '```'
    } | tee -a "$BENCH_OUT"
    rm -f "$scale_log"
    ;;
esac

if [ -n "${BENCH_ONLY:-}" ]; then
  exit 0
fi

crash_log=$(mktemp)
trap 'rm -f "$crash_log"' EXIT
echo "bench.sh: crash and fault suite (release build)…" >&2
status=0
cargo test --release --locked --test crash -- --include-ignored --nocapture --test-threads=1 \
  2>&1 | tee "$crash_log" || status=$?

{
  echo
  echo "## Crash and fault suite (tests/crash.rs, release build)"
  echo
  echo '```'
  grep -oE '(CRASH|OUTAGE|FAULTS)-RESULT.*|LITTER.*|test result.*' "$crash_log" || true
  echo '```'
} | tee -a "$BENCH_OUT"
echo "bench.sh: report in $BENCH_OUT" >&2
exit "$status"
