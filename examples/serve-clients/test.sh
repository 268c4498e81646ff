#!/usr/bin/env bash
# `video-llava serve` with real clients: the official openai Python package, the official openai
# npm package, and the page in a headless Chromium (Debian's chromium, driven by playwright-core).
# Starts one server on 127.0.0.1 (an ephemeral port) with the tiny model fixture and a fresh data
# dir under target/, runs the three suites against it, and stops it. Screenshots of the page land
# in target/serve-page/. Needs the test videos (scripts/make-test-data.sh); idempotent.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"
triple="${CARGO_BUILD_TARGET:-$(rustc -vV | sed -n 's/^host: //p')}"
export CARGO_BUILD_TARGET="$triple"
cargo build -q -p video-llava-cli
bin="$root/target/$triple/debug/video-llava"

venv="${VIDEO_LLAVA_VENV:-$root/.venv}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
need=()
for pair in openai:openai pytest:pytest; do
  "$venv/bin/python" -c "import importlib.util,sys; sys.exit(importlib.util.find_spec('${pair%%:*}') is None)" \
    || need+=("${pair#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  "$venv/bin/python" -m pip install -q --disable-pip-version-check "${need[@]}"
fi
(cd "$here" && npm install --no-audit --no-fund --loglevel=error)

video="$root/test-data/videos/vp9.webm"
[ -f "$video" ] || { echo "missing $video: run scripts/make-test-data.sh" >&2; exit 1; }
chromium="${CHROMIUM:-/usr/bin/chromium}"
[ -x "$chromium" ] || { echo "missing $chromium: run scripts/setup-system.sh" >&2; exit 1; }

data="$root/target/serve-clients-data"
rm -rf "$data"
max_tokens=16
model="$root/video-llava/tests/fixtures/tiny-legacy"
out="$(mktemp)"
HF_HUB_OFFLINE=1 "$bin" serve --model "$model" --device cpu --port 0 --data-dir "$data" \
  --max-new-tokens "$max_tokens" >"$out" 2>"$data.log" &
server=$!
trap 'kill $server 2>/dev/null || true; wait $server 2>/dev/null || true; rm -f "$out"' EXIT
for _ in $(seq 1 600); do
  grep -q '^listening on ' "$out" && break
  kill -0 $server 2>/dev/null || { cat "$data.log" >&2; exit 1; }
  sleep 0.1
done
url="$(sed -n 's/^listening on //p' "$out")"
for _ in $(seq 1 600); do
  curl -sf "$url/health" >/dev/null && break
  kill -0 $server 2>/dev/null || { cat "$data.log" >&2; exit 1; }
  sleep 0.1
done
curl -sf "$url/health" >/dev/null

export VIDEO_LLAVA_URL="$url" VIDEO_LLAVA_MODEL="$model" VIDEO_LLAVA_BIN="$bin" \
  VIDEO_LLAVA_VIDEO="$video" VIDEO_LLAVA_MAX_TOKENS="$max_tokens" CHROMIUM="$chromium"
"$venv/bin/python" -m pytest -q "$here/test_openai_python.py"
(cd "$here" && npm test)
