//! The fuzz targets' bodies, shared by the libFuzzer binaries (`fuzz_targets/`) and by the
//! regression test (`tests/regressions.rs`), which runs every committed input through them as
//! an ordinary test. Each body must return for any input, in bounded time, without panicking:
//! errors are fine, crashes, hangs and broken invariants are bugs.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use frame_sampler::{
    Limits, Resize, SampleOptions, Sampling, SeekMode, Source, ThumbnailOptions, Video,
};

/// A target's body: one input.
pub type Target = fn(&[u8]);

/// Every target, by the name of its binary.
pub const TARGETS: [(&str, Target); 6] = [
    ("sampler", sampler),
    ("planner", planner),
    ("config", config),
    ("weights", weights),
    ("prompt", prompt),
    ("chat_request", chat_request),
];

/// Reads little numbers off the front of an input; what is left is the payload.
struct Bytes<'a>(&'a [u8]);

impl<'a> Bytes<'a> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
    fn u16(&mut self) -> u16 {
        u16::from(self.u8()) | (u16::from(self.u8()) << 8)
    }
    fn u32(&mut self) -> u32 {
        u32::from(self.u16()) | (u32::from(self.u16()) << 16)
    }
    fn f64(&mut self) -> f64 {
        f64::from_bits(u64::from(self.u32()) | (u64::from(self.u32()) << 32))
    }
    fn rest(self) -> &'a [u8] {
        self.0
    }
}

/// The limits every sampler call runs under: a small input, a short deadline, one thread.
fn fuzz_limits() -> Limits {
    Limits {
        max_input_bytes: 4 << 20,
        call_timeout: Some(Duration::from_secs(2)),
        max_decoder_threads: 1,
    }
}

/// A request drawn from `b`: any strategy (small counts, arbitrary indices and times), either
/// seek mode, an optional small resize, and a 64 MiB output budget.
fn request(b: &mut Bytes<'_>) -> SampleOptions {
    let n = usize::from(b.u8() % 9);
    let sampling = match b.u8() % 6 {
        0 => Sampling::Uniform(n),
        1 => Sampling::Linspace(n),
        2 => Sampling::Indices((0..n).map(|_| u64::from(b.u16())).collect()),
        3 => Sampling::Timestamps((0..n).map(|_| f64::from(b.u16()) / 100.0).collect()),
        4 => Sampling::Every(f64::from(b.u16().max(1)) / 10.0),
        _ => Sampling::Keyframes { max: n },
    };
    let seek = if b.u8() & 1 == 0 {
        SeekMode::Exact
    } else {
        SeekMode::Fast
    };
    let side = u32::from(b.u8() % 64);
    let resize = match b.u8() % 4 {
        0 => None,
        1 => Some(Resize::ShortestSide(side)),
        2 => Some(Resize::MaxSide(side)),
        _ => Some(Resize::Exact {
            width: side,
            height: side / 2,
        }),
    };
    let mut options = SampleOptions::new(sampling)
        .seek(seek)
        .resize(resize)
        .threads(1);
    options.max_bytes = 64 << 20;
    options
}

/// The sampler on bytes: open, facts, a sample drawn from the input's first bytes (both seek
/// modes, every strategy), a thumbnail and a storyboard, all on one handle under
/// [`fuzz_limits`]. Whatever succeeds must be consistent with what it reports.
pub fn sampler(data: &[u8]) {
    let mut b = Bytes(data);
    let options = request(&mut b);
    let storyboard = usize::from(b.u8() % 4);
    let file = b.rest().to_vec();
    let Ok(mut video) = Video::open_with(Source::from(file), fuzz_limits()) else {
        return;
    };
    let info = video.info();
    if let Ok(batch) = video.sample(&options) {
        assert_eq!(batch.indices.len(), batch.len());
        assert_eq!(batch.timestamps.len(), batch.len());
        assert_eq!(
            batch.data.len(),
            batch.len() * batch.width as usize * batch.height as usize * 3
        );
        if let Ok(info) = &info {
            for &i in &batch.indices {
                assert!(
                    i < info.frame_count.max(1),
                    "index {i} past {}",
                    info.frame_count
                );
            }
        }
    }
    let small = ThumbnailOptions {
        max_size: 32,
        ..ThumbnailOptions::default()
    };
    if let Ok(thumb) = video.thumbnail(&small) {
        assert!(thumb.width.max(thumb.height) <= 32 && !thumb.data.is_empty());
    }
    if storyboard > 0 {
        if let Ok(frames) = video.storyboard(storyboard, &small) {
            assert!(frames.len() <= storyboard);
            assert!(frames.windows(2).all(|w| w[0].timestamp < w[1].timestamp));
        }
    }
}

/// The planner on random frame tables and requests (no FFmpeg): every plan it makes names
/// frames that exist and fits the budget.
pub fn planner(data: &[u8]) {
    let mut b = Bytes(data);
    let options = request(&mut b);
    let frames = usize::from(b.u16() % 2048);
    let claimed_extra = u64::from(b.u8());
    let max_frames = u64::from(b.u16());
    let size = (
        u32::from(b.u16()),
        u32::from(b.u16()),
        u32::from(b.u8()) * 90 % 360,
    );
    let mut times = Vec::with_capacity(frames);
    let mut keyframes = Vec::new();
    let mut t = 0.0;
    for i in 0..frames {
        match b.u8() {
            0 => times.push(b.f64()), // anything at all, NaN and negatives too
            step => {
                t += f64::from(step) / 1000.0;
                times.push(t);
            }
        }
        if b.u8() & 3 == 0 {
            keyframes.push(i as u64);
        }
    }
    frame_sampler::fuzzing::fuzz_plan(
        &options.sampling,
        times,
        claimed_extra,
        keyframes,
        max_frames,
        size,
        options.resize,
    );
}

/// `config.json` parsing and the derived numbers every loader uses.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(config) = video_llava::VideoLlavaConfig::from_json_str(text, Path::new("config.json"))
    {
        let _ = config.image_tokens();
        let _ = config.video_tokens_per_frame();
        let _ = config.max_position_embeddings();
        let _ = config.feature_hidden_state_indices();
        let _ = config.vision_layers_used();
        let _ = config.vision_feature_dim();
    }
}

/// A scratch model directory per thread, reused (libFuzzer runs one input at a time).
fn scratch() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("a temp dir"))
        .path()
}

/// The fixture model's files, copied once (the tiny config and tokenizer the other files go with).
fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../video-llava/tests/fixtures/tiny-legacy")
}

/// A model directory whose weights are the input: the first byte picks the file it becomes
/// (`model.safetensors`, `model.safetensors.index.json` with its shard, or `model.gguf`); the
/// loader must map, check and read every tensor it lists, or refuse with a typed error.
pub fn weights(data: &[u8]) {
    let mut b = Bytes(data);
    let kind = b.u8() % 3;
    let payload = b.rest();
    let dir = scratch();
    for name in [
        "model.safetensors",
        "model.safetensors.index.json",
        "model-00001-of-00001.safetensors",
        "model.gguf",
    ] {
        let _ = std::fs::remove_file(dir.join(name));
    }
    std::fs::copy(fixture().join("config.json"), dir.join("config.json")).expect("config");
    let written = match kind {
        0 => std::fs::write(dir.join("model.safetensors"), payload),
        1 => std::fs::write(dir.join("model.safetensors.index.json"), payload).and_then(|()| {
            std::fs::copy(
                fixture().join("model.safetensors"),
                dir.join("model-00001-of-00001.safetensors"),
            )
            .map(|_| ())
        }),
        _ => std::fs::write(dir.join("model.gguf"), payload),
    };
    written.expect("the scratch directory is writable");
    let Ok(files) = video_llava::weights::ModelFiles::locate(dir) else {
        return;
    };
    let cpu = video_llava::Device::Cpu;
    let Ok(weights) = video_llava::weights::Weights::open(&files, &cpu, video_llava::DType::F32)
    else {
        return;
    };
    for name in weights.tensor_names() {
        if let Ok((shape, _)) = weights.stored_shape_and_dtype(&name) {
            // A tensor the header lists must load as listed (bounded: the fixture is tiny and a
            // random header's tensors must lie inside the file).
            let elems = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
            if elems.is_some_and(|n| n <= 1 << 24) {
                let _ = weights.load(&name, &shape);
            }
        }
    }
}

/// The fixture's tokenizer, loaded once.
fn tokenizer() -> &'static video_llava::PromptTokenizer {
    static TOKENIZER: OnceLock<video_llava::PromptTokenizer> = OnceLock::new();
    TOKENIZER.get_or_init(|| {
        let config = video_llava::VideoLlavaConfig::from_file(&fixture().join("config.json"))
            .expect("the fixture's config");
        let spec = video_llava::prompt::PlaceholderSpec::from_config(&config);
        video_llava::PromptTokenizer::from_file(&fixture().join("tokenizer.json"), spec)
            .expect("the fixture's tokenizer")
    })
}

/// Prompt formatting and placeholder expansion on random text, history and media counts:
/// an expanded prompt holds exactly the placeholder ids the media need.
pub fn prompt(data: &[u8]) {
    let mut b = Bytes(data);
    let images = usize::from(b.u8() % 3);
    let frames = match b.u8() % 4 {
        0 => None,
        n => Some(usize::from(n)),
    };
    let turns = usize::from(b.u8() % 3);
    let text = String::from_utf8_lossy(b.rest()).into_owned();
    let mut parts = text.split('\u{1}');
    let question = parts.next().unwrap_or_default().to_string();
    let history: Vec<(String, String)> = (0..turns)
        .map(|_| {
            (
                parts.next().unwrap_or_default().to_string(),
                parts.next().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let prompt = video_llava::prompt::format_prompt(&question, &history, images, frames.is_some());
    let tokenizer = tokenizer();
    if let Ok(ids) = tokenizer.encode(&prompt, images, frames) {
        let config = video_llava::VideoLlavaConfig::from_file(&fixture().join("config.json"))
            .expect("the fixture's config");
        let count = |id: u32| ids.iter().filter(|&&i| i == id).count();
        assert_eq!(
            count(config.image_token_index),
            images * config.image_tokens()
        );
        assert_eq!(
            count(config.video_token_index),
            frames.unwrap_or(0) * config.video_tokens_per_frame()
        );
    }
}

/// The server's request body: JSON parsing, the model check, sampling parameters, the
/// conversation, and media resolution with neither files nor the network allowed (so only
/// `data:` URLs are read: images decoded, videos sampled under the default limits).
pub fn chat_request(data: &[u8]) {
    use video_llava::openai::{ChatRequest, MediaPolicy, SettingNames};
    let Ok(chat) = ChatRequest::from_json(data) else {
        return;
    };
    let _ = chat.check_model("video-llava");
    let _ = (chat.stream(), chat.include_usage());
    let _ = chat.params(&video_llava::GenerationParams::default());
    let Ok(conversation) = chat.conversation() else {
        return;
    };
    let policy = MediaPolicy::new(
        None,
        false,
        Duration::from_secs(1),
        1 << 20,
        SettingNames::CLI,
    )
    .expect("no directory to resolve");
    let options = SampleOptions::new(Sampling::Uniform(2)).threads(1);
    let _ = policy.request(conversation, &options);
}
