//! Keyframes without an index pass: for MP4/MOV files with a constant frame rate, the sample
//! table FFmpeg loads when it opens the file (one entry per frame: decode timestamp, keyframe
//! flag, byte position) already gives the frame count, every frame's time and where the
//! keyframes are. Only the keyframes asked for are read, and they are decoded on all cores at
//! once (a keyframe decodes on its own, so each worker has its own decoder). Fast mode uses it
//! for every request; exact mode when all the targets are keyframes (as the Hugging Face
//! convention's indices are on a long video with a fixed GOP).
//!
//! Everything taken from the table is checked against the packets actually read (decode
//! timestamp, keyframe flag, presentation timestamp on the frame grid); anything unexpected
//! (edit lists that drop frames, a variable frame rate, fragmented files, a keyframe that does
//! not decode) returns `None` and the caller takes the general path, which reads every packet.

use std::collections::HashMap;

use ffmpeg_next as ffmpeg;
use ffmpeg_next::ffi;
use ffmpeg_next::util::frame::video::Video as VideoFrame;

use crate::convert::RgbConverter;
use crate::decode::{open_decoder, SampleStats};
use crate::media::Media;
use crate::plan::{self, OutputSize, Timeline};
use crate::probe::StreamFacts;
use crate::{Error, FrameBatch, Result, SampleOptions, Sampling};

/// Packets read from the start to find the first frame shown (B-frames reorder at most a few).
const FIRST_PACKETS: usize = 64;

/// One sample-table entry.
#[derive(Clone, Copy, Debug)]
struct Entry {
    dts: i64,
    key: bool,
}

/// The container's view of a constant-frame-rate stream.
struct SampleTable {
    entries: Vec<Entry>,
    /// Decode-order positions of keyframes.
    keyframes: Vec<usize>,
    /// Frame duration in time-base units.
    delta: i64,
    /// pts of the first frame shown.
    first_pts: i64,
    /// pts - dts of the first keyframe (how far keyframes are shown after they are decoded).
    key_offset: Option<i64>,
    time_base: f64,
}

impl SampleTable {
    /// Reads the table of `media`'s video stream, or `None` where it cannot be trusted alone.
    /// Reads the first packets of the stream (the demuxer must be at the start).
    fn read(media: &mut Media, header_frames: u64) -> Option<Self> {
        let stream = media.stream;
        // SAFETY: `input` owns a valid, opened AVFormatContext; `stream` indexes one of its
        // `nb_streams` valid streams; index entries are only read, before any further demuxing.
        let (entries, time_base) = unsafe {
            let ctx = media.input.as_mut_ptr();
            let name = std::ffi::CStr::from_ptr((*(*ctx).iformat).name).to_string_lossy();
            if !name.starts_with("mov,") {
                return None;
            }
            let st = *(*ctx).streams.add(stream);
            let tb = (*st).time_base;
            if tb.num <= 0 || tb.den <= 0 {
                return None;
            }
            let count = ffi::avformat_index_get_entries_count(st);
            if count <= 1 || count as u64 != header_frames {
                return None;
            }
            // A file cut short keeps its sample table (moov) but not the data it points at.
            let file_size = ffi::avio_size((*ctx).pb);
            if file_size <= 0 {
                return None;
            }
            let mut entries = Vec::with_capacity(count as usize);
            for i in 0..count {
                let e = ffi::avformat_index_get_entry(st, i);
                if e.is_null() {
                    return None;
                }
                let flags = (*e).flags();
                let end = (*e).pos.checked_add(i64::from((*e).size()));
                if flags & ffi::AVINDEX_DISCARD_FRAME != 0
                    || (*e).pos < 0
                    || end.is_none_or(|end| end > file_size)
                {
                    return None;
                }
                entries.push(Entry {
                    dts: (*e).timestamp,
                    key: flags & ffi::AVINDEX_KEYFRAME != 0,
                });
            }
            (entries, f64::from(tb.num) / f64::from(tb.den))
        };
        // Timestamps come from the file: checked arithmetic, so a hostile one cannot overflow.
        let delta = entries[1].dts.checked_sub(entries[0].dts)?;
        if delta <= 0
            || entries
                .windows(2)
                .any(|w| w[1].dts.checked_sub(w[0].dts) != Some(delta))
        {
            return None;
        }
        let keyframes: Vec<usize> = (0..entries.len()).filter(|&i| entries[i].key).collect();
        if keyframes.is_empty() {
            return None;
        }
        // Other streams' packets are skipped inside the demuxer from here on.
        media.discard_other_streams();
        // The first frame shown: the smallest pts among the first packets.
        let mut first_pts: Option<i64> = None;
        let mut key_offset = None;
        for i in 0..FIRST_PACKETS.min(entries.len()) {
            let packet = media.read_video_packet()?;
            if i == 0 && packet.dts() != Some(entries[0].dts) {
                return None;
            }
            let pts = packet.pts()?;
            if key_offset.is_none() && packet.is_key() {
                key_offset = Some(pts.checked_sub(packet.dts()?)?);
            }
            first_pts = Some(first_pts.map_or(pts, |f: i64| f.min(pts)));
        }
        Some(SampleTable {
            entries,
            keyframes,
            delta,
            first_pts: first_pts?,
            key_offset,
            time_base,
        })
    }

    fn frame_count(&self) -> u64 {
        self.entries.len() as u64
    }

    /// Seeks to the keyframe the demuxer picks for presentation time `ts` and reads its packet.
    /// Returns the packet and its position in `keyframes`, checked against the table.
    fn seek_keyframe(&self, media: &mut Media, ts: i64) -> Option<(usize, ffmpeg::Packet)> {
        // SAFETY: valid opened AVFormatContext; av_seek_frame only repositions it.
        let ok = unsafe {
            ffi::av_seek_frame(
                media.input.as_mut_ptr(),
                media.stream as i32,
                ts,
                ffi::AVSEEK_FLAG_BACKWARD,
            ) >= 0
        };
        if !ok {
            return None;
        }
        let packet = media.read_video_packet()?;
        let dts = packet.dts()?;
        packet.pts()?;
        if !packet.is_key() {
            return None;
        }
        let k = self
            .keyframes
            .binary_search_by_key(&dts, |&e| self.entries[e].dts)
            .ok()?;
        Some((k, packet))
    }

    /// The last keyframe shown at or before `target_pts` (the first keyframe when none is), as its
    /// position in `keyframes` and its packet. `None` when the packets contradict the table.
    fn keyframe_for(&self, media: &mut Media, target_pts: i64) -> Option<(usize, ffmpeg::Packet)> {
        // MP4 seeking picks the last keyframe whose decode time, shifted by the stream's
        // composition delay, is at or before `ts`: the keyframe shown at or before it, which the
        // checks below confirm instead of trusting.
        let (k, packet) = self.seek_keyframe(media, target_pts)?;
        let pts = packet.pts()?;
        if pts > target_pts && k > 0 {
            return None;
        }
        // The next keyframe is shown after the target if it is even decoded after it (pts >= dts);
        // otherwise read it to make sure.
        if let Some(&next) = self.keyframes.get(k + 1) {
            let next_dts = self.entries[next].dts;
            if next_dts <= target_pts {
                let shift = pts.checked_sub(packet.dts()?)?;
                let (k2, p2) = self.seek_keyframe(media, next_dts.checked_add(shift)?)?;
                if k2 != k + 1 || p2.pts()? <= target_pts {
                    return None;
                }
            }
        }
        Some((k, packet))
    }

    /// The packet of the `k`-th keyframe (decode order), if the demuxer's seek lands on it.
    fn read_keyframe(&self, media: &mut Media, k: usize) -> Option<ffmpeg::Packet> {
        let dts = self.entries[*self.keyframes.get(k)?].dts;
        // Seeking to the time it is shown lands on it (see `keyframe_for`); checked, not trusted.
        let (landed, packet) = self.seek_keyframe(media, dts.checked_add(self.key_offset?)?)?;
        (landed == k).then_some(packet)
    }

    /// The pts of the frame shown at presentation index `index` (on the frame grid).
    fn pts_of(&self, index: u64) -> Option<i64> {
        i64::try_from(index)
            .ok()?
            .checked_mul(self.delta)?
            .checked_add(self.first_pts)
    }

    /// Presentation index of the frame with this pts, if it lies on the frame grid.
    fn index_of(&self, pts: i64) -> Option<u64> {
        let offset = pts.checked_sub(self.first_pts)?;
        (offset >= 0 && offset % self.delta == 0)
            .then(|| (offset / self.delta) as u64)
            .filter(|&i| i < self.frame_count())
    }
}

/// What one worker decodes: a keyframe packet and where its RGB goes.
struct Job<'a> {
    packet: ffmpeg::Packet,
    out: &'a mut [u8],
}

/// Everything the general path needs to size and check the output, computed before the index.
pub(crate) struct Output {
    pub size: OutputSize,
    pub rotation: u32,
    pub frame_bytes: u64,
    pub max_frames: u64,
}

/// Fast-mode sampling from the sample table; with `exact`, only when every target is itself a
/// keyframe (which decodes alone to the very picture a sequential decode shows: the same result
/// as exact sampling, without the index pass). `Ok(None)`: this file or request needs the general path
/// (`media` is then at an unspecified position). Errors are the request's own (a plan that
/// cannot be made), which the general path would report the same way.
pub(crate) fn sample(
    media: &mut Media,
    options: &SampleOptions,
    exact: bool,
    facts: &StreamFacts,
    out: &Output,
    threads: usize,
    plan_error: impl Fn(plan::PlanError) -> Error,
) -> Result<Option<(FrameBatch, SampleStats)>> {
    let Some(table) = SampleTable::read(media, facts.header_frames) else {
        return Ok(None);
    };
    let n_frames = table.frame_count();
    // The keyframes strategy picks among keyframes by their rank: plan over ranks (keyframes
    // are shown in the order they are decoded; checked below on the ones read).
    let keyframe_request = matches!(options.sampling, Sampling::Keyframes { .. });
    let ranks: Vec<u64> = if keyframe_request {
        (0..table.keyframes.len() as u64).collect()
    } else {
        Vec::new()
    };
    let step = table.delta as f64 * table.time_base;
    let times: Vec<f64> = (0..n_frames).map(|i| i as f64 * step).collect();
    let timeline = Timeline {
        frame_count: n_frames,
        claimed_count: n_frames,
        times: &times,
        end_time: n_frames as f64 * step,
        keyframes: &ranks,
    };
    let plan = plan::plan(&options.sampling, &timeline, out.max_frames).map_err(plan_error)?;
    let mut stats = SampleStats::default();

    // For each target, the last keyframe shown at or before it.
    let mut packets: HashMap<usize, ffmpeg::Packet> = HashMap::new();
    let mut request_of_target: HashMap<u64, u64> = HashMap::new();
    let mut last_keyframe_index: Option<u64> = None;
    for &t in &plan.indices {
        if request_of_target.contains_key(&t) {
            continue;
        }
        stats.seeks += 1;
        let found = if keyframe_request {
            let k = t as usize;
            table.read_keyframe(media, k).map(|p| (k, p))
        } else {
            table
                .pts_of(t)
                .and_then(|target_pts| table.keyframe_for(media, target_pts))
        };
        let Some((k, packet)) = found else {
            return Ok(None);
        };
        let Some(index) = packet.pts().and_then(|pts| table.index_of(pts)) else {
            return Ok(None);
        };
        if keyframe_request {
            // Ranks are planned in ascending order: their pictures must be shown in that order.
            if last_keyframe_index.is_some_and(|last| index <= last) {
                return Ok(None);
            }
            last_keyframe_index = Some(index);
        } else if exact && index != t {
            // Not a keyframe: exact sampling must decode forward, on the general path.
            return Ok(None);
        }
        packets.entry(k).or_insert(packet);
        request_of_target.insert(t, index);
    }

    // Output positions per request; each request is decoded once into its first position.
    let requests: Vec<u64> = plan.indices.iter().map(|t| request_of_target[t]).collect();
    let mut positions: HashMap<u64, Vec<usize>> = HashMap::new();
    for (p, &r) in requests.iter().enumerate() {
        positions.entry(r).or_default().push(p);
    }
    let n = requests.len();
    let fb = out.frame_bytes as usize;
    let mut data = vec![0u8; n * fb];
    {
        let mut slots: Vec<Option<&mut [u8]>> = data.chunks_mut(fb).map(Some).collect();
        let mut by_pts: HashMap<i64, ffmpeg::Packet> = HashMap::new();
        for (_, p) in packets.drain() {
            if let Some(pts) = p.pts() {
                by_pts.insert(pts, p);
            }
        }
        let mut jobs: Vec<Job> = Vec::new();
        let mut unique: Vec<u64> = positions.keys().copied().collect();
        unique.sort_unstable();
        for r in unique {
            let Some(packet) = table.pts_of(r).and_then(|pts| by_pts.remove(&pts)) else {
                return Ok(None);
            };
            let first = positions[&r][0];
            let out_slot = slots[first].take().expect("one job per request");
            jobs.push(Job {
                packet,
                out: out_slot,
            });
        }
        let workers = threads.clamp(1, jobs.len().max(1));
        // One worker: let the decoder use the cores (slice threads); several: one core each.
        let decoder_threads = if workers == 1 { threads } else { 1 };
        let stream = media.video_stream()?;
        let parameters = stream.parameters();
        // SAFETY: reading a plain field of a valid AVStream.
        let time_base = unsafe { (*stream.as_ptr()).time_base };
        // Jobs dealt round-robin so each worker gets frames from across the file.
        let mut shares: Vec<Vec<Job>> = (0..workers).map(|_| Vec::new()).collect();
        for (i, job) in jobs.into_iter().enumerate() {
            shares[i % workers].push(job);
        }
        let size = out.size;
        let rotation = out.rotation;
        let decoded: Vec<bool> = std::thread::scope(|s| {
            let handles: Vec<_> = shares
                .into_iter()
                .map(|share| {
                    let parameters = parameters.clone();
                    s.spawn(move || {
                        decode_share(
                            parameters,
                            time_base,
                            decoder_threads,
                            share,
                            size,
                            rotation,
                        )
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or(false))
                .collect()
        });
        if decoded.iter().any(|ok| !ok) {
            return Ok(None);
        }
    }
    stats.frames_decoded = positions.len() as u64;
    stats.packets_sent = positions.len() as u64;
    let mut indices = vec![0u64; n];
    let mut timestamps = vec![0f64; n];
    for (r, ps) in &positions {
        let first = ps[0];
        for &p in ps {
            if p != first {
                data.copy_within(first * fb..(first + 1) * fb, p * fb);
            }
            indices[p] = *r;
            timestamps[p] = times[*r as usize];
        }
    }
    let batch = FrameBatch {
        data,
        width: out.size.width,
        height: out.size.height,
        indices,
        timestamps,
        clamped: plan.clamped,
    };
    Ok(Some((batch, stats)))
}

/// Decodes each job's keyframe on its own and writes it as RGB. False if any did not decode.
fn decode_share(
    parameters: ffmpeg::codec::Parameters,
    time_base: ffi::AVRational,
    threads: usize,
    share: Vec<Job>,
    size: OutputSize,
    rotation: u32,
) -> bool {
    let Ok(mut decoder) = open_decoder(parameters, time_base, threads, ffi::FF_THREAD_SLICE) else {
        return false;
    };
    let mut converter = RgbConverter::new(size, rotation);
    let mut frame = VideoFrame::empty();
    for job in share {
        let pts = job.packet.pts();
        if decoder.send_packet(&job.packet).is_err() || decoder.send_eof().is_err() {
            return false;
        }
        let mut found = false;
        // Draining right after the keyframe outputs it without waiting for the pictures that
        // would normally follow it.
        while decoder.receive_frame(&mut frame).is_ok() {
            if !found && frame.pts().or(frame.timestamp()) == pts {
                if converter.write(&frame, job.out).is_err() {
                    return false;
                }
                found = true;
            }
        }
        if !found {
            return false;
        }
        decoder.flush();
    }
    true
}
