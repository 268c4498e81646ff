//! Thumbnails and storyboards: pick the frames a person would recognise the video by.
//!
//! The work splits in three rooms:
//! - gathering candidates through the crate's public sampler (keyframes spread over the whole
//!   duration, decoded small; exact frames between them when a clip has too few keyframes),
//! - scoring them without any I/O ([`FrameScore`]: colour histograms as FFmpeg's `thumbnail`
//!   filter uses them, plus the luma statistics that reject black, blank and blurry frames),
//! - choosing and encoding (JPEG, PNG or lossless WebP through the `image` crate).

use image::ImageEncoder;

use crate::{
    Error, FrameBatch, ImageFormat, Resize, Result, SampleOptions, Sampling, SeekMode, Thumbnail,
    ThumbnailOptions, Video,
};

/// Candidates scored for one thumbnail: enough to cover the whole duration, few enough that
/// decoding them (keyframes only, each costing a few inter frames) stays cheaper than FFmpeg
/// decoding and converting its first 100 frames.
const THUMBNAIL_CANDIDATES: usize = 16;
/// Frames a thumbnail may decode beyond keyframes when a clip has too few keyframes: about
/// half of what FFmpeg's `thumbnail` filter decodes (100), of which the decoder further skips
/// the frames nothing references.
const DECODE_BUDGET: u64 = 60;
/// Candidates per storyboard frame, so each segment of the timeline has a choice.
const CANDIDATES_PER_STORYBOARD_FRAME: usize = 3;
/// Scoring size when the requested size is too small to judge sharpness or too large to hold
/// a few dozen candidates cheaply.
const WORKING_SIDE: u32 = 256;
/// Requested sizes in this range are decoded once at their final size, skipping a re-decode.
const DIRECT_SIDE_RANGE: std::ops::RangeInclusive<u32> = 160..=640;

/// Mean luma (0-255, full range) under which a frame counts as black.
const BLACK_LUMA: f64 = 20.0;
/// Luma standard deviation under which a frame counts as blank (one flat colour, any brightness).
const BLANK_LUMA_STD: f64 = 6.0;
/// Share of pixels in one luma bucket (16 levels wide) over which a frame counts as blank.
const BLANK_DOMINANT_SHARE: f64 = 0.95;
/// A frame whose Laplacian variance is under this share of the median of the non-blank
/// candidates counts as blurry (a cross-fade, motion blur, a focus pull).
const BLUR_SHARE_OF_MEDIAN: f64 = 0.25;
/// Mean absolute difference (0-255) of two [`FrameScore::signature`]s under which two frames
/// count as near-identical in a storyboard.
const NEAR_IDENTICAL_MAD: f64 = 4.0;
/// Side of the coarse luma grid kept per frame to tell near-identical frames apart.
const SIGNATURE_SIDE: usize = 16;

/// Ever closer looks for a thumbnail: the first is cheap and nearly always enough; the others
/// run only while every candidate so far is black or blank.
const THUMBNAIL_LOOKS: [Look; 3] = [
    Look {
        count: THUMBNAIL_CANDIDATES,
        reach: Reach::Budget(DECODE_BUDGET),
        between_keyframes: false,
    },
    Look {
        count: THUMBNAIL_CANDIDATES * 4,
        reach: Reach::Budget(DECODE_BUDGET * 4),
        between_keyframes: false,
    },
    // The last resort may decode much of the video; it runs only for videos black at 64
    // keyframes and at the frames just after them, so that it finds content they all miss.
    Look {
        count: THUMBNAIL_CANDIDATES * 4,
        reach: Reach::Whole,
        between_keyframes: true,
    },
];

/// One representative frame of the whole video, encoded. See [`crate::thumbnail`].
pub(crate) fn thumbnail(video: &mut Video, options: &ThumbnailOptions) -> Result<Thumbnail> {
    validate(options)?;
    let plan = SizePlan::new(options.max_size);
    let mut candidates = Candidates::default();
    let (mut scores, mut verdicts) = (Vec::new(), Vec::new());
    for look in THUMBNAIL_LOOKS {
        candidates = gather(video, candidates, look, plan.working, options.rotate)?;
        scores = candidates.scores();
        verdicts = judge(&scores);
        if verdicts.iter().any(|v| v.is_acceptable()) {
            break;
        }
    }
    let best = pick_representative(&scores, &verdicts).ok_or_else(|| no_frames(video))?;
    let mut out = render(video, &candidates, &[best], plan, options)?;
    Ok(out.remove(0))
}

/// The fewest already-decoded frames [`thumbnail_among`] chooses from: fewer cover too little of
/// the video, and its own search (16 keyframes) is used instead.
pub(crate) const MIN_REUSED_FRAMES: usize = 8;

/// A thumbnail chosen among `frames`, already decoded from `video` (the frames sampled for a
/// model, say), so nothing more is read or decoded: they are scaled to the working size,
/// scored and judged as [`thumbnail`]'s own candidates are, and the chosen one is scaled to
/// `max_size` and encoded. Falls back to [`thumbnail`]'s search when the frames cannot stand in
/// for its candidates: fewer than [`MIN_REUSED_FRAMES`], another orientation or aspect than the
/// thumbnail's (`options.rotate` against how they were sampled), smaller than the output, or
/// none fit to show (all black or blank). Repeated frames count once.
pub(crate) fn thumbnail_among(
    video: &mut Video,
    frames: &FrameBatch,
    options: &ThumbnailOptions,
) -> Result<Thumbnail> {
    validate(options)?;
    let info = video.info()?;
    let (want_w, want_h) = if options.rotate || info.rotation % 180 == 0 {
        (info.width, info.height)
    } else {
        (info.height, info.width)
    };
    let (w, h) = (frames.width, frames.height);
    let same_aspect = w > 0
        && h > 0
        && want_w > 0
        && want_h > 0
        && ((w as f64 / h as f64) / (want_w as f64 / want_h as f64) - 1.0).abs() < 0.02;
    let large_enough = w.max(h) >= options.max_size.min(want_w.max(want_h));
    // A batch is built by the sampler, but its fields are public: one that does not hold what
    // it claims is not looked into.
    let whole = frames.timestamps.len() == frames.indices.len()
        && (w as usize)
            .checked_mul(h as usize)
            .and_then(|px| px.checked_mul(3))
            .and_then(|bytes| bytes.checked_mul(frames.indices.len()))
            == Some(frames.data.len());
    // Distinct frames only (a short video sampled uniformly repeats some), as `thumbnail`'s
    // candidates are; `positions` maps each back to the batch.
    let mut positions: Vec<usize> = Vec::new();
    for (i, index) in frames.indices.iter().enumerate() {
        if !positions.iter().any(|&p| frames.indices[p] == *index) {
            positions.push(i);
        }
    }
    if positions.len() < MIN_REUSED_FRAMES || !same_aspect || !large_enough || !whole {
        return thumbnail(video, options);
    }
    let plan = SizePlan::new(options.max_size);
    let Resize::MaxSide(working) = plan.working else {
        return thumbnail(video, options);
    };
    let mut candidates = Candidates::default();
    for &i in &positions {
        let (rgb, width, height) = fit(frames.frame(i), w, h, working);
        candidates.width = width;
        candidates.height = height;
        candidates.frames.push(CandidateFrame {
            index: frames.indices[i],
            timestamp: frames.timestamps[i],
            rgb,
        });
    }
    let scores = candidates.scores();
    let verdicts = judge(&scores);
    let Some(best) = pick_representative(&scores, &verdicts) else {
        return thumbnail(video, options);
    };
    if !verdicts[best].is_acceptable() {
        return thumbnail(video, options);
    }
    let chosen = &candidates.frames[best];
    match plan.redecode {
        None => encode_thumbnail(
            &chosen.rgb,
            candidates.width,
            candidates.height,
            chosen.timestamp,
            options,
        ),
        Some(max_size) => {
            let (rgb, width, height) = fit(frames.frame(positions[best]), w, h, max_size);
            encode_thumbnail(&rgb, width, height, chosen.timestamp, options)
        }
    }
}

/// `rgb` (`width` x `height`) scaled so its longest side is at most `max_side` (never up), as
/// `Resize::MaxSide` sizes a decoded frame. Area averaging (`image`'s `thumbnail`): several
/// times faster than a filtered resize of a full-size frame, and what a large downscale needs.
fn fit(rgb: &[u8], width: u32, height: u32, max_side: u32) -> (Vec<u8>, u32, u32) {
    let size = crate::plan::output_size(width, height, 0, Some(Resize::MaxSide(max_side)));
    match size {
        Ok(size) if (size.width, size.height) != (width, height) => {
            match image::ImageBuffer::<image::Rgb<u8>, &[u8]>::from_raw(width, height, rgb) {
                Some(image) => {
                    let scaled = image::imageops::thumbnail(&image, size.width, size.height);
                    (scaled.into_raw(), size.width, size.height)
                }
                None => (rgb.to_vec(), width, height),
            }
        }
        _ => (rgb.to_vec(), width, height),
    }
}

/// `n` distinct representative frames in time order, each encoded. See [`crate::storyboard`].
pub(crate) fn storyboard(
    video: &mut Video,
    n: usize,
    options: &ThumbnailOptions,
) -> Result<Vec<Thumbnail>> {
    validate_storyboard(n, options)?;
    let plan = SizePlan::new(options.max_size);
    let wanted = n
        .saturating_mul(CANDIDATES_PER_STORYBOARD_FRAME)
        .max(THUMBNAIL_CANDIDATES);
    let mut candidates = Candidates::default();
    let (mut scores, mut verdicts) = (Vec::new(), Vec::new());
    // A second, closer look only when too few candidates are fit to show (a black section).
    for count in [wanted, wanted.saturating_mul(4)] {
        let look = Look {
            count,
            reach: Reach::Whole,
            between_keyframes: false,
        };
        candidates = gather(video, candidates, look, plan.working, options.rotate)?;
        scores = candidates.scores();
        verdicts = judge(&scores);
        if verdicts.iter().filter(|v| v.is_acceptable()).count() >= n {
            break;
        }
    }
    let times: Vec<f64> = candidates.frames.iter().map(|f| f.timestamp).collect();
    let chosen = pick_storyboard(&times, &scores, &verdicts, n);
    if chosen.is_empty() {
        return Err(no_frames(video));
    }
    render(video, &candidates, &chosen, plan, options)
}

/// Checks a storyboard request before anything is opened.
pub(crate) fn validate_storyboard(n: usize, options: &ThumbnailOptions) -> Result<()> {
    if n == 0 {
        return Err(Error::InvalidRequest(
            "a storyboard needs at least one frame (n = 0)".into(),
        ));
    }
    validate(options)
}

/// Checks thumbnail options before anything is opened.
pub(crate) fn validate(options: &ThumbnailOptions) -> Result<()> {
    if options.max_size == 0 {
        return Err(Error::InvalidRequest(
            "thumbnail max_size must be at least 1 pixel".into(),
        ));
    }
    check_quality("thumbnail", options.quality)
}

/// JPEG quality is 1-100; `what` names the option in the message.
pub(crate) fn check_quality(what: &str, quality: u8) -> Result<()> {
    if !(1..=100).contains(&quality) {
        return Err(Error::InvalidRequest(format!(
            "{what} quality must be 1-100, got {quality}"
        )));
    }
    Ok(())
}

fn no_frames(video: &Video) -> Error {
    Error::Decode {
        source_name: video.source_name(),
        frame: None,
        reason: "no frame could be decoded for a thumbnail".into(),
    }
}

/// At which size candidates are decoded, and whether the chosen ones must be decoded again.
#[derive(Clone, Copy, Debug, PartialEq)]
struct SizePlan {
    working: Resize,
    /// `Some(max_size)` when candidates are smaller or larger than the output.
    redecode: Option<u32>,
}

impl SizePlan {
    fn new(max_size: u32) -> Self {
        if DIRECT_SIDE_RANGE.contains(&max_size) {
            Self {
                working: Resize::MaxSide(max_size),
                redecode: None,
            }
        } else {
            Self {
                working: Resize::MaxSide(WORKING_SIDE),
                redecode: Some(max_size),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Gathering candidates (I/O through the public sampler)
// ---------------------------------------------------------------------------------------------

/// One decoded candidate at working size.
#[derive(Clone, Debug)]
struct CandidateFrame {
    index: u64,
    timestamp: f64,
    rgb: Vec<u8>,
}

/// Candidates of one video, all the same size, in time order, one per frame index.
#[derive(Clone, Debug, Default)]
struct Candidates {
    width: u32,
    height: u32,
    frames: Vec<CandidateFrame>,
    /// Indices of the keyframes among `frames`.
    keyframes: Vec<u64>,
    /// The largest `Keyframes { max }` asked so far.
    keyframes_asked: usize,
    /// Whether `keyframes` holds every keyframe of the video (a request returned fewer than asked).
    keyframes_all: bool,
}

impl Candidates {
    /// Adds a batch's frames; frames of another size (which one sampler call should never
    /// give) are dropped rather than mixed into one scoring.
    fn add(&mut self, batch: &FrameBatch) {
        if self.frames.is_empty() {
            (self.width, self.height) = (batch.width, batch.height);
        } else if (batch.width, batch.height) != (self.width, self.height) {
            return;
        }
        self.frames.extend((0..batch.len()).map(|i| CandidateFrame {
            index: batch.indices[i],
            timestamp: batch.timestamps[i],
            rgb: batch.frame(i).to_vec(),
        }));
        self.frames.sort_by(|a, b| {
            a.timestamp
                .total_cmp(&b.timestamp)
                .then(a.index.cmp(&b.index))
        });
        self.frames.dedup_by_key(|f| f.index);
    }

    fn contains(&self, index: u64) -> bool {
        self.frames.iter().any(|f| f.index == index)
    }

    fn scores(&self) -> Vec<FrameScore> {
        self.frames
            .iter()
            .map(|f| FrameScore::new(&f.rgb, self.width as usize, self.height as usize))
            .collect()
    }
}

/// How far exact frames between keyframes may be looked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reach {
    /// Decode at most about this many frames: targets cluster just after each keyframe, so a
    /// clip with a 10 s GOP costs no more than FFmpeg's `thumbnail` filter (100 frames).
    Budget(u64),
    /// Spread targets evenly over every frame, whatever the decoding costs.
    Whole,
}

/// One round of looking for candidates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Look {
    /// Keyframes to ask for, and exact frames to add when keyframes are too few.
    count: usize,
    /// Where the exact frames may be.
    reach: Reach,
    /// Add exact frames even when the video has keyframes enough.
    between_keyframes: bool,
}

/// Adds to `known` up to `look.count` keyframes spread over the whole duration and, when the
/// video has fewer than half that many keyframes (short clips, long GOPs) or the look asks for
/// it, exact frames as far as `look.reach` allows. Frames already known are not decoded again.
fn gather(
    video: &mut Video,
    mut known: Candidates,
    look: Look,
    working: Resize,
    rotate: bool,
) -> Result<Candidates> {
    let Look {
        count,
        reach,
        between_keyframes,
    } = look;
    if !known.keyframes_all && count > known.keyframes_asked {
        let batch = video.sample(
            &SampleOptions::new(Sampling::Keyframes { max: count })
                .seek(SeekMode::Fast)
                .resize(Some(working))
                .rotate(rotate),
        )?;
        known.keyframes_all = batch.len() < count;
        known.keyframes_asked = count;
        known.keyframes = batch.indices.clone();
        known.add(&batch);
    }
    if !between_keyframes && known.keyframes.len() >= count.div_ceil(2) {
        return Ok(known);
    }
    let frame_count = video.info()?.frame_count;
    let mut targets = exact_targets(&known.keyframes, frame_count, count, reach);
    targets.retain(|&t| !known.contains(t));
    if targets.is_empty() {
        return Ok(known);
    }
    let batch = video.sample(
        &SampleOptions::new(Sampling::Indices(targets))
            .seek(SeekMode::Exact)
            .resize(Some(working))
            .rotate(rotate),
    )?;
    known.add(&batch);
    Ok(known)
}

/// Frame indices to decode exactly: segment centres over the whole video (neither the first
/// frame, often black, nor the last, often a fade-out), or, within a decoding budget, evenly
/// over the first `budget / GOPs` frames after each keyframe. Sorted, distinct, `< frame_count`.
fn exact_targets(keyframes: &[u64], frame_count: u64, count: usize, reach: Reach) -> Vec<u64> {
    if frame_count == 0 || count == 0 {
        return Vec::new();
    }
    let spread = |start: u64, len: u64, n: u64| {
        (0..n).map(move |j| start + ((2 * j + 1) as u128 * len as u128 / (2 * n) as u128) as u64)
    };
    let mut targets: Vec<u64> = match reach {
        Reach::Budget(budget) if frame_count > budget => {
            let mut starts: Vec<u64> = keyframes
                .iter()
                .copied()
                .filter(|&k| k < frame_count)
                .collect();
            starts.push(0);
            starts.sort_unstable();
            starts.dedup();
            let gops = starts.len() as u64;
            let depth = (budget / gops).max(1);
            let per_gop = (count as u64).div_ceil(gops);
            let ends: Vec<u64> = starts
                .iter()
                .skip(1)
                .copied()
                .chain([frame_count])
                .collect();
            starts
                .iter()
                .zip(ends)
                .flat_map(|(&start, end)| spread(start, depth.min(end - start), per_gop))
                .collect()
        }
        _ => spread(0, frame_count, count as u64).collect(),
    };
    targets.sort_unstable();
    targets.dedup();
    targets
}

// ---------------------------------------------------------------------------------------------
// Scoring (pure)
// ---------------------------------------------------------------------------------------------

/// What the selection needs to know about one RGB8 frame.
#[derive(Clone, Debug, PartialEq)]
struct FrameScore {
    /// Per-channel 256-bin histograms, as fractions of the pixel count (so frames of different
    /// sizes compare).
    histogram: Box<[[f32; 256]; 3]>,
    /// Mean BT.601 luma, 0-255.
    mean_luma: f64,
    /// Standard deviation of luma.
    luma_std: f64,
    /// Largest share of pixels whose luma falls in one 16-level bucket.
    dominant_share: f64,
    /// Variance of the 4-neighbour Laplacian of luma: high for sharp detail, low for blur.
    sharpness: f64,
    /// Mean luma of a `SIGNATURE_SIDE` x `SIGNATURE_SIDE` grid, to spot near-identical frames.
    signature: Vec<f32>,
}

impl FrameScore {
    /// Scores a `width` x `height` RGB8 frame. `rgb` holds at least `width * height * 3` bytes.
    fn new(rgb: &[u8], width: usize, height: usize) -> Self {
        let pixels = width * height;
        let mut counts = [[0u32; 256]; 3];
        let mut luma = Vec::with_capacity(pixels);
        for px in rgb.chunks_exact(3).take(pixels) {
            counts[0][px[0] as usize] += 1;
            counts[1][px[1] as usize] += 1;
            counts[2][px[2] as usize] += 1;
            // BT.601 weights in 8.8 fixed point; the sum of weights is 256, so white stays 255.
            luma.push(((77 * px[0] as u32 + 150 * px[1] as u32 + 29 * px[2] as u32) >> 8) as u8);
        }
        let n = luma.len().max(1) as f64;
        let mut histogram = Box::new([[0f32; 256]; 3]);
        for (channel, bins) in counts.iter().enumerate() {
            for (bin, &count) in bins.iter().enumerate() {
                histogram[channel][bin] = (count as f64 / n) as f32;
            }
        }
        let mean_luma = luma.iter().map(|&y| y as f64).sum::<f64>() / n;
        let luma_std = (luma
            .iter()
            .map(|&y| (y as f64 - mean_luma).powi(2))
            .sum::<f64>()
            / n)
            .sqrt();
        let mut buckets = [0usize; 16];
        for &y in &luma {
            buckets[(y >> 4) as usize] += 1;
        }
        let dominant_share = buckets.iter().copied().max().unwrap_or(0) as f64 / n;
        let (width, height) = if luma.len() == pixels {
            (width, height)
        } else {
            (0, 0)
        };
        Self {
            histogram,
            mean_luma,
            luma_std,
            dominant_share,
            sharpness: laplacian_variance(&luma, width, height),
            signature: signature(&luma, width, height),
        }
    }

    /// Sum of squared differences between this frame's histograms and `reference`
    /// (the distance FFmpeg's `thumbnail` filter ranks frames by).
    fn histogram_sse(&self, reference: &[[f64; 256]; 3]) -> f64 {
        self.histogram
            .iter()
            .zip(reference)
            .flat_map(|(bins, reference)| bins.iter().zip(reference))
            .map(|(&p, &q)| (p as f64 - q).powi(2))
            .sum()
    }

    fn near_identical(&self, other: &FrameScore) -> bool {
        if self.signature.len() != other.signature.len() || self.signature.is_empty() {
            return false;
        }
        let mad = self
            .signature
            .iter()
            .zip(&other.signature)
            .map(|(a, b)| (a - b).abs() as f64)
            .sum::<f64>()
            / self.signature.len() as f64;
        mad < NEAR_IDENTICAL_MAD
    }
}

fn laplacian_variance(luma: &[u8], width: usize, height: usize) -> f64 {
    if width < 3 || height < 3 {
        return 0.0;
    }
    let (mut sum, mut sum_sq, mut count) = (0f64, 0f64, 0f64);
    for y in 1..height - 1 {
        let row = y * width;
        for x in 1..width - 1 {
            let i = row + x;
            let l = 4 * luma[i] as i32
                - luma[i - 1] as i32
                - luma[i + 1] as i32
                - luma[i - width] as i32
                - luma[i + width] as i32;
            let l = l as f64;
            sum += l;
            sum_sq += l * l;
            count += 1.0;
        }
    }
    let mean = sum / count;
    (sum_sq / count - mean * mean).max(0.0)
}

fn signature(luma: &[u8], width: usize, height: usize) -> Vec<f32> {
    if width == 0 || height == 0 {
        return Vec::new();
    }
    let mut sums = vec![0f64; SIGNATURE_SIDE * SIGNATURE_SIDE];
    let mut counts = vec![0u32; SIGNATURE_SIDE * SIGNATURE_SIDE];
    for y in 0..height {
        let gy = y * SIGNATURE_SIDE / height;
        for x in 0..width {
            let cell = gy * SIGNATURE_SIDE + x * SIGNATURE_SIDE / width;
            sums[cell] += luma[y * width + x] as f64;
            counts[cell] += 1;
        }
    }
    // Frames smaller than the grid leave cells empty; they stay 0 in both frames compared.
    sums.iter()
        .zip(&counts)
        .map(|(&s, &c)| if c == 0 { 0.0 } else { (s / c as f64) as f32 })
        .collect()
}

/// Why a candidate is not fit to represent the video.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Verdict {
    black: bool,
    blank: bool,
    blurry: bool,
}

impl Verdict {
    fn is_acceptable(self) -> bool {
        !(self.black || self.blank || self.blurry)
    }
}

/// Judges every candidate: black and blank in absolute terms, blurry relative to the others.
fn judge(scores: &[FrameScore]) -> Vec<Verdict> {
    let mut verdicts: Vec<Verdict> = scores
        .iter()
        .map(|s| Verdict {
            black: s.mean_luma < BLACK_LUMA,
            blank: s.luma_std < BLANK_LUMA_STD || s.dominant_share > BLANK_DOMINANT_SHARE,
            blurry: false,
        })
        .collect();
    let mut sharpness: Vec<f64> = scores
        .iter()
        .zip(&verdicts)
        .filter(|(_, v)| v.is_acceptable())
        .map(|(s, _)| s.sharpness)
        .collect();
    if sharpness.is_empty() {
        return verdicts;
    }
    sharpness.sort_by(f64::total_cmp);
    let median = sharpness[sharpness.len() / 2];
    for (score, verdict) in scores.iter().zip(&mut verdicts) {
        verdict.blurry = score.sharpness < median * BLUR_SHARE_OF_MEDIAN;
    }
    verdicts
}

/// How close a rejected frame comes to passing, in `[0, 1]` per check, multiplied: used only
/// when no candidate passes, to pick the least bad (a dim frame over a black one, say).
fn fitness(score: &FrameScore) -> f64 {
    let lit = (score.mean_luma / BLACK_LUMA).min(1.0);
    let varied = (score.luma_std / BLANK_LUMA_STD).min(1.0);
    let spread = ((1.0 - score.dominant_share) / (1.0 - BLANK_DOMINANT_SHARE)).min(1.0);
    // Sharpness breaks ties between frames equally far from passing.
    lit * varied * spread + score.sharpness.min(1e6) * 1e-12
}

/// The per-channel average histogram of the chosen frames.
fn average_histogram<'a>(scores: impl IntoIterator<Item = &'a FrameScore>) -> [[f64; 256]; 3] {
    let mut sum = [[0f64; 256]; 3];
    let mut n = 0usize;
    for score in scores {
        n += 1;
        for (acc, bins) in sum.iter_mut().zip(score.histogram.iter()) {
            for (a, &b) in acc.iter_mut().zip(bins) {
                *a += b as f64;
            }
        }
    }
    if n > 0 {
        sum.iter_mut().flatten().for_each(|a| *a /= n as f64);
    }
    sum
}

/// Among `members`, the one whose histogram is nearest their average (FFmpeg's `thumbnail`
/// criterion); `None` when `members` is empty.
fn nearest_to_average(scores: &[FrameScore], members: &[usize]) -> Option<usize> {
    let average = average_histogram(members.iter().map(|&i| &scores[i]));
    members.iter().copied().min_by(|&a, &b| {
        scores[a]
            .histogram_sse(&average)
            .total_cmp(&scores[b].histogram_sse(&average))
    })
}

/// The most representative acceptable candidate, or the least bad one when none is acceptable.
fn pick_representative(scores: &[FrameScore], verdicts: &[Verdict]) -> Option<usize> {
    let acceptable: Vec<usize> = (0..scores.len())
        .filter(|&i| verdicts[i].is_acceptable())
        .collect();
    if !acceptable.is_empty() {
        return nearest_to_average(scores, &acceptable);
    }
    (0..scores.len()).max_by(|&a, &b| fitness(&scores[a]).total_cmp(&fitness(&scores[b])))
}

/// Up to `n` candidates (indices into `times`/`scores`), in time order, for a storyboard.
///
/// The span of candidate times is cut into `n` equal segments; each segment contributes its
/// most representative acceptable candidate that is not a near-copy of the previous pick.
/// Segments without an acceptable candidate (a black section, say) are made up for by the
/// unused acceptable candidates farthest in time from the picks; only when the whole video
/// has fewer than `n` acceptable candidates do the least bad rejected ones fill in.
/// Fewer than `n` come back only when there are fewer than `n` candidates.
fn pick_storyboard(
    times: &[f64],
    scores: &[FrameScore],
    verdicts: &[Verdict],
    n: usize,
) -> Vec<usize> {
    let mut pool: Vec<usize> = (0..scores.len())
        .filter(|&i| verdicts[i].is_acceptable())
        .collect();
    if pool.len() < n {
        let mut rejected: Vec<usize> = (0..scores.len())
            .filter(|&i| !verdicts[i].is_acceptable())
            .collect();
        rejected.sort_by(|&a, &b| fitness(&scores[b]).total_cmp(&fitness(&scores[a])));
        pool.extend(rejected.into_iter().take(n - pool.len()));
    }
    if pool.is_empty() {
        return Vec::new();
    }
    let start = pool.iter().map(|&i| times[i]).fold(f64::INFINITY, f64::min);
    let end = pool
        .iter()
        .map(|&i| times[i])
        .fold(f64::NEG_INFINITY, f64::max);
    let span = end - start;
    let segment_of = |t: f64| -> usize {
        if span <= 0.0 {
            0
        } else {
            (((t - start) / span * n as f64) as usize).min(n - 1)
        }
    };

    let mut chosen: Vec<usize> = Vec::with_capacity(n);
    for segment in 0..n {
        let members: Vec<usize> = pool
            .iter()
            .copied()
            .filter(|&i| segment_of(times[i]) == segment)
            .collect();
        if members.is_empty() {
            continue;
        }
        let average = average_histogram(members.iter().map(|&i| &scores[i]));
        let mut ranked = members;
        // Acceptable frames first (rejected ones are in the pool only when too few are acceptable).
        ranked.sort_by(|&a, &b| {
            let key = |i: usize| {
                (
                    !verdicts[i].is_acceptable(),
                    scores[i].histogram_sse(&average),
                )
            };
            let (ka, kb) = (key(a), key(b));
            ka.0.cmp(&kb.0).then(ka.1.total_cmp(&kb.1))
        });
        let previous = chosen.last().map(|&p| &scores[p]);
        let pick = ranked
            .iter()
            .copied()
            .find(|&i| previous.is_none_or(|p| !scores[i].near_identical(p)))
            .unwrap_or(ranked[0]);
        chosen.push(pick);
    }

    // Fill segments that had nothing to offer, spreading the extra picks out in time.
    while chosen.len() < n {
        let farthest = pool
            .iter()
            .copied()
            .filter(|i| !chosen.contains(i))
            .max_by(|&a, &b| {
                let gap = |i: usize| {
                    chosen
                        .iter()
                        .map(|&c| (times[c] - times[i]).abs())
                        .fold(f64::INFINITY, f64::min)
                };
                gap(a).total_cmp(&gap(b))
            });
        match farthest {
            Some(i) => chosen.push(i),
            None => break,
        }
    }
    chosen.sort_by(|&a, &b| times[a].total_cmp(&times[b]));
    chosen
}

// ---------------------------------------------------------------------------------------------
// Output: the chosen frames at the requested size, encoded
// ---------------------------------------------------------------------------------------------

/// Encodes `chosen` candidates (in the order given), decoding them again at the requested
/// size when the working size differs from it.
fn render(
    video: &mut Video,
    candidates: &Candidates,
    chosen: &[usize],
    plan: SizePlan,
    options: &ThumbnailOptions,
) -> Result<Vec<Thumbnail>> {
    let Some(max_size) = plan.redecode else {
        return chosen
            .iter()
            .map(|&i| {
                let frame = &candidates.frames[i];
                encode_thumbnail(
                    &frame.rgb,
                    candidates.width,
                    candidates.height,
                    frame.timestamp,
                    options,
                )
            })
            .collect();
    };
    let indices: Vec<u64> = chosen.iter().map(|&i| candidates.frames[i].index).collect();
    let batch = video.sample(
        &SampleOptions::new(Sampling::Indices(indices))
            .seek(SeekMode::Exact)
            .resize(Some(Resize::MaxSide(max_size)))
            .rotate(options.rotate),
    )?;
    (0..batch.len())
        .map(|i| {
            encode_thumbnail(
                batch.frame(i),
                batch.width,
                batch.height,
                batch.timestamps[i],
                options,
            )
        })
        .collect()
}

fn encode_thumbnail(
    rgb: &[u8],
    width: u32,
    height: u32,
    timestamp: f64,
    options: &ThumbnailOptions,
) -> Result<Thumbnail> {
    Ok(Thumbnail {
        data: encode(rgb, width, height, options.format, options.quality)?,
        format: options.format,
        timestamp,
        width,
        height,
    })
}

/// Encodes an RGB8 image; WebP is lossless (the only WebP encoder the `image` crate has).
pub(crate) fn encode(
    rgb: &[u8],
    width: u32,
    height: u32,
    format: ImageFormat,
    quality: u8,
) -> Result<Vec<u8>> {
    let name = match format {
        ImageFormat::Jpeg => "JPEG",
        ImageFormat::Png => "PNG",
        ImageFormat::WebP => "WebP",
    };
    let encode_error = |reason: String| Error::Encode {
        format: name.into(),
        reason,
    };
    let expected = width as u64 * height as u64 * 3;
    if width == 0 || height == 0 || rgb.len() as u64 != expected {
        // The encoders panic on a size mismatch; refuse it here instead.
        return Err(encode_error(format!(
            "{} bytes do not make a {width}x{height} RGB image",
            rgb.len()
        )));
    }
    let mut data = Vec::new();
    let color = image::ExtendedColorType::Rgb8;
    let written = match format {
        ImageFormat::Jpeg => image::codecs::jpeg::JpegEncoder::new_with_quality(&mut data, quality)
            .write_image(rgb, width, height, color),
        ImageFormat::Png => {
            image::codecs::png::PngEncoder::new(&mut data).write_image(rgb, width, height, color)
        }
        ImageFormat::WebP => image::codecs::webp::WebPEncoder::new_lossless(&mut data)
            .write_image(rgb, width, height, color),
    };
    written.map_err(|e| encode_error(e.to_string()))?;
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: usize = 64;
    const H: usize = 48;

    /// A deterministic busy picture: 4 px blocks of pseudo-random colour, tinted by `tint`
    /// so scenes differ in their histograms.
    fn scene(seed: u32, tint: [u8; 3]) -> Vec<u8> {
        let mut rgb = Vec::with_capacity(W * H * 3);
        for y in 0..H {
            for x in 0..W {
                let mut h = (x as u32 / 4).wrapping_mul(73_856_093)
                    ^ (y as u32 / 4).wrapping_mul(19_349_663)
                    ^ seed.wrapping_mul(83_492_791);
                h ^= h >> 13;
                h = h.wrapping_mul(0x5bd1_e995);
                h ^= h >> 15;
                for (c, t) in tint.iter().enumerate() {
                    let v = (h >> (8 * c)) as u8 / 2;
                    rgb.push(v.saturating_add(*t / 2));
                }
            }
        }
        rgb
    }

    fn flat(value: [u8; 3]) -> Vec<u8> {
        value.repeat(W * H)
    }

    /// `rgb` scaled towards black, as in the middle of a fade-in.
    fn dimmed(rgb: &[u8], factor: f32) -> Vec<u8> {
        rgb.iter().map(|&v| (v as f32 * factor) as u8).collect()
    }

    /// A 9x9 box blur, repeated: what a focus pull or a cross-fade leaves of the detail.
    fn blurred(rgb: &[u8]) -> Vec<u8> {
        let mut cur = rgb.to_vec();
        for _ in 0..3 {
            let mut next = cur.clone();
            for y in 0..H {
                for x in 0..W {
                    for c in 0..3 {
                        let (mut sum, mut n) = (0u32, 0u32);
                        for dy in -4i32..=4 {
                            for dx in -4i32..=4 {
                                let (xx, yy) = (x as i32 + dx, y as i32 + dy);
                                if (0..W as i32).contains(&xx) && (0..H as i32).contains(&yy) {
                                    sum += cur[(yy as usize * W + xx as usize) * 3 + c] as u32;
                                    n += 1;
                                }
                            }
                        }
                        next[(y * W + x) * 3 + c] = (sum / n) as u8;
                    }
                }
            }
            cur = next;
        }
        cur
    }

    fn score(rgb: &[u8]) -> FrameScore {
        FrameScore::new(rgb, W, H)
    }

    #[test]
    fn luma_statistics_match_the_picture() {
        let black = score(&flat([0, 0, 0]));
        assert_eq!(black.mean_luma, 0.0);
        assert_eq!(black.luma_std, 0.0);
        assert_eq!(black.dominant_share, 1.0);
        let white = score(&flat([255, 255, 255]));
        assert_eq!(white.mean_luma, 255.0);
        let busy = score(&scene(1, [128, 128, 128]));
        assert!(busy.luma_std > 20.0, "{}", busy.luma_std);
        assert!(busy.dominant_share < 0.5, "{}", busy.dominant_share);
        let sum: f32 = busy.histogram[1].iter().sum();
        assert!((sum - 1.0).abs() < 1e-4, "histogram sums to {sum}");
    }

    #[test]
    fn blur_lowers_sharpness() {
        let sharp = score(&scene(2, [0, 0, 0]));
        let soft = score(&blurred(&scene(2, [0, 0, 0])));
        assert!(
            soft.sharpness * 10.0 < sharp.sharpness,
            "{} vs {}",
            soft.sharpness,
            sharp.sharpness
        );
        assert_eq!(score(&flat([90, 90, 90])).sharpness, 0.0);
    }

    #[test]
    fn judge_rejects_black_blank_and_blurry_frames() {
        let frames = [
            flat([0, 0, 0]),
            flat([200, 200, 200]),
            dimmed(&scene(3, [0, 0, 0]), 0.1),
            blurred(&scene(4, [0, 0, 0])),
            scene(5, [0, 0, 0]),
            scene(6, [40, 0, 0]),
            scene(7, [0, 40, 0]),
        ];
        let scores: Vec<_> = frames.iter().map(|f| score(f)).collect();
        let verdicts = judge(&scores);
        assert!(verdicts[0].black && verdicts[0].blank);
        assert!(!verdicts[1].black && verdicts[1].blank);
        assert!(verdicts[2].black, "{}", scores[2].mean_luma);
        assert!(verdicts[3].blurry && !verdicts[3].black && !verdicts[3].blank);
        assert!(
            verdicts[4..].iter().all(|v| v.is_acceptable()),
            "{verdicts:?}"
        );
    }

    #[test]
    fn representative_is_the_frame_nearest_the_average_of_good_frames() {
        // Mostly one scene (red tinted) with an outlier (blue tinted) and black frames that
        // would drag a plain average towards black.
        let mut frames = vec![flat([0, 0, 0]); 6];
        frames.push(scene(10, [200, 20, 20]));
        frames.push(scene(11, [200, 20, 20]));
        frames.push(scene(12, [200, 20, 20]));
        frames.push(scene(13, [20, 20, 200]));
        let scores: Vec<_> = frames.iter().map(|f| score(f)).collect();
        let verdicts = judge(&scores);
        let best = pick_representative(&scores, &verdicts).unwrap();
        assert!((6..9).contains(&best), "picked {best}");
    }

    #[test]
    fn least_bad_frame_when_everything_is_rejected() {
        let frames = [
            flat([0, 0, 0]),
            dimmed(&scene(20, [0, 0, 0]), 0.12),
            flat([3, 3, 3]),
            flat([250, 250, 250]),
        ];
        let scores: Vec<_> = frames.iter().map(|f| score(f)).collect();
        let verdicts = judge(&scores);
        assert!(verdicts.iter().all(|v| !v.is_acceptable()));
        assert_eq!(pick_representative(&scores, &verdicts), Some(1));
        assert_eq!(pick_representative(&[], &[]), None);
    }

    #[test]
    fn storyboard_covers_the_timeline_and_skips_black_frames() {
        // 12 candidates, one per second; seconds 3-5 black (a black section).
        let frames: Vec<Vec<u8>> = (0..12)
            .map(|i| {
                if (3..6).contains(&i) {
                    flat([0, 0, 0])
                } else {
                    scene(30 + i, [i as u8 * 20, 50, 50])
                }
            })
            .collect();
        let times: Vec<f64> = (0..12).map(|i| i as f64).collect();
        let scores: Vec<_> = frames.iter().map(|f| score(f)).collect();
        let verdicts = judge(&scores);
        let picks = pick_storyboard(&times, &scores, &verdicts, 4);
        assert_eq!(picks.len(), 4, "{picks:?}");
        assert!(
            picks.windows(2).all(|w| times[w[0]] < times[w[1]]),
            "{picks:?}"
        );
        assert!(
            picks.iter().all(|i| !(3..6).contains(i)),
            "picked a black frame: {picks:?}"
        );
        // One pick per quarter where the quarter has a good frame.
        assert!(picks[0] < 3 && picks[3] >= 9, "{picks:?}");
    }

    #[test]
    fn storyboard_avoids_near_identical_neighbours() {
        // Two candidates per segment; the first of segment 1 repeats segment 0's pick.
        let a = scene(40, [0, 0, 0]);
        let frames = [a.clone(), a.clone(), scene(41, [90, 0, 0]), a.clone()];
        let scores: Vec<_> = frames.iter().map(|f| score(f)).collect();
        assert!(scores[0].near_identical(&scores[1]));
        assert!(!scores[0].near_identical(&scores[2]));
        let verdicts = judge(&scores);
        let picks = pick_storyboard(&[0.0, 0.5, 1.5, 1.6], &scores, &verdicts, 2);
        assert_eq!(picks.len(), 2);
        assert!(
            !scores[picks[0]].near_identical(&scores[picks[1]]),
            "{picks:?}"
        );
    }

    #[test]
    fn storyboard_larger_than_the_candidates_returns_them_all() {
        let frames: Vec<Vec<u8>> = (0..3).map(|i| scene(50 + i, [0, 0, 0])).collect();
        let scores: Vec<_> = frames.iter().map(|f| score(f)).collect();
        let verdicts = judge(&scores);
        assert_eq!(
            pick_storyboard(&[0.0, 1.0, 2.0], &scores, &verdicts, 10),
            vec![0, 1, 2]
        );
        // Only black frames: still returned (least bad first), never nothing.
        let black: Vec<_> = (0..2).map(|_| score(&flat([0, 0, 0]))).collect();
        assert_eq!(
            pick_storyboard(&[0.0, 1.0], &black, &judge(&black), 1).len(),
            1
        );
        assert!(pick_storyboard(&[], &[], &[], 3).is_empty());
    }

    #[test]
    fn encodes_each_format_with_its_magic_bytes() {
        let rgb = scene(60, [0, 0, 0]);
        let cases: [(ImageFormat, &[u8]); 3] = [
            (ImageFormat::Jpeg, &[0xFF, 0xD8, 0xFF]),
            (ImageFormat::Png, b"\x89PNG\r\n\x1a\n"),
            (ImageFormat::WebP, b"RIFF"),
        ];
        for (format, magic) in cases {
            let data = encode(&rgb, W as u32, H as u32, format, 90).unwrap();
            assert!(data.starts_with(magic), "{format:?}");
            let decoded = image::load_from_memory(&data).unwrap();
            assert_eq!(
                (decoded.width(), decoded.height()),
                (W as u32, H as u32),
                "{format:?}"
            );
            if format != ImageFormat::Jpeg {
                assert_eq!(
                    decoded.to_rgb8().into_raw(),
                    rgb,
                    "{format:?} must be lossless"
                );
            }
        }
    }

    #[test]
    fn encoder_refuses_a_buffer_of_the_wrong_size() {
        let err = encode(&[0; 10], 4, 4, ImageFormat::Png, 90).unwrap_err();
        assert!(matches!(err, Error::Encode { .. }), "{err}");
        let err = encode(&[], 0, 0, ImageFormat::Jpeg, 90).unwrap_err();
        assert!(matches!(err, Error::Encode { .. }), "{err}");
    }

    #[test]
    fn options_are_validated() {
        let bad_quality = ThumbnailOptions {
            quality: 0,
            ..Default::default()
        };
        assert!(matches!(
            validate(&bad_quality),
            Err(Error::InvalidRequest(_))
        ));
        let bad_quality = ThumbnailOptions {
            quality: 101,
            ..Default::default()
        };
        assert!(matches!(
            validate(&bad_quality),
            Err(Error::InvalidRequest(_))
        ));
        let bad_size = ThumbnailOptions {
            max_size: 0,
            ..Default::default()
        };
        assert!(matches!(validate(&bad_size), Err(Error::InvalidRequest(_))));
        assert!(validate(&ThumbnailOptions::default()).is_ok());
    }

    #[test]
    fn small_and_large_outputs_are_scored_at_the_working_size() {
        assert_eq!(
            SizePlan::new(320),
            SizePlan {
                working: Resize::MaxSide(320),
                redecode: None
            }
        );
        assert_eq!(
            SizePlan::new(64),
            SizePlan {
                working: Resize::MaxSide(WORKING_SIDE),
                redecode: Some(64)
            }
        );
        assert_eq!(
            SizePlan::new(1920),
            SizePlan {
                working: Resize::MaxSide(WORKING_SIDE),
                redecode: Some(1920)
            }
        );
    }

    #[test]
    fn exact_targets_spread_over_the_video_or_after_keyframes() {
        // The whole video: segment centres, never frame 0 nor the last frame.
        assert_eq!(
            exact_targets(&[0], 100, 4, Reach::Whole),
            vec![12, 37, 62, 87]
        );
        assert_eq!(
            exact_targets(&[0], 1000, 4, Reach::Budget(1000)),
            vec![125, 375, 625, 875]
        );
        // Fewer frames than targets: each frame once.
        assert_eq!(exact_targets(&[], 3, 10, Reach::Whole), vec![0, 1, 2]);
        // Over budget: 3 GOPs share 120 frames, 40 after each keyframe, 2 targets in each.
        assert_eq!(
            exact_targets(&[0, 250, 500], 600, 6, Reach::Budget(120)),
            vec![10, 30, 260, 280, 510, 530]
        );
        // A short last GOP is not overrun; a missing keyframe 0 is assumed.
        assert_eq!(
            exact_targets(&[590], 600, 2, Reach::Budget(120)),
            vec![30, 595]
        );
        assert!(exact_targets(&[0], 0, 4, Reach::Whole).is_empty());
        assert!(exact_targets(&[0], 10, 0, Reach::Whole).is_empty());
    }
}
