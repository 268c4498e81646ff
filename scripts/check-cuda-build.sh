#!/usr/bin/env bash
# Checks that the engine still builds with candle's `cuda` feature, on a machine with no GPU and
# no driver (like ours). It builds only; the binaries need a GPU machine to run.
#
#   scripts/check-cuda-build.sh                     # video-llava with --features cuda
#   SHARED_DIR=/path/to/shared scripts/check-cuda-build.sh -p video-llava-cli   # other packages/args
#
# The CUDA 13.0 compiler and libraries come from PyPI through $SHARED_DIR/cuda/setup.sh (default:
# ../shared beside the repository root), which also makes a link stub for the absent driver; its
# header says why each piece is pinned. The build goes to its own target dir (target/cuda) so the
# CPU builds in target/ are not invalidated.
#
# Cost: a clean build takes 15-20 minutes on a 2-core machine, most of it nvcc compiling candle's
# kernels; later runs only rebuild what changed. Run it in CI only where the budget allows.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SHARED_DIR=${SHARED_DIR:-$ROOT/../shared}
SETUP=$SHARED_DIR/cuda/setup.sh
if [ ! -f "$SETUP" ]; then
  echo "check-cuda-build: $SETUP not found (set SHARED_DIR to the folder holding cuda/setup.sh)" >&2
  exit 2
fi
eval "$(bash "$SETUP")"
cd "$ROOT"
if [ "$#" -eq 0 ]; then
  set -- -p video-llava
fi
echo "check-cuda-build: cargo build --release --features cuda $* (CUDA_COMPUTE_CAP=$CUDA_COMPUTE_CAP)" >&2
cargo build --release --target-dir "$ROOT/target/cuda" --features cuda "$@"
echo "check-cuda-build: ok" >&2
