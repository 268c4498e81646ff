#!/usr/bin/env bash
# Builds what the GPU comparison carries to the GPU machine: `stages` (video-llava/examples/stages.rs)
# with candle's `cuda` feature and without FFmpeg or the hub client (that machine has neither FFmpeg
# nor network nor a Rust toolchain), stripped and xz-compressed, into .gpu-carry/ (ignored by git).
#
#   benches/gpu/build.sh            # here, on the CPU machine; then on the GPU machine:
#   bash benches/gpu/run.sh         # with .gpu-carry carried (device tool: carry [".gpu-carry"])
#
# The build is scripts/check-cuda-build.sh's (CUDA 13.0 from PyPI through $SHARED_DIR/cuda/setup.sh,
# target dir target/cuda), so candle's kernels are compiled once (15-20 minutes on 2 cores).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
# The CPU build's target triple (scripts/test-all.sh sets one) would move the output; build for the host.
unset CARGO_BUILD_TARGET
scripts/check-cuda-build.sh -p video-llava --no-default-features --example stages
# Stripped it is ~50 MB, mostly candle's PTX; xz brings it to ~6 MB, well inside what a device call
# carries (64 MiB with the working tree).
BIN=target/cuda/release/examples/stages
strip -o target/cuda/stages.stripped "$BIN"
mkdir -p .gpu-carry
rm -f .gpu-carry/stages .gpu-carry/stages.xz
xz -T0 -9 -c target/cuda/stages.stripped > .gpu-carry/stages.xz
echo "gpu/build.sh: .gpu-carry/stages.xz ($(du -h .gpu-carry/stages.xz | cut -f1)); the binary needs:" >&2
ldd "$BIN" | awk '{print "  " $1}' >&2
