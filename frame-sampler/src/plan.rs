//! Pure planning: which frames a [`Sampling`] strategy asks for, and how big the output will be.
//! No FFmpeg here, so every convention is unit-tested exactly.

use crate::{Resize, Sampling};

/// Why a plan cannot be made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum PlanError {
    /// The request itself is wrong (zero frames, a NaN time, an index past the end, ...).
    Invalid(String),
    /// More frames than the memory budget allows.
    TooMany { requested: u64, max: u64 },
}

/// What the planner knows about the video.
#[derive(Clone, Debug)]
pub(crate) struct Timeline<'a> {
    /// Frames that exist (verified by reading the packets).
    pub frame_count: u64,
    /// Frames the container's header claims; more than `frame_count` when it lies.
    pub claimed_count: u64,
    /// Presentation time of each frame, seconds from the first frame, ascending.
    pub times: &'a [f64],
    /// When the last frame stops being shown, seconds from the first frame.
    pub end_time: f64,
    /// Presentation indices of keyframes, ascending.
    pub keyframes: &'a [u64],
}

/// The frames to return, in the order to return them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Plan {
    pub indices: Vec<u64>,
    /// Some indices were past the frames that exist (but within the claimed count) and were
    /// clamped to the last frame.
    pub clamped: bool,
}

/// Tolerance when matching a requested time to frame times: timestamps are stored in integer
/// time-base units, so a time computed as `k * step` may land a hair before the frame it means.
const TIME_EPSILON: f64 = 1e-6;

/// Maps a strategy to presentation indices. `max_frames` is the most frames the memory budget
/// allows; it is checked before any large vector is built.
pub(crate) fn plan(
    sampling: &Sampling,
    t: &Timeline<'_>,
    max_frames: u64,
) -> Result<Plan, PlanError> {
    sampling.check().map_err(PlanError::Invalid)?;
    let total = t.frame_count;
    // Counts are at least one here (`Sampling::check`); this is the memory budget.
    let check_count = |n: u64| -> Result<(), PlanError> {
        if n > max_frames {
            return Err(PlanError::TooMany {
                requested: n,
                max: max_frames,
            });
        }
        Ok(())
    };
    let require_frames = || -> Result<(), PlanError> {
        if total == 0 {
            Err(PlanError::Invalid("the video has no frames".into()))
        } else {
            Ok(())
        }
    };
    let indices = match sampling {
        Sampling::Uniform(n) => {
            check_count(*n as u64)?;
            require_frames()?;
            uniform(*n as u64, total)
        }
        Sampling::Linspace(n) => {
            check_count(*n as u64)?;
            require_frames()?;
            linspace(*n as u64, total)
        }
        Sampling::Indices(v) => {
            check_count(v.len() as u64)?;
            require_frames()?;
            let mut clamped = false;
            let mut out = Vec::with_capacity(v.len());
            for &i in v {
                if i < total {
                    out.push(i);
                } else if i < t.claimed_count {
                    // The container promised this frame but the file does not hold it.
                    clamped = true;
                    out.push(total - 1);
                } else {
                    return Err(PlanError::Invalid(format!(
                        "frame index {i} is past the end (the video has {total} frames)"
                    )));
                }
            }
            return Ok(Plan {
                indices: out,
                clamped,
            });
        }
        Sampling::Timestamps(times) => {
            check_count(times.len() as u64)?;
            require_frames()?;
            times
                .iter()
                .map(|&s| frame_at(s, t))
                .collect::<Result<Vec<_>, _>>()?
        }
        Sampling::Every(step) => {
            require_frames()?;
            // Times k * step for k = 0, 1, ... strictly before the end.
            let n = ((t.end_time - TIME_EPSILON) / step).floor().max(0.0) + 1.0;
            let n = if n.is_finite() { n as u64 } else { u64::MAX };
            check_count(n)?;
            (0..n)
                .map(|k| frame_at(k as f64 * step, t))
                .collect::<Result<Vec<_>, _>>()?
        }
        Sampling::Keyframes { max } => {
            check_count((*max as u64).min(t.keyframes.len().max(1) as u64))?;
            require_frames()?;
            spread(t.keyframes, *max)
        }
    };
    Ok(Plan {
        indices,
        clamped: false,
    })
}

/// `floor(i * total / n)` for `i` in `0..n`: the Hugging Face docs' `np.arange(0, total, total / n)`.
pub(crate) fn uniform(n: u64, total: u64) -> Vec<u64> {
    (0..n)
        .map(|i| ((i as u128 * total as u128) / n as u128) as u64)
        .collect()
}

/// `np.linspace(0, total - 1, n).astype(int)`: computed as numpy does (`i * step`, the last point
/// set to `total - 1` exactly) so the float rounding matches too.
pub(crate) fn linspace(n: u64, total: u64) -> Vec<u64> {
    let stop = (total - 1) as f64;
    if n == 1 {
        return vec![0];
    }
    let step = stop / (n - 1) as f64;
    (0..n)
        .map(|i| {
            if i == n - 1 {
                total - 1
            } else {
                (i as f64 * step) as u64
            }
        })
        .collect()
}

/// The frame shown at `seconds` (from the first frame; finite and `>= 0`, as
/// `Sampling::check` ensures): the last frame that starts at or before it.
fn frame_at(seconds: f64, t: &Timeline<'_>) -> Result<u64, PlanError> {
    if seconds > t.end_time + TIME_EPSILON {
        return Err(PlanError::Invalid(format!(
            "timestamp {seconds}s is past the end of the video ({:.3}s)",
            t.end_time
        )));
    }
    let after = t.times.partition_point(|&x| x <= seconds + TIME_EPSILON);
    Ok(after.saturating_sub(1) as u64)
}

/// At most `max` of `keyframes`, spread evenly (linspace over the list), all of them if fewer.
fn spread(keyframes: &[u64], max: usize) -> Vec<u64> {
    if keyframes.is_empty() {
        // No keyframe flags at all (rare, broken files): the first frame is the only safe start.
        return vec![0];
    }
    if keyframes.len() <= max {
        return keyframes.to_vec();
    }
    let mut picked: Vec<u64> = linspace(max as u64, keyframes.len() as u64)
        .into_iter()
        .map(|i| keyframes[i as usize])
        .collect();
    picked.dedup();
    picked
}

/// Geometry of the output: the size swscale produces (stored orientation) and the final size
/// after rotation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct OutputSize {
    pub scaled_width: u32,
    pub scaled_height: u32,
    pub width: u32,
    pub height: u32,
}

/// Computes the output size for a stored `width x height` frame. `Resize` sizes refer to the
/// displayed picture, so a 90/270 degree rotation swaps them for the scaling pass.
pub(crate) fn output_size(
    width: u32,
    height: u32,
    rotation: u32,
    resize: Option<Resize>,
) -> Result<OutputSize, PlanError> {
    if width == 0 || height == 0 {
        return Err(PlanError::Invalid(format!(
            "the stream reports a {width}x{height} frame size"
        )));
    }
    if let Some(resize) = &resize {
        resize.check().map_err(PlanError::Invalid)?;
    }
    let swap = rotation % 180 == 90;
    let (dw, dh) = if swap {
        (height, width)
    } else {
        (width, height)
    };
    let scale_to = |short_or_long: u32, along_long: bool| -> (u32, u32) {
        // Scale so one side becomes `short_or_long`; the other side is floored, at least 1.
        let (a, b) = (dw as u64, dh as u64);
        let s = short_or_long as u64;
        let pick_w = if along_long { a >= b } else { a <= b };
        if pick_w {
            (s as u32, ((b * s) / a).max(1) as u32)
        } else {
            (((a * s) / b).max(1) as u32, s as u32)
        }
    };
    let (ow, oh) = match resize {
        None => (dw, dh),
        Some(Resize::ShortestSide(s)) => scale_to(s, false),
        Some(Resize::MaxSide(m)) => {
            if dw.max(dh) <= m {
                (dw, dh)
            } else {
                scale_to(m, true)
            }
        }
        Some(Resize::Exact { width, height }) => (width, height),
    };
    let (sw, sh) = if swap { (oh, ow) } else { (ow, oh) };
    Ok(OutputSize {
        scaled_width: sw,
        scaled_height: sh,
        width: ow,
        height: oh,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeline(times: &[f64], keyframes: &[u64]) -> (Vec<f64>, Vec<u64>) {
        (times.to_vec(), keyframes.to_vec())
    }

    fn tl<'a>(times: &'a [f64], keyframes: &'a [u64], end: f64) -> Timeline<'a> {
        Timeline {
            frame_count: times.len() as u64,
            claimed_count: times.len() as u64,
            times,
            end_time: end,
            keyframes,
        }
    }

    #[test]
    fn uniform_is_floor_i_total_over_n() {
        assert_eq!(uniform(8, 300), vec![0, 37, 75, 112, 150, 187, 225, 262]);
        assert_eq!(uniform(4, 3), vec![0, 0, 1, 2]);
        assert_eq!(
            uniform(8, 2250),
            vec![0, 281, 562, 843, 1125, 1406, 1687, 1968]
        );
    }

    #[test]
    fn linspace_matches_numpy() {
        // np.linspace(0, 299, 8).astype(int)
        assert_eq!(linspace(8, 300), vec![0, 42, 85, 128, 170, 213, 256, 299]);
        // np.linspace(0, 17999, 8).astype(int)
        assert_eq!(
            linspace(8, 18000),
            vec![0, 2571, 5142, 7713, 10285, 12856, 15427, 17999]
        );
        assert_eq!(linspace(1, 10), vec![0]);
        assert_eq!(linspace(3, 1), vec![0, 0, 0]);
    }

    #[test]
    fn strategies_map_to_indices() {
        let times: Vec<f64> = (0..10).map(|i| i as f64 * 0.1).collect();
        let (times, keys) = timeline(&times, &[0, 5]);
        let t = tl(&times, &keys, 1.0);
        let p = |s: Sampling| plan(&s, &t, 1000);
        assert_eq!(
            p(Sampling::Uniform(5)).unwrap().indices,
            vec![0, 2, 4, 6, 8]
        );
        assert_eq!(p(Sampling::Linspace(3)).unwrap().indices, vec![0, 4, 9]);
        assert_eq!(
            p(Sampling::Indices(vec![9, 0, 9])).unwrap().indices,
            vec![9, 0, 9]
        );
        assert_eq!(
            p(Sampling::Timestamps(vec![0.0, 0.25, 0.3, 0.99]))
                .unwrap()
                .indices,
            vec![0, 2, 3, 9]
        );
        assert_eq!(p(Sampling::Every(0.25)).unwrap().indices, vec![0, 2, 5, 7]);
        assert_eq!(
            p(Sampling::Keyframes { max: 8 }).unwrap().indices,
            vec![0, 5]
        );
        assert_eq!(p(Sampling::Keyframes { max: 1 }).unwrap().indices, vec![0]);
    }

    #[test]
    fn variable_frame_rate_times_pick_the_frame_on_screen() {
        // 3 frames at 0, 0.5 and 2.0 s (a gap), last shown until 2.1 s.
        let (times, keys) = timeline(&[0.0, 0.5, 2.0], &[0]);
        let t = tl(&times, &keys, 2.1);
        let got = plan(&Sampling::Timestamps(vec![0.49, 0.5, 1.9, 2.05]), &t, 10).unwrap();
        assert_eq!(got.indices, vec![0, 1, 1, 2]);
        assert_eq!(
            plan(&Sampling::Every(1.0), &t, 10).unwrap().indices,
            vec![0, 1, 2]
        );
    }

    #[test]
    fn bad_requests_are_refused() {
        let (times, keys) = timeline(&[0.0, 0.1, 0.2], &[0]);
        let t = tl(&times, &keys, 0.3);
        let invalid = |s: Sampling| matches!(plan(&s, &t, 100), Err(PlanError::Invalid(_)));
        assert!(invalid(Sampling::Uniform(0)));
        assert!(invalid(Sampling::Linspace(0)));
        assert!(invalid(Sampling::Indices(vec![])));
        assert!(invalid(Sampling::Indices(vec![3])));
        assert!(invalid(Sampling::Timestamps(vec![-0.1])));
        assert!(invalid(Sampling::Timestamps(vec![f64::NAN])));
        assert!(invalid(Sampling::Timestamps(vec![0.5])));
        assert!(invalid(Sampling::Every(0.0)));
        assert!(invalid(Sampling::Every(f64::NAN)));
        assert!(invalid(Sampling::Keyframes { max: 0 }));
        assert!(invalid(Sampling::Timestamps(vec![])));
        // One policy: the planner refuses with the words `SampleOptions::validate` uses.
        for s in [
            Sampling::Uniform(0),
            Sampling::Indices(vec![]),
            Sampling::Timestamps(vec![]),
            Sampling::Timestamps(vec![-0.1]),
            Sampling::Every(f64::NAN),
            Sampling::Keyframes { max: 0 },
        ] {
            let Err(PlanError::Invalid(planned)) = plan(&s, &t, 100) else {
                panic!("{s:?} was planned");
            };
            let Err(crate::Error::InvalidRequest(validated)) =
                crate::SampleOptions::new(s.clone()).validate()
            else {
                panic!("{s:?} passed validate");
            };
            assert_eq!(planned, validated, "{s:?}");
        }
        assert_eq!(
            plan(&Sampling::Uniform(101), &t, 100),
            Err(PlanError::TooMany {
                requested: 101,
                max: 100
            })
        );
        assert!(matches!(
            plan(&Sampling::Every(1e-12), &t, 100),
            Err(PlanError::TooMany { .. })
        ));
    }

    #[test]
    fn indices_the_header_promised_but_the_file_lacks_are_clamped() {
        let (times, keys) = timeline(&[0.0, 0.1, 0.2], &[0]);
        let mut t = tl(&times, &keys, 0.3);
        t.claimed_count = 10;
        let got = plan(&Sampling::Indices(vec![1, 7]), &t, 100).unwrap();
        assert_eq!(
            got,
            Plan {
                indices: vec![1, 2],
                clamped: true
            }
        );
        assert!(matches!(
            plan(&Sampling::Indices(vec![10]), &t, 100),
            Err(PlanError::Invalid(_))
        ));
    }

    #[test]
    fn output_sizes() {
        let none = output_size(320, 240, 0, None).unwrap();
        assert_eq!(
            none,
            OutputSize {
                scaled_width: 320,
                scaled_height: 240,
                width: 320,
                height: 240
            }
        );
        let rot = output_size(320, 180, 90, None).unwrap();
        assert_eq!(
            rot,
            OutputSize {
                scaled_width: 320,
                scaled_height: 180,
                width: 180,
                height: 320
            }
        );
        let short = output_size(1280, 720, 0, Some(Resize::ShortestSide(224))).unwrap();
        assert_eq!((short.width, short.height), (398, 224));
        let rot_short = output_size(1280, 720, 270, Some(Resize::ShortestSide(224))).unwrap();
        assert_eq!((rot_short.width, rot_short.height), (224, 398));
        assert_eq!(
            (rot_short.scaled_width, rot_short.scaled_height),
            (398, 224)
        );
        let max = output_size(8192, 4096, 0, Some(Resize::MaxSide(512))).unwrap();
        assert_eq!((max.width, max.height), (512, 256));
        let no_up = output_size(320, 240, 0, Some(Resize::MaxSide(512))).unwrap();
        assert_eq!((no_up.width, no_up.height), (320, 240));
        let exact = output_size(
            320,
            180,
            90,
            Some(Resize::Exact {
                width: 90,
                height: 160,
            }),
        )
        .unwrap();
        assert_eq!(
            exact,
            OutputSize {
                scaled_width: 160,
                scaled_height: 90,
                width: 90,
                height: 160
            }
        );
        assert!(output_size(320, 240, 0, Some(Resize::ShortestSide(0))).is_err());
        assert!(output_size(0, 240, 0, None).is_err());
    }
}

/// The planner for the fuzz targets (feature `fuzzing`): a plan for a timeline built from the
/// given frame times (sorted and made finite here, as the packet index guarantees) and
/// keyframes, with its invariants checked: every index names a frame that exists, no more
/// frames than `max_frames`, and an output size of at least 1x1. A broken invariant panics.
#[cfg(feature = "fuzzing")]
pub fn fuzz_plan(
    sampling: &Sampling,
    mut times: Vec<f64>,
    claimed_extra: u64,
    mut keyframes: Vec<u64>,
    max_frames: u64,
    size: (u32, u32, u32),
    resize: Option<Resize>,
) {
    times.retain(|t| t.is_finite() && *t >= 0.0);
    times.sort_by(f64::total_cmp);
    let frame_count = times.len() as u64;
    keyframes.retain(|&k| k < frame_count);
    keyframes.sort_unstable();
    keyframes.dedup();
    let end_time = times.last().map_or(0.0, |t| t + 0.04);
    let timeline = Timeline {
        frame_count,
        claimed_count: frame_count.saturating_add(claimed_extra),
        times: &times,
        end_time,
        keyframes: &keyframes,
    };
    if let Ok(plan) = plan(sampling, &timeline, max_frames) {
        assert!(
            plan.indices.len() as u64 <= max_frames.max(1),
            "{sampling:?}"
        );
        for &i in &plan.indices {
            assert!(
                i < frame_count,
                "{sampling:?}: index {i} of {frame_count} frames"
            );
        }
    }
    let (width, height, rotation) = size;
    if let Ok(out) = output_size(width, height, rotation, resize) {
        assert!(
            out.width >= 1 && out.height >= 1 && out.scaled_width >= 1 && out.scaled_height >= 1
        );
    }
}
