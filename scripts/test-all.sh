#!/usr/bin/env bash
# Every test in every language, from a fresh Debian/Ubuntu machine: installs what is missing,
# generates the test videos, then runs the Rust, Python and Node suites and the linters.
# All builds share one cargo target dir (target/) and the dev profile, so the engine is compiled once.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

step() { printf '\n==> %s\n' "$*"; }

step "system packages"
bash scripts/setup-system.sh
export PATH="$HOME/.cargo/bin:$PATH"

step "test data"
bash scripts/make-test-data.sh

step "rust: format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings

step "rust: tests"
cargo test --workspace

step "python bindings"
bash bindings-python/test.sh

step "node bindings"
bash bindings-node/test.sh

step "all suites passed"
