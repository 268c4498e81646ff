#!/usr/bin/env bash
# Every test in every language, from a fresh Debian/Ubuntu machine: installs what is missing,
# generates the test videos, then runs the Rust, Python and Node suites and the linters.
# All builds share one cargo target dir (target/) and the dev profile, so the engine is compiled once.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

# Each step prints how long the one before it took, so a slow CI run says where its time went.
step_started=$SECONDS
step() {
  printf '\n(%ds; %ds in all)\n==> %s\n' "$((SECONDS - step_started))" "$SECONDS" "$*"
  step_started=$SECONDS
}

step "system packages"
bash scripts/setup-system.sh
export PATH="$HOME/.cargo/bin:$PATH"
# napi's CLI always passes `--target <host>`, which gives its build a directory of its own
# (target/<host>/debug). Naming the host target for every build puts cargo test, maturin and napi
# in that one directory, so the engine and its dependencies compile once, not twice.
CARGO_BUILD_TARGET="$(rustc -vV | sed -n 's/^host: //p')"
export CARGO_BUILD_TARGET

step "test data"
bash scripts/make-test-data.sh

step "rust: format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings

step "rust: tests"
cargo test --workspace

step "fuzz: lints"
cargo fmt --manifest-path fuzz/Cargo.toml -- --check
cargo clippy --manifest-path fuzz/Cargo.toml --target-dir target --all-targets -- -D warnings

step "fuzz: the committed inputs (seeds, minimized crashes), then 40 s per target, two at a time (the long form, with AddressSanitizer: FUZZ_PARALLEL=2 scripts/fuzz.sh 1200)"
# Without AddressSanitizer: the build takes 5-7 min instead of 9m14s here, and the short run still
# catches panics, hangs and memory blow-ups; the long run keeps the sanitizer for unsafe code.
# Each run replays fuzz/seeds/ and fuzz/regressions/ before fuzzing, which is what
# `cargo test --manifest-path fuzz/Cargo.toml` (fuzz/tests/regressions.rs) does without a
# fuzzer; CI leaves that test out, as its build of the fuzz workspace took 3m37s (2026-12-07).
FUZZ_SANITIZER=none FUZZ_PARALLEL=2 bash scripts/fuzz.sh 40

step "python bindings"
bash bindings-python/test.sh

step "node bindings"
bash bindings-node/test.sh

step "soak, short forms (long forms: benches/soak/README.md)"
.venv/bin/python benches/soak/sampler.py 1000
.venv/bin/python benches/soak/generate.py 200
node benches/soak/generate.mjs 200
.venv/bin/python benches/soak/batch_kill.py --files 18 --kills 3 \
  --cli "target/$CARGO_BUILD_TARGET/debug/video-llava"

step "server clients: openai (Python, npm), the page in Chromium"
bash examples/serve-clients/test.sh

step "all suites passed"
