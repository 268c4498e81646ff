//! Decoding the planned frames: exact (seek to the right keyframe, decode forward only what is
//! needed), fast (decode keyframes alone), and the counted sequential scan for streams whose
//! timestamps cannot identify frames.

use std::collections::HashSet;

use ffmpeg_next as ffmpeg;
use ffmpeg_next::ffi;
use ffmpeg_next::util::frame::video::Video as VideoFrame;

use crate::index::{Identity, PacketIndex};
use crate::media::Media;
use crate::{Error, Result};

/// Counters describing how much work a sampling call did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SampleStats {
    /// Frames the decoder produced (every decoded picture, wanted or not).
    pub frames_decoded: u64,
    /// Packets sent to the decoder.
    pub packets_sent: u64,
    /// Of those, packets sent with "skip if nothing references it" (non-target packets while
    /// moving forward); the decoder drops the non-reference ones without decoding them.
    pub packets_sent_skippable: u64,
    /// Seeks performed.
    pub seeks: u64,
    /// Video packets read by the demux-only indexing pass.
    pub packets_indexed: u64,
    /// Video packets read from the container in all (the index pass, the sample-table checks,
    /// seeking and decoding): the demux work a call did.
    pub packets_read: u64,
}

/// Receives decoded frames: `request` is the value the caller asked for (a presentation index,
/// or a keyframe ordinal for counted keyframe sampling), `index` the frame's presentation index.
pub(crate) trait FrameSink {
    fn frame(&mut self, request: u64, index: u64, frame: &VideoFrame) -> Result<()>;
}

/// What a counted sequential scan looks for.
#[derive(Clone, Debug)]
pub(crate) enum ScanTargets {
    /// These presentation indices, sorted and unique.
    Exact(Vec<u64>),
    /// For each of these presentation indices (sorted, unique), the last keyframe at or before it.
    NearestKeyframe(Vec<u64>),
    /// The j-th decoded keyframe for each of these ordinals (sorted, unique).
    KeyframeOrdinals(Vec<u64>),
}

/// Decoders that drop non-reference pictures under `skip_frame = NONREF` without disturbing the
/// pictures that follow (the reference structure and output order are unchanged by design).
const SKIP_NONREF_CODECS: &[ffi::AVCodecID] = &[
    ffi::AVCodecID::AV_CODEC_ID_H264,
    ffi::AVCodecID::AV_CODEC_ID_HEVC,
];

/// Gives up after this many decode errors in one call: a stream this broken is not going to
/// produce the frames asked for.
const MAX_DECODE_ERRORS: u64 = 1000;

/// Consecutive EAGAIN answers to a packet after which the decoder is considered stuck.
const MAX_REFUSALS: u32 = 1000;

/// Decoder plus demuxer for one stream, with seeking that verifies where it landed.
pub(crate) struct Session<'a> {
    media: &'a mut Media,
    decoder: ffmpeg::decoder::Video,
    /// A packet read ahead (while checking where a seek landed) and not yet used.
    pending: Option<ffmpeg::Packet>,
    /// EOF was sent to the decoder; it must be flushed before more packets.
    draining: bool,
    skip_nonref: bool,
    byte_seek: bool,
    decode_errors: u64,
    /// Consecutive times the decoder refused a packet (EAGAIN).
    refusals: u32,
    /// Exact mode: send EOF right after the packet at this decode position.
    drain_at: Option<usize>,
    /// EOF was sent because of `drain_at`, not because the data ended.
    drained_early: bool,
    pub stats: SampleStats,
}

enum Outcome {
    Found,
    Passed,
    Eof,
}

/// `threads` as a thread count: 0 means all cores.
pub(crate) fn resolve_threads(threads: usize) -> usize {
    if threads == 0 {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    } else {
        threads
    }
}

/// Opens a decoder for a stream with these parameters and time base, with `threads` threads
/// (0: all cores) of the kinds in `thread_type` (`FF_THREAD_FRAME`, `FF_THREAD_SLICE`).
pub(crate) fn open_decoder(
    parameters: ffmpeg::codec::Parameters,
    time_base: ffi::AVRational,
    threads: usize,
    thread_type: i32,
) -> std::result::Result<ffmpeg::decoder::Video, ffmpeg::Error> {
    let mut ctx = ffmpeg::codec::context::Context::from_parameters(parameters)?;
    // SAFETY: `ctx` owns a valid, not yet opened AVCodecContext; FFmpeg reads these fields when
    // the codec is opened below.
    unsafe {
        let raw = ctx.as_mut_ptr();
        (*raw).thread_count = resolve_threads(threads).min(64) as i32;
        (*raw).thread_type = thread_type;
        (*raw).pkt_timebase = time_base;
    }
    ctx.decoder().video()
}

impl<'a> Session<'a> {
    /// A session on `media`'s video stream, with `reuse` (a decoder of the same stream that
    /// [`Session::into_decoder`] gave back) or a new decoder. `threads` = 0 means all cores.
    pub fn new(
        media: &'a mut Media,
        threads: usize,
        allow_skip: bool,
        reuse: Option<ffmpeg::decoder::Video>,
    ) -> Result<Self> {
        let source_name = media.source_name.clone();
        let stream = media.video_stream()?;
        let codec_id = stream.parameters().id();
        // SAFETY: reading a plain field of a valid AVStream.
        let time_base = unsafe { (*stream.as_ptr()).time_base };
        let opened = match reuse {
            Some(decoder) => Ok(decoder),
            None => open_decoder(
                stream.parameters(),
                time_base,
                threads,
                ffi::FF_THREAD_FRAME | ffi::FF_THREAD_SLICE,
            ),
        };
        let decoder = opened.map_err(|e| Error::Decode {
            source_name: source_name.clone(),
            frame: None,
            reason: match e {
                ffmpeg::Error::DecoderNotFound => {
                    format!("no decoder for codec {codec_id:?} in this FFmpeg build")
                }
                e => e.to_string(),
            },
        })?;
        // Only the video stream's packets are needed; the demuxer skips the rest.
        media.discard_other_streams();
        // SAFETY: `iformat` is valid for an opened input; only read.
        let byte_seek = unsafe {
            let fctx = media.input.as_mut_ptr();
            // Byte seeking to a keyframe's recorded position is exact for MPEG-TS/PS, whose
            // timestamp seeking is a bisection that lands near, not on, the keyframe.
            let name = std::ffi::CStr::from_ptr((*(*fctx).iformat).name).to_string_lossy();
            ((*(*fctx).iformat).flags & ffi::AVFMT_NO_BYTE_SEEK) == 0
                && (name == "mpegts" || name == "mpeg")
        };
        let skip_nonref = allow_skip && SKIP_NONREF_CODECS.contains(&codec_id.into());
        Ok(Session {
            media,
            decoder,
            pending: None,
            draining: false,
            skip_nonref,
            byte_seek,
            decode_errors: 0,
            refusals: 0,
            drain_at: None,
            drained_early: false,
            stats: SampleStats::default(),
        })
    }

    /// The decoder, flushed and with every per-call setting reset, for the next session on
    /// the same stream.
    pub fn into_decoder(mut self) -> ffmpeg::decoder::Video {
        self.flush();
        // SAFETY: the decoder's AVCodecContext is valid; `skip_frame` is a plain field.
        unsafe { (*self.decoder.as_mut_ptr()).skip_frame = ffi::AVDiscard::AVDISCARD_DEFAULT };
        self.decoder
    }

    fn source_name(&self) -> String {
        self.media.source_name.clone()
    }

    fn decode_error(&self, frame: Option<u64>, reason: impl Into<String>) -> Error {
        Error::Decode {
            source_name: self.source_name(),
            frame,
            reason: reason.into(),
        }
    }

    /// The next packet of the video stream, or `None` at the end of the data.
    fn read_packet(&mut self) -> Option<ffmpeg::Packet> {
        self.pending
            .take()
            .or_else(|| self.media.read_video_packet())
    }

    /// Sends `packet`; `skippable` lets the decoder drop it if no other picture references it.
    /// Returns false when the decoder wants its output read first (the packet is kept pending).
    fn send(&mut self, packet: ffmpeg::Packet, skippable: bool) -> Result<bool> {
        if self.skip_nonref {
            let discard = if skippable {
                ffi::AVDiscard::AVDISCARD_NONREF
            } else {
                ffi::AVDiscard::AVDISCARD_DEFAULT
            };
            // SAFETY: the decoder's AVCodecContext is valid; `skip_frame` is read per packet (frame
            // threads copy it from this context when the packet is submitted).
            unsafe { (*self.decoder.as_mut_ptr()).skip_frame = discard };
        }
        match self.decoder.send_packet(&packet) {
            Ok(()) => {
                self.refusals = 0;
                self.stats.packets_sent += 1;
                if skippable && self.skip_nonref {
                    self.stats.packets_sent_skippable += 1;
                }
                Ok(true)
            }
            Err(ffmpeg::Error::Other { errno }) if errno == ffi::EAGAIN => {
                // The API promises output is waiting; a decoder that keeps refusing input
                // without producing any would otherwise spin forever.
                self.refusals += 1;
                if self.refusals > MAX_REFUSALS {
                    return Err(self.decode_error(None, "the decoder stopped accepting input"));
                }
                self.pending = Some(packet);
                Ok(false)
            }
            Err(e) => {
                // A corrupt packet: FFmpeg's own tools log it and go on; so do we, within reason.
                self.note_decode_error(e)?;
                Ok(true)
            }
        }
    }

    fn note_decode_error(&mut self, e: ffmpeg::Error) -> Result<()> {
        self.decode_errors += 1;
        if self.decode_errors > MAX_DECODE_ERRORS {
            return Err(self.decode_error(None, format!("too many decode errors, last: {e}")));
        }
        Ok(())
    }

    /// Receives one decoded frame if one is ready. `Ok(None)` means "send more" (or, while
    /// draining, that the decoder is empty).
    fn receive(&mut self, frame: &mut VideoFrame) -> Result<Option<()>> {
        loop {
            match self.decoder.receive_frame(frame) {
                Ok(()) => {
                    self.stats.frames_decoded += 1;
                    return Ok(Some(()));
                }
                Err(ffmpeg::Error::Other { errno }) if errno == ffi::EAGAIN => return Ok(None),
                Err(ffmpeg::Error::Eof) => return Ok(None),
                Err(e) => self.note_decode_error(e)?,
            }
        }
    }

    /// Tells the decoder no more packets come, so it outputs what it holds.
    fn drain(&mut self) {
        // Ignore the result: a decoder that is already draining reports EOF again.
        let _ = self.decoder.send_eof();
        self.draining = true;
    }

    /// Sends the next packet in full, or starts draining at the end of the data.
    fn feed_next(&mut self) -> Result<()> {
        match self.read_packet() {
            Some(p) => {
                self.send(p, false)?;
            }
            None => self.drain(),
        }
        Ok(())
    }

    fn flush(&mut self) {
        self.decoder.flush();
        self.draining = false;
        self.drained_early = false;
        self.pending = None;
    }

    /// Positions the demuxer so that the next packet read is at or before decode position `k`,
    /// and flushes the decoder. Verifies the landing and falls back to the start of the file.
    fn seek_to(&mut self, index: &PacketIndex, k: usize) -> Result<()> {
        self.flush();
        self.stats.seeks += 1;
        let target = index.packets[k];
        let stream = self.media.stream as i32;
        // SAFETY: valid opened AVFormatContext; av_seek_frame only repositions it.
        let seeked = unsafe {
            let ctx = self.media.input.as_mut_ptr();
            if self.byte_seek && target.pos >= 0 {
                ffi::av_seek_frame(ctx, -1, target.pos, ffi::AVSEEK_FLAG_BYTE) >= 0
            } else if let Some(ts) = target.pts.or(target.dts) {
                ffi::av_seek_frame(ctx, stream, ts, ffi::AVSEEK_FLAG_BACKWARD) >= 0
            } else {
                false
            }
        };
        if seeked && self.landed_at_or_before(index, k) {
            return Ok(());
        }
        self.seek_to_start(index)
    }

    /// Reads the next packet and keeps it pending; true if it is at or before position `k`.
    fn landed_at_or_before(&mut self, index: &PacketIndex, k: usize) -> bool {
        match self.read_packet() {
            Some(p) => {
                let pos = p.pts().and_then(|pts| index.by_pts.get(&pts).copied());
                self.pending = Some(p);
                pos.is_some_and(|d| d <= k)
            }
            None => false,
        }
    }

    fn seek_to_start(&mut self, index: &PacketIndex) -> Result<()> {
        self.flush();
        let stream = self.media.stream as i32;
        let first_ts = index.packets.iter().filter_map(|p| p.dts.or(p.pts)).min();
        // SAFETY: as in `seek_to`.
        let by_time = unsafe {
            first_ts.is_some_and(|ts| {
                ffi::av_seek_frame(
                    self.media.input.as_mut_ptr(),
                    stream,
                    ts,
                    ffi::AVSEEK_FLAG_BACKWARD,
                ) >= 0
            })
        };
        if by_time && self.landed_at_or_before(index, 0) {
            return Ok(());
        }
        self.flush();
        // SAFETY: as above.
        let by_byte = unsafe {
            ffi::av_seek_frame(self.media.input.as_mut_ptr(), -1, 0, ffi::AVSEEK_FLAG_BYTE) >= 0
        };
        if by_byte && self.landed_at_or_before(index, 0) {
            return Ok(());
        }
        Err(self.decode_error(None, "cannot seek back in the stream"))
    }

    /// Exact sampling for streams identified by pts: `targets` are sorted, unique presentation
    /// indices. Returns the targets that could not be decoded because the data ended first.
    pub fn exact(
        &mut self,
        index: &PacketIndex,
        targets: &[u64],
        sink: &mut dyn FrameSink,
    ) -> Result<Vec<u64>> {
        let Identity::Pts { order } = &index.identity else {
            return Err(self.decode_error(None, "exact seeking needs presentation timestamps"));
        };
        let wanted: HashSet<i64> = targets.iter().map(|&t| order[t as usize]).collect();
        let mut got: HashSet<i64> = HashSet::new();
        // Decode position of the next packet to send, when the decoder is mid-stream.
        let mut next_send: Option<usize> = None;
        // After a seek, packets before this decode position are read but not sent.
        let mut start = 0usize;
        let mut frame = VideoFrame::empty();
        for (ti, &t) in targets.iter().enumerate() {
            let tpts = order[t as usize];
            if got.contains(&tpts) {
                continue;
            }
            let mut k = index.keyframe_for(tpts).unwrap_or(0);
            let mut force_seek = false;
            let mut retries = 0;
            let mut allow_early_drain = true;
            loop {
                // Keep decoding forward when the keyframe we need was already sent; otherwise
                // jumping to it skips everything in between.
                let continuing = !force_seek && !self.draining && next_send.is_some_and(|n| k < n);
                if !continuing {
                    self.seek_to(index, k)?;
                    start = k;
                    next_send = Some(k);
                }
                // When the next target will need a seek anyway (or there is none), nothing after
                // this target's packet is worth decoding: drain the decoder right after sending
                // it instead of feeding the packets its reorder delay and frame threads would
                // otherwise wait for.
                let pos_t = index.by_pts.get(&tpts).copied();
                let next_target = targets[ti + 1..]
                    .iter()
                    .map(|&t| order[t as usize])
                    .find(|p| !got.contains(p));
                let next_needs_seek = match next_target {
                    None => true,
                    Some(p) => index.keyframe_for(p).unwrap_or(0) > pos_t.unwrap_or(usize::MAX),
                };
                self.drain_at = if next_needs_seek && allow_early_drain {
                    pos_t
                } else {
                    None
                };
                match self.run_until(
                    index,
                    tpts,
                    &wanted,
                    &mut got,
                    &mut next_send,
                    start,
                    &mut frame,
                    sink,
                )? {
                    Outcome::Found => break,
                    Outcome::Passed if retries < 2 => {
                        // The target did not come out (a leading picture that needs an earlier
                        // GOP, or a decoder that dropped it): start one keyframe earlier.
                        retries += 1;
                        k = index.keyframe_before(k).unwrap_or(0);
                        force_seek = true;
                    }
                    Outcome::Passed => {
                        return Err(
                            self.decode_error(Some(t), "the decoder did not produce this frame")
                        );
                    }
                    Outcome::Eof if self.drained_early => {
                        // Drained right after the target's packet and it did not come out (a
                        // truncated last packet, say): redo this target the plain way, where
                        // the usual missing/clamp and retry rules apply.
                        allow_early_drain = false;
                        force_seek = true;
                    }
                    Outcome::Eof => {
                        // Decoding ran to the end from before this target, so every later target
                        // that exists has been seen too: the rest are missing.
                        return Ok(targets[ti..]
                            .iter()
                            .copied()
                            .filter(|&t| !got.contains(&order[t as usize]))
                            .collect());
                    }
                }
            }
        }
        Ok(Vec::new())
    }

    /// Decodes forward until the frame with pts `tpts` comes out (storing every wanted frame on
    /// the way), a later frame comes out without it, or the data ends.
    #[allow(clippy::too_many_arguments)]
    fn run_until(
        &mut self,
        index: &PacketIndex,
        tpts: i64,
        wanted: &HashSet<i64>,
        got: &mut HashSet<i64>,
        next_send: &mut Option<usize>,
        start: usize,
        frame: &mut VideoFrame,
        sink: &mut dyn FrameSink,
    ) -> Result<Outcome> {
        loop {
            while self.receive(frame)?.is_some() {
                let Some(pts) = frame.pts().or(frame.timestamp()) else {
                    continue;
                };
                if wanted.contains(&pts) && !got.contains(&pts) {
                    if let Some(i) = index.presentation_index(pts) {
                        sink.frame(i, i, frame)?;
                        got.insert(pts);
                    }
                }
                if pts == tpts {
                    return Ok(Outcome::Found);
                }
                if pts > tpts && !got.contains(&tpts) {
                    return Ok(Outcome::Passed);
                }
            }
            if self.draining {
                return Ok(Outcome::Eof);
            }
            match self.read_packet() {
                Some(packet) => {
                    let pts = packet.pts();
                    let pos = pts.and_then(|p| index.by_pts.get(&p).copied());
                    if pos.is_some_and(|d| d < start) {
                        continue;
                    }
                    let is_wanted = pts.is_some_and(|p| wanted.contains(&p) && !got.contains(&p));
                    // Packets the first pass did not see (none, normally) are decoded in full.
                    let skippable = pos.is_some() && !is_wanted;
                    if self.send(packet, skippable)? {
                        if let Some(d) = pos {
                            *next_send = Some(d + 1);
                            if self.drain_at == Some(d) {
                                self.drain();
                                self.drained_early = true;
                            }
                        }
                    }
                }
                None => self.drain(),
            }
        }
    }

    /// Fast sampling: decodes each keyframe (presentation indices, sorted, unique) on its own.
    pub fn keyframes(
        &mut self,
        index: &PacketIndex,
        keyframes: &[u64],
        sink: &mut dyn FrameSink,
    ) -> Result<()> {
        let Identity::Pts { order } = &index.identity else {
            return Err(self.decode_error(None, "fast seeking needs presentation timestamps"));
        };
        let mut frame = VideoFrame::empty();
        for &kp in keyframes {
            let kpts = order[kp as usize];
            let k = index
                .by_pts
                .get(&kpts)
                .copied()
                .ok_or_else(|| self.decode_error(Some(kp), "keyframe not in the index"))?;
            self.seek_to(index, k)?;
            let mut sent = false;
            while let Some(packet) = self.read_packet() {
                let pos = packet.pts().and_then(|p| index.by_pts.get(&p).copied());
                match pos {
                    Some(d) if d < k => continue,
                    Some(d) if d == k => {
                        let mut next = Some(packet);
                        while let Some(p) = next.take() {
                            if !self.send(p, false)? {
                                // Output first (frames of the keyframe's predecessors, ignored).
                                while self.receive(&mut frame)?.is_some() {}
                                next = self.pending.take();
                            }
                        }
                        sent = true;
                        break;
                    }
                    _ => break,
                }
            }
            if !sent {
                return Err(self.decode_error(Some(kp), "could not reach the keyframe"));
            }
            // Draining right after the keyframe makes the decoder output it without waiting for
            // the pictures that would normally follow.
            self.drain();
            let mut found = false;
            while self.receive(&mut frame)?.is_some() {
                if !found && frame.pts().or(frame.timestamp()) == Some(kpts) {
                    sink.frame(kp, kp, &frame)?;
                    found = true;
                }
            }
            if !found {
                return Err(self.decode_error(Some(kp), "the keyframe did not decode"));
            }
        }
        Ok(())
    }

    /// The last frame that decodes at or after the keyframe for `from_pts`, decoding everything
    /// (no skipping) to the end; used to clamp targets past the frames that really exist.
    pub fn last_frame(
        &mut self,
        index: &PacketIndex,
        from_pts: i64,
        sink: &mut dyn FrameSink,
        requests: &[u64],
    ) -> Result<()> {
        let k = index.keyframe_for(from_pts).unwrap_or(0);
        self.seek_to(index, k)?;
        let skip = std::mem::replace(&mut self.skip_nonref, false);
        let mut frame = VideoFrame::empty();
        let mut last: Option<(i64, VideoFrame)> = None;
        loop {
            while self.receive(&mut frame)?.is_some() {
                if let Some(pts) = frame.pts().or(frame.timestamp()) {
                    if last.as_ref().is_none_or(|(p, _)| pts > *p) {
                        last = Some((pts, frame_ref(&frame)?));
                    }
                }
            }
            if self.draining {
                break;
            }
            self.feed_next()?;
        }
        self.skip_nonref = skip;
        let Some((pts, last)) = last else {
            return Err(self.decode_error(None, "no frame decodes near the end of the stream"));
        };
        let i = index
            .presentation_index(pts)
            .unwrap_or(index.frame_count.saturating_sub(1));
        for &r in requests {
            sink.frame(r, i, &last)?;
        }
        Ok(())
    }

    /// Counted sequential scan from the start: frame i is the i-th frame the decoder outputs.
    /// Returns the presentation index and a reference to the last frame decoded, so callers can
    /// clamp targets past the real end.
    pub fn scan(
        &mut self,
        targets: &ScanTargets,
        sink: &mut dyn FrameSink,
    ) -> Result<Option<(u64, VideoFrame)>> {
        let (list, is_last_needed) = match targets {
            ScanTargets::Exact(v)
            | ScanTargets::NearestKeyframe(v)
            | ScanTargets::KeyframeOrdinals(v) => (v, v.last().copied()),
        };
        let mut next = 0usize; // next entry of `list` to serve
        let mut count = 0u64; // frames output so far
        let mut key_ordinal = 0u64;
        let mut last_key: Option<(u64, VideoFrame)> = None;
        let mut last: Option<(u64, VideoFrame)> = None;
        let mut frame = VideoFrame::empty();
        loop {
            while self.receive(&mut frame)?.is_some() {
                let i = count;
                count += 1;
                match targets {
                    ScanTargets::Exact(_) => {
                        if next < list.len() && list[next] == i {
                            sink.frame(i, i, &frame)?;
                            next += 1;
                        }
                    }
                    ScanTargets::NearestKeyframe(_) => {
                        if frame.is_key() || last_key.is_none() {
                            last_key = Some((i, frame_ref(&frame)?));
                        }
                        while next < list.len() && list[next] <= i {
                            let (ki, kf) = last_key.as_ref().expect("set above");
                            sink.frame(list[next], *ki, kf)?;
                            next += 1;
                        }
                    }
                    ScanTargets::KeyframeOrdinals(_) => {
                        if frame.is_key() {
                            if next < list.len() && list[next] == key_ordinal {
                                sink.frame(key_ordinal, i, &frame)?;
                                next += 1;
                            }
                            key_ordinal += 1;
                        }
                    }
                }
                if next >= list.len() {
                    // Everything served: the rest of the file need not be decoded.
                    return Ok(None);
                }
                if is_last_needed.is_some() {
                    last = Some((i, frame_ref(&frame)?));
                }
            }
            if self.draining {
                return Ok(last);
            }
            self.feed_next()?;
        }
    }
}

/// A new reference to `frame`'s buffers (no pixel copy).
fn frame_ref(frame: &VideoFrame) -> Result<VideoFrame> {
    let mut out = VideoFrame::empty();
    // SAFETY: both frames are valid AVFrames; `out` is empty (no buffers), as av_frame_ref requires.
    let r = unsafe { ffi::av_frame_ref(out.as_mut_ptr(), frame.as_ptr()) };
    if r < 0 {
        return Err(Error::Decode {
            source_name: String::new(),
            frame: None,
            reason: ffmpeg::Error::from(r).to_string(),
        });
    }
    Ok(out)
}
