#!/usr/bin/env bash
# The reference implementation (transformers' VideoLlavaForConditionalGeneration) and the peers the
# benchmarks time, in their own venv (.venv-ref, about 3 GB). Only fixture regeneration and the
# comparison benchmarks need it; the test suite does not.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${REF_VENV:-.venv-ref}
if [ ! -x "$VENV/bin/python" ]; then python3 -m venv "$VENV"; fi
"$VENV/bin/pip" install -q --upgrade pip
"$VENV/bin/pip" install -q torch torchvision transformers av numpy safetensors pillow sentencepiece protobuf tokenizers torchcodec decord
