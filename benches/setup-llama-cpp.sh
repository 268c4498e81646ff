#!/usr/bin/env bash
# llama.cpp itself, the peer of the quantized benchmarks (benches/compare.py --only quantized):
# the llama.cpp that llama-cpp-python vendors, from that package's source on PyPI (the one
# registry this machine reaches), built for this CPU with its own CMake build. Gives
#   .cache/llama.cpp/src/                 the sources, with convert_hf_to_gguf.py and gguf-py
#   .cache/llama.cpp/build/bin/llama-bench, llama-quantize
# and puts cmake and ninja into the reference venv (.venv-ref, scripts/setup-reference.sh, made
# first when missing), which has what convert_hf_to_gguf.py imports (torch, transformers). Idempotent; about 10 min of
# building on 2 cores. Benchmarks only: the test suite does not need it.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=0.3.36
SHA256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
DEST=.cache/llama.cpp
VENV=${REF_VENV:-.venv-ref}

if [ ! -x "$VENV/bin/python" ]; then bash scripts/setup-reference.sh; fi
VENV=$(cd "$VENV" && pwd)
"$VENV/bin/pip" install -q cmake ninja

if [ ! -f "$DEST/src/convert_hf_to_gguf.py" ]; then
  mkdir -p "$DEST"
  tarball="$DEST/llama_cpp_python-$VERSION.tar.gz"
  if [ ! -f "$tarball" ]; then
    url=$("$VENV/bin/python" - "$VERSION" <<'PY'
import json, sys, urllib.parse, urllib.request
# The project-wide JSON (the per-version URL is not served by every mirror), its release list;
# a mirror may give the file's URL relative to the JSON's.
index = "https://pypi.org/pypi/llama-cpp-python/json"
meta = json.load(urllib.request.urlopen(index))
files = meta["releases"][sys.argv[1]]
print(urllib.parse.urljoin(index, next(f["url"] for f in files if f["packagetype"] == "sdist")))
PY
)
    curl -fsSL -o "$tarball.part" "$url"
    mv "$tarball.part" "$tarball"
  fi
  echo "$SHA256  $tarball" | sha256sum -c --quiet
  tmp=$(mktemp -d)
  tar xzf "$tarball" -C "$tmp"
  rm -rf "$DEST/src"
  mv "$tmp/llama_cpp_python-$VERSION/vendor/llama.cpp" "$DEST/src"
  rm -rf "$tmp"
fi

if [ ! -x "$DEST/build/bin/llama-bench" ] || [ ! -x "$DEST/build/bin/llama-quantize" ]; then
  PATH="$VENV/bin:$PATH"
  # GGML_NATIVE: the kernels for this CPU (AVX2 / AVX-512 / VNNI / AMX where present), as a user
  # building llama.cpp here gets by default. No CURL (no network), no server or examples.
  cmake -S "$DEST/src" -B "$DEST/build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DGGML_NATIVE=ON -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_BUILD_SERVER=OFF -DBUILD_SHARED_LIBS=OFF
  cmake --build "$DEST/build" -j "$(nproc)" --target llama-bench llama-quantize
fi
# (The help text is read whole first: `grep -q` would stop reading it, and pipefail would take
# llama-bench's SIGPIPE for a failure.)
help=$("$DEST/build/bin/llama-bench" --help 2>&1 || true)
grep -q -- '--n-depth' <<<"$help" \
  || { echo "setup-llama-cpp: this llama-bench has no --n-depth" >&2; exit 1; }
echo "setup-llama-cpp: llama.cpp from llama-cpp-python $VERSION in $DEST"
