//! The packet index: one demux-only pass over the video stream (no decoding) that records every
//! packet's timestamps, keyframe flag and position.
//!
//! It is what makes exact sampling cheap and correct: it gives the exact frame count, maps a
//! presentation index to the packet (pts) that shows it, and names the keyframe to seek to for
//! each target. Reading packets costs a small fraction of decoding them.

use std::collections::HashMap;

use ffmpeg_next::ffi;

use crate::media::Media;
use crate::Result;

/// One video packet as the demuxer returned it, in decode order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PacketInfo {
    pub pts: Option<i64>,
    pub dts: Option<i64>,
    pub key: bool,
    /// The demuxer asked for this packet to be decoded but not shown (edit lists).
    pub discard: bool,
    /// Byte position in the container (-1 when unknown).
    pub pos: i64,
    pub duration: i64,
}

/// How frames are identified while decoding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Identity {
    /// Every shown packet has a unique pts: a decoded frame is identified by its pts, which makes
    /// seeking safe. `order` holds the shown packets' pts sorted (presentation order).
    Pts { order: Vec<i64> },
    /// Timestamps are missing or duplicated (MPEG-4 part 2 in AVI, broken files): frames are
    /// identified by counting them during a sequential decode from the start.
    Counted,
}

/// The video stream's packets and what follows from them.
#[derive(Clone, Debug)]
pub(crate) struct PacketIndex {
    /// All video packets in decode order.
    pub packets: Vec<PacketInfo>,
    pub identity: Identity,
    /// Number of frames a sequential decode shows (packets not marked discard).
    pub frame_count: u64,
    /// Decode-order positions of keyframes that are shown.
    pub keyframes: Vec<usize>,
    /// pts -> decode-order position (pts identity only).
    pub by_pts: HashMap<i64, usize>,
    /// Presentation time (seconds from the first frame) of each frame, in presentation order.
    pub times: Vec<f64>,
    /// Time (seconds from the first frame) at which the last frame stops being shown.
    pub end_time: f64,
}

impl PacketIndex {
    /// Reads every packet of the video stream (others are discarded unread where the demuxer
    /// allows). Leaves `media` at the end of the file.
    pub fn build(media: &mut Media) -> Result<Self> {
        media.discard_other_streams();
        let mut packets = Vec::new();
        while let Some(packet) = media.read_video_packet() {
            let flags = packet.flags().bits();
            packets.push(PacketInfo {
                pts: packet.pts(),
                dts: packet.dts(),
                key: flags & ffi::AV_PKT_FLAG_KEY != 0,
                discard: flags & ffi::AV_PKT_FLAG_DISCARD != 0,
                pos: packet.position() as i64,
                duration: packet.duration(),
            });
        }
        let stream = media.video_stream()?;
        let tb = stream.time_base();
        let time_base = if tb.denominator() != 0 {
            f64::from(tb)
        } else {
            0.0
        };
        let fps = f64::from(stream.avg_frame_rate());
        let fps = if fps.is_finite() && fps > 0.0 {
            fps
        } else {
            f64::from(stream.rate())
        };
        Ok(Self::from_packets(packets, time_base, fps))
    }

    /// Derives identity, keyframes and times from packets in decode order. Pure, for tests.
    pub fn from_packets(packets: Vec<PacketInfo>, time_base: f64, fps: f64) -> Self {
        let shown: Vec<&PacketInfo> = packets.iter().filter(|p| !p.discard).collect();
        let frame_count = shown.len() as u64;
        let mut order: Vec<i64> = Vec::with_capacity(shown.len());
        let mut all_pts = true;
        for p in &shown {
            match p.pts {
                Some(pts) => order.push(pts),
                None => {
                    all_pts = false;
                    break;
                }
            }
        }
        let mut identity = Identity::Counted;
        let mut by_pts = HashMap::new();
        if all_pts && time_base > 0.0 {
            order.sort_unstable();
            let unique = order.windows(2).all(|w| w[0] != w[1]);
            // A discarded packet sharing a pts with a shown one would make identification ambiguous.
            let mut ok = unique;
            if ok {
                for (i, p) in packets.iter().enumerate() {
                    match p.pts {
                        Some(pts) => {
                            if by_pts.insert(pts, i).is_some() {
                                ok = false;
                                break;
                            }
                        }
                        // A discarded packet without pts is fine: it is never a target.
                        None if p.discard => {}
                        None => {
                            ok = false;
                            break;
                        }
                    }
                }
            }
            if ok {
                identity = Identity::Pts { order };
            } else {
                by_pts.clear();
            }
        }
        let keyframes: Vec<usize> = packets
            .iter()
            .enumerate()
            .filter(|(_, p)| p.key && !p.discard)
            .map(|(i, _)| i)
            .collect();

        // Presentation times: pts when known, else dts (AVI's dts count frames), else the frame
        // rate; always measured from the first frame so MPEG-TS's start offset reads as 0.
        let raw: Vec<Option<i64>> = match &identity {
            Identity::Pts { order } => order.iter().map(|&p| Some(p)).collect(),
            Identity::Counted => {
                let mut dts: Vec<Option<i64>> = shown.iter().map(|p| p.dts).collect();
                if dts.iter().all(Option::is_some) && time_base > 0.0 {
                    dts.sort_unstable();
                    if dts.windows(2).all(|w| w[0] != w[1]) {
                        dts
                    } else {
                        vec![None; shown.len()]
                    }
                } else {
                    vec![None; shown.len()]
                }
            }
        };
        let frame_interval = if fps > 0.0 { 1.0 / fps } else { 0.0 };
        let origin = raw.first().copied().flatten().unwrap_or(0);
        let times: Vec<f64> = raw
            .iter()
            .enumerate()
            .map(|(i, t)| match t {
                Some(t) => (t - origin) as f64 * time_base,
                None => i as f64 * frame_interval,
            })
            .collect();
        let last_duration = match (&identity, times.last()) {
            (Identity::Pts { order }, Some(_)) => {
                let last_pts = order[order.len() - 1];
                let d = by_pts
                    .get(&last_pts)
                    .map(|&i| packets[i].duration)
                    .unwrap_or(0);
                if d > 0 {
                    d as f64 * time_base
                } else {
                    frame_interval
                }
            }
            _ => frame_interval,
        };
        let end_time = times.last().map(|t| t + last_duration).unwrap_or(0.0);
        PacketIndex {
            packets,
            identity,
            frame_count,
            keyframes,
            by_pts,
            times,
            end_time,
        }
    }

    /// Presentation indices of the shown keyframes, ascending (pts identity), or their ordinals
    /// (counted identity, where only the decoder knows where they land).
    pub fn keyframe_presentation_indices(&self) -> Vec<u64> {
        match &self.identity {
            Identity::Pts { order } => {
                let mut v: Vec<u64> = self
                    .keyframes
                    .iter()
                    .filter_map(|&d| self.packets[d].pts)
                    .filter_map(|pts| order.binary_search(&pts).ok())
                    .map(|i| i as u64)
                    .collect();
                v.sort_unstable();
                v.dedup();
                v
            }
            Identity::Counted => (0..self.keyframes.len() as u64).collect(),
        }
    }

    /// The decode-order position of the keyframe to start decoding from to reach the frame with
    /// pts `target`: the last keyframe whose own pts is at or before it. Choosing by pts rather
    /// than decode order is what makes open GOPs work: a leading B-frame (shown before its GOP's
    /// I-frame, decoded after it) gets the previous GOP's keyframe, whose references it needs.
    pub fn keyframe_for(&self, target: i64) -> Option<usize> {
        self.keyframes
            .iter()
            .rev()
            .copied()
            .find(|&k| self.packets[k].pts.is_some_and(|p| p <= target))
    }

    /// The keyframe before `keyframe` in decode order, for retrying a frame that did not decode.
    pub fn keyframe_before(&self, keyframe: usize) -> Option<usize> {
        self.keyframes.iter().rev().copied().find(|&k| k < keyframe)
    }

    /// The presentation index of the shown frame with this pts.
    pub fn presentation_index(&self, pts: i64) -> Option<u64> {
        match &self.identity {
            Identity::Pts { order } => order.binary_search(&pts).ok().map(|i| i as u64),
            Identity::Counted => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkt(pts: Option<i64>, dts: i64, key: bool) -> PacketInfo {
        PacketInfo {
            pts,
            dts: Some(dts),
            key,
            discard: false,
            pos: dts * 100,
            duration: 1,
        }
    }

    /// I0 P3 B1 B2 | I6 (open GOP) B4 B5 P7 — decode order, pts in frame units.
    fn open_gop() -> PacketIndex {
        let packets = vec![
            pkt(Some(0), 0, true),
            pkt(Some(3), 1, false),
            pkt(Some(1), 2, false),
            pkt(Some(2), 3, false),
            pkt(Some(6), 4, true),
            pkt(Some(4), 5, false),
            pkt(Some(5), 6, false),
            pkt(Some(7), 7, false),
        ];
        PacketIndex::from_packets(packets, 1.0 / 30.0, 30.0)
    }

    #[test]
    fn pts_identity_orders_frames_by_presentation() {
        let idx = open_gop();
        assert_eq!(idx.frame_count, 8);
        assert_eq!(
            idx.identity,
            Identity::Pts {
                order: (0..8).collect()
            }
        );
        assert_eq!(idx.presentation_index(6), Some(6));
        assert_eq!(idx.keyframe_presentation_indices(), vec![0, 6]);
        assert!((idx.end_time - 8.0 / 30.0).abs() < 1e-9);
    }

    #[test]
    fn leading_frames_of_an_open_gop_start_from_the_previous_keyframe() {
        let idx = open_gop();
        // pts 4 and 5 are decoded after I6 but shown before it: they need the first GOP.
        assert_eq!(idx.keyframe_for(4), Some(0));
        assert_eq!(idx.keyframe_for(5), Some(0));
        assert_eq!(idx.keyframe_for(6), Some(4));
        assert_eq!(idx.keyframe_for(7), Some(4));
        assert_eq!(idx.keyframe_before(4), Some(0));
        assert_eq!(idx.keyframe_before(0), None);
    }

    #[test]
    fn missing_or_duplicate_pts_fall_back_to_counting() {
        let missing = vec![pkt(None, 0, true), pkt(Some(1), 1, false)];
        assert_eq!(
            PacketIndex::from_packets(missing, 0.04, 25.0).identity,
            Identity::Counted
        );
        let dup = vec![pkt(Some(0), 0, true), pkt(Some(0), 1, false)];
        let idx = PacketIndex::from_packets(dup, 0.04, 25.0);
        assert_eq!(idx.identity, Identity::Counted);
        // Duplicated dts too: times come from the frame rate.
        assert_eq!(idx.times, vec![0.0, 0.04]);
    }

    #[test]
    fn times_start_at_the_first_frame() {
        // MPEG-TS style: first pts at 1.4 s in a 90 kHz time base.
        let packets = (0..3)
            .map(|i| pkt(Some(126_000 + i * 3000), 126_000 + i * 3000, i == 0))
            .collect();
        let idx = PacketIndex::from_packets(packets, 1.0 / 90_000.0, 30.0);
        assert_eq!(idx.times[0], 0.0);
        assert!((idx.times[2] - 2.0 / 30.0).abs() < 1e-9);
    }

    #[test]
    fn discarded_packets_are_not_frames() {
        let mut packets = vec![
            pkt(Some(0), 0, true),
            pkt(Some(1), 1, false),
            pkt(Some(2), 2, false),
        ];
        packets[0].discard = true;
        let idx = PacketIndex::from_packets(packets, 0.04, 25.0);
        assert_eq!(idx.frame_count, 2);
        assert_eq!(idx.identity, Identity::Pts { order: vec![1, 2] });
        assert!(idx.keyframes.is_empty());
    }
}
