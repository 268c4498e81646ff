#!/usr/bin/env bash
# scripts/fuzz.sh [SECONDS] [TARGET...]: runs every cargo-fuzz target under fuzz/ (or the ones
# named) for SECONDS each (default 60), with AddressSanitizer, and prints each target's
# executions; FUZZ_PARALLEL=N runs N targets at once; FUZZ_SANITIZER=none builds without
# AddressSanitizer (coverage only: panics, hangs, overflows and memory limits are still caught,
# out-of-bounds reads in unsafe code are not). .ci/run runs the short form
# (scripts/test-all.sh: 40 s each, two at a time); a long run is e.g.
# `FUZZ_PARALLEL=2 scripts/fuzz.sh 1200` (all six targets, 2 hours of fuzzing in one hour on 2
# cores), and RELIABILITY.md records one.
#
# Corpora: fuzz/seeds/<target>/ (committed, made by fuzz/make_seeds.py) plus, for the sampler,
# every test video (scripts/make-test-data.sh) behind a request header; what a run adds is
# kept in fuzz/corpus/<target>/ (ignored by git) for the next run. Every run replays the seeds
# and fuzz/regressions/<target>/ first. A crash fails the script:
# its input is in fuzz/artifacts/<target>/; minimize it with `cargo fuzz tmin <target> FILE`,
# fix the bug and commit the minimized input under fuzz/regressions/<target>/, where every
# fuzz run (and `cargo test --manifest-path fuzz/Cargo.toml`, without a fuzzer) replays it.
#
# Needs a nightly toolchain for -Zsanitizer (the one rustup has, or the stable one with
# RUSTC_BOOTSTRAP=1) and cargo-fuzz (installed from crates.io when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(sampler planner config weights prompt chat_request)
export PATH="$HOME/.cargo/bin:$PATH"

if ! command -v cargo-fuzz >/dev/null; then
  cargo install -q --debug cargo-fuzz --locked --version 0.13.2  # a debug build: 22 s, not 40, and it only drives cargo
fi
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  fuzz=(cargo +nightly fuzz)
else
  # cargo-fuzz passes -Z flags; the stable compiler takes them when told it may.
  export RUSTC_BOOTSTRAP=1
  fuzz=(cargo fuzz)
fi
unset CARGO_BUILD_TARGET  # cargo-fuzz names the target itself
target_dir="$PWD/target/fuzz"

bash scripts/make-test-data.sh >/dev/null
corpus_of() { mkdir -p "fuzz/corpus/$1"; echo "fuzz/corpus/$1"; }
# The sampler's seeds from the test videos under 200 kB: uniform 4 exact, keyframes fast.
for f in test-data/videos/*.mp4 test-data/videos/*.mkv test-data/videos/*.webm \
         test-data/videos/*.ts test-data/videos/*.avi; do
  [ -f "$f" ] && [ "$(stat -c %s "$f")" -lt 200000 ] || continue
  out="$(corpus_of sampler)/video-$(basename "$f")"
  [ -e "$out" ] || { printf '\x04\x00\x00\x00\x00\x02' | cat - "$f" >"$out"; }
done

sanitizer=${FUZZ_SANITIZER:-address}
echo "==> building the fuzz targets (release, sanitizer: $sanitizer)"
"${fuzz[@]}" build -s "$sanitizer" --fuzz-dir fuzz --target-dir "$target_dir"
stats="target/fuzz/stats.txt"
mkdir -p target/fuzz
: >"$stats"
# One target's run; its line goes to the stats file, its exit status says whether it crashed.
fuzz_one() {
  local t=$1 log="target/fuzz/$1.log"
  # -timeout: an input running 10 s is a hang (the sampler's own deadline is 2 s);
  # -rss_limit_mb: memory that grows past 2 GiB is a bug too.
  # libFuzzer runs every input of the corpus directories first: the seeds and the committed
  # regressions (each crash a run found, minimized) are replayed before anything new is tried.
  local dirs=("$(corpus_of "$t")" "fuzz/seeds/$t")
  [ -d "fuzz/regressions/$t" ] && dirs+=("fuzz/regressions/$t")
  if "${fuzz[@]}" run -s "$sanitizer" --fuzz-dir fuzz --target-dir "$target_dir" "$t" "${dirs[@]}" \
      -- -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
      -max_len=1200000 -print_final_stats=1 >"$log" 2>&1; then
    local runs speed
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    echo "$t: ${runs:-?} executions in ${seconds} s (${speed:-?}/s), no crash" | tee -a "$stats"
  else
    echo "$t: FAILED, see $log and fuzz/artifacts/$t/" | tee -a "$stats"
    grep -E "^==[0-9]+==|panicked|SUMMARY|Test unit written" "$log" | head -20 || true
    return 1
  fi
}
# FUZZ_PARALLEL=N runs N targets at once (each libFuzzer process uses one core).
parallel=${FUZZ_PARALLEL:-1}
status=0
running=0
for t in "${targets[@]}"; do
  if [ "$running" -ge "$parallel" ]; then
    wait -n || status=1
    running=$((running - 1))
  fi
  echo "==> fuzz $t for ${seconds}s"
  fuzz_one "$t" &
  running=$((running + 1))
done
while [ "$running" -gt 0 ]; do
  wait -n || status=1
  running=$((running - 1))
done
exit $status
