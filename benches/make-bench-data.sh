#!/usr/bin/env bash
# Videos for the sampling and thumbnail benchmarks, into .cache/bench/ (gitignored):
#   long-1080p.mp4  10 minutes, 1080p30 H.264, 250-frame GOP, B-frames (the issue's reference video)
#   long-720p.mp4   5 minutes, 720p30 H.264, 250-frame GOP, B-frames
# Encoding takes several minutes on 2 cores (ultrafast preset; content with motion and detail).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=.cache/bench
mkdir -p "$OUT"
make() { # name size seconds
  local f="$OUT/$1"
  [ -s "$f" ] && return 0
  ffmpeg -v error -y -f lavfi -i "testsrc2=size=$2:rate=30:duration=$3" \
    -c:v libx264 -preset ultrafast -bf 3 -g 250 -keyint_min 250 -sc_threshold 0 \
    -pix_fmt yuv420p "$f.tmp.mp4"
  mv "$f.tmp.mp4" "$f"
}
make long-720p.mp4 1280x720 300
make long-1080p.mp4 1920x1080 600
ls -la "$OUT"
