#!/usr/bin/env bash
# Videos for the sampling and thumbnail benchmarks, into .cache/bench/ (gitignored):
#   long-1080p.mp4  10 minutes, 1080p30 H.264, 250-frame GOP, B-frames (the issue's reference video)
#   long-720p.mp4   5 minutes, 720p30 H.264, 250-frame GOP, B-frames
#   long-1080p.mkv, long-1080p.ts   the same stream as long-1080p.mp4, remuxed (no frame table)
#   long-360p.webm  5 minutes, 640x360 VP9 (realtime encoder settings)
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
remux() { # source name
  local f="$OUT/$2"
  [ -s "$f" ] && return 0
  ffmpeg -v error -y -i "$OUT/$1" -map 0:v -c copy "$f.tmp.${2##*.}"
  mv "$f.tmp.${2##*.}" "$f"
}
make long-720p.mp4 1280x720 300
make long-1080p.mp4 1920x1080 600
remux long-1080p.mp4 long-1080p.mkv
remux long-1080p.mp4 long-1080p.ts
if [ ! -s "$OUT/long-360p.webm" ]; then
  ffmpeg -v error -y -f lavfi -i "testsrc2=size=640x360:rate=30:duration=300" \
    -c:v libvpx-vp9 -deadline realtime -cpu-used 8 -g 250 -b:v 1M "$OUT/long-360p.tmp.webm"
  mv "$OUT/long-360p.tmp.webm" "$OUT/long-360p.webm"
fi
ls -la "$OUT"
