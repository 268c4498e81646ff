#!/usr/bin/env bash
# The GPU comparison, run on the GPU machine from the repository root (driver, torch and transformers
# with CUDA 13 libraries there; no Rust toolchain, no FFmpeg, no network). Needs .gpu-carry/stages.xz from
# benches/gpu/build.sh. Writes the table to $OUT/gpu-compare.md (or /tmp) and prints it.
#
#   bash benches/gpu/run.sh [compare_gpu.py arguments, default: --shapes 7b --dtype bf16 --reps 3]
#
# candle loads cuBLAS, cuRAND, NVRTC and the CUDA runtime at run time (cudarc's dynamic linking):
# the copies in the Python site-packages (PyTorch's CUDA 13 wheels) serve; the driver gives libcuda.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
PY=${PYTHON:-python3}
PACKED=.gpu-carry/stages.xz
[ -f "$PACKED" ] || { echo "gpu/run.sh: $PACKED missing: run benches/gpu/build.sh on the build machine and carry .gpu-carry" >&2; exit 2; }
BIN=${TMPDIR:-/tmp}/video-llava-stages
"$PY" -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$PACKED" "$BIN"
chmod +x "$BIN"
LIBDIR=$("$PY" - <<'PY'
import glob, os, site, sys
roots = site.getsitepackages() + [site.getusersitepackages()] + [p for p in sys.path if p]
dirs, missing = [], []
for lib in ["libcublas.so.13", "libcublasLt.so.13", "libcurand.so.10", "libcudart.so.13", "libnvrtc.so.13"]:
    hits = [h for r in roots for h in sorted(glob.glob(os.path.join(r, "nvidia", "**", lib), recursive=True))]
    if hits:
        d = os.path.dirname(hits[0])
        if d not in dirs:
            dirs.append(d)
    else:
        missing.append(lib)
if missing:
    print("gpu/run.sh: not in the Python site-packages: " + ", ".join(missing), file=sys.stderr)
print(":".join(dirs))
PY
)
if [ -z "$LIBDIR" ]; then
  echo "gpu/run.sh: no CUDA 13 libraries in the Python site-packages (torch built for CUDA 13 brings them)" >&2
  exit 2
fi
export LD_LIBRARY_PATH="$LIBDIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
echo "gpu/run.sh: CUDA libraries from $LIBDIR" >&2
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
if ldd "$BIN" | grep "not found"; then
  echo "gpu/run.sh: $BIN cannot find the libraries above" >&2
  exit 2
fi
OUTDIR=${OUT:-/tmp}
mkdir -p "$OUTDIR"
if [ "$#" -eq 0 ]; then
  set -- --shapes 7b --dtype bf16 --reps 3
fi
PYTHONUNBUFFERED=1 "$PY" benches/gpu/compare_gpu.py --binary "$BIN" --markdown "$OUTDIR/gpu-compare.md" "$@"
