#!/usr/bin/env bash
# Installs the system packages a fresh Debian/Ubuntu machine lacks to build and test this workspace:
# FFmpeg's libraries and headers (ffmpeg-sys-next binds them with bindgen, which needs libclang),
# the ffmpeg CLI (tests generate their videos with it), Python's venv module, and Chromium for
# the server's page test (driven by playwright-core, which downloads no browser).
set -euo pipefail
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
pkgs=(pkg-config clang libclang-dev ffmpeg
      libavcodec-dev libavformat-dev libavutil-dev libswscale-dev libswresample-dev
      libavfilter-dev libavdevice-dev python3-venv python3-dev unzip curl ca-certificates chromium)
missing=()
for p in "${pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Node.js and npm for the Node bindings (Debian's packages), when the machine has none.
if ! command -v npm >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends nodejs npm
fi

# A Rust toolchain: Debian's rustc is too old for this workspace, so rustup when cargo is missing.
if ! command -v cargo >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/cargo" ]; then
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal -c rustfmt,clippy
fi
