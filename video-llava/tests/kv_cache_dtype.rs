//! A KV cache in another dtype than the compute one (`LoadOptions::kv_cache_dtype`): f16 and
//! bf16 caches beside f32 compute take half the bytes, stay close to the f32 cache's logits (the
//! greedy tokens are kept wherever the f32 margin exceeds the measured error), and keep what the
//! engine promises about caches: conversation answers equal fresh `generate` answers and batched
//! members equal the same requests alone, token for token. Bad dtypes are typed errors.

use std::ops::ControlFlow;

use anyhow::{ensure, Context, Result};
use candle_core::{DType, Device};
use video_llava::model::VideoLlavaModel;
use video_llava::{
    BatchOptions, BatchRequest, Error, Generation, GenerationParams, ImageInput, LoadOptions,
    Request, VideoInput, VideoLlava,
};

mod common;
use common::{along_greedy_path, fixture_models, fixtures, inputs, same_answer};

fn load(dir: &std::path::Path, kv: DType) -> Result<VideoLlava> {
    let options = LoadOptions::new(&Device::Cpu, DType::F32).kv_cache_dtype(kv);
    Ok(VideoLlava::from_pretrained_with(
        dir.to_str().context("utf-8 path")?,
        &options,
    )?)
}

fn alone(model: &VideoLlava, request: &Request, params: &GenerationParams) -> Result<Generation> {
    Ok(model.generate(request, params, None, &mut |_| ControlFlow::Continue(()))?)
}

#[test]
fn half_caches_take_half_the_bytes() -> Result<()> {
    let dir = fixtures().join("tiny-legacy");
    let f32_model = VideoLlavaModel::load(&dir, &Device::Cpu, DType::F32)?;
    ensure!(
        f32_model.kv_cache_dtype() == DType::F32,
        "default: compute dtype"
    );
    for kv in [DType::F16, DType::BF16] {
        let model = load(&dir, kv)?;
        ensure!(model.kv_cache_dtype() == kv);
        ensure!(model.dtype() == DType::F32, "compute stays f32");
        let per = model.model().kv_bytes_per_position();
        ensure!(
            2 * per == f32_model.kv_bytes_per_position(),
            "{kv:?}: {per} bytes per position vs f32 {}",
            f32_model.kv_bytes_per_position()
        );
        let cache = model.model().new_cache(40)?;
        ensure!(cache.bytes() == 40 * per, "{kv:?}: {} bytes", cache.bytes());
        let (video, _) = inputs()?;
        let conversation =
            model.conversation(&Request::default().with_video(VideoInput::Pixels(video)))?;
        ensure!(
            conversation.prefix_bytes() == conversation.prefix_tokens() * per,
            "{kv:?}: prefix of {} tokens in {} bytes",
            conversation.prefix_tokens(),
            conversation.prefix_bytes()
        );
    }
    Ok(())
}

/// Teacher-forced along the golden greedy tokens of tiny-legacy, the f16 and bf16 caches against
/// the f32 cache: logits error and prompt KL within measured bounds, never identical (the
/// rounding is real), and the greedy token kept wherever the f32 top-2 margin exceeds twice the
/// error bound (no pair of logits can swap then).
#[test]
fn half_caches_stay_close_to_the_f32_cache() -> Result<()> {
    let dir = fixtures().join("tiny-legacy");
    let reference = VideoLlavaModel::load(&dir, &Device::Cpu, DType::F32)?;
    // Measured over the six cases (2026-12-08): max logits error 1.2e-3 with f16, 8.3e-3 with
    // bf16; the prompt KL is below what f32 resolves (|KL| < 2e-6 nats, some of it negative).
    // The bounds leave about 4x headroom: a cache read with the wrong scale, layout or
    // positions moves the logits by whole units.
    for (kv, max_error, max_kl) in [(DType::F16, 5e-3, 1e-5), (DType::BF16, 0.03, 1e-4)] {
        let mut model = VideoLlavaModel::load(&dir, &Device::Cpu, DType::F32)?;
        model.set_kv_cache_dtype(kv)?;
        let what = format!("the {kv:?} cache");
        let (cases, checked, _) = along_greedy_path(&reference, &model, &dir, max_error, &what)?;
        let mut worst_all = 0f32;
        for case in &cases {
            let (worst, kl) = (case.worst, case.prompt_kl);
            eprintln!(
                "tiny-legacy/{}: {kv:?} cache: max logits error {worst:.2e}, prompt KL {kl:.2e}",
                case.name
            );
            ensure!(
                worst < max_error && kl < max_kl,
                "{kv:?} {}: error {worst}, KL {kl}",
                case.name
            );
            worst_all = worst_all.max(worst);
        }
        ensure!(worst_all > 0.0, "{kv:?}: logits identical to f32's");
        ensure!(checked >= 16, "{kv:?}: only {checked} steps checked");
    }
    Ok(())
}

#[test]
fn half_caches_keep_conversations_and_batches_exact() -> Result<()> {
    let models = fixture_models();
    ensure!(models.len() >= 2, "fixture models missing");
    let (video, images) = inputs()?;
    let v = || VideoInput::Pixels(video.clone());
    let image = ImageInput::Pixels(images.get(0)?);
    let sampled = GenerationParams {
        temperature: 0.9,
        top_k: Some(30),
        seed: Some(3),
        ..GenerationParams::greedy(8)
    };
    for dir in &models {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        for kv in [DType::F16, DType::BF16] {
            let model = load(dir, kv)?;
            // A conversation's cached prefix and a fresh prefill of the whole prompt read the
            // same rounded keys and values.
            let base = Request::default().with_image(image.clone()).with_video(v());
            let conversation = model.conversation(&base)?;
            for question in ["What happens in this video?", "Give it a title."] {
                for params in [GenerationParams::greedy(8), sampled.clone()] {
                    let what = format!("{name}/{kv:?}/{question:?}");
                    let mut request = base.clone();
                    request.question = question.into();
                    let want = alone(&model, &request, &params)?;
                    let got = conversation
                        .generate(question, &params, None, &mut |_| ControlFlow::Continue(()))?;
                    same_answer(&got, &want, &what)?;
                }
            }
            // Batched members, of different prompt lengths, equal each alone.
            let batch = vec![
                BatchRequest::new(
                    Request::new("What happens in this video?").with_video(v()),
                    GenerationParams::greedy(9),
                ),
                BatchRequest::new(
                    Request::new("Why").with_image(image.clone()),
                    sampled.clone(),
                ),
                BatchRequest::new(
                    Request::new("Tell me a short story about the sea."),
                    GenerationParams::greedy(3),
                ),
            ];
            let got = model.generate_batch(&batch, &BatchOptions::default(), &mut |_, _| {
                ControlFlow::Continue(())
            });
            for (i, (got, member)) in got.iter().zip(&batch).enumerate() {
                let what = format!("{name}/{kv:?}: member {i}");
                let got = got.as_ref().map_err(|e| anyhow::anyhow!("{what}: {e}"))?;
                same_answer(got, &alone(&model, &member.request, &member.params)?, &what)?;
            }
        }
    }
    Ok(())
}

#[test]
fn a_cache_dtype_that_is_not_a_float_is_a_typed_error() -> Result<()> {
    let dir = fixtures().join("tiny-legacy");
    for bad in [DType::U8, DType::U32, DType::I64, DType::F64] {
        let options = LoadOptions::new(&Device::Cpu, DType::F32).kv_cache_dtype(bad);
        match VideoLlava::from_pretrained_with(dir.to_str().unwrap(), &options) {
            Err(Error::InvalidRequest(msg)) => ensure!(msg.contains("KV cache"), "{msg}"),
            other => anyhow::bail!("{bad:?}: {:?}", other.map(|_| ())),
        }
    }
    // Names go through the core's dtype parser, as in every front end.
    ensure!(video_llava::device::parse_dtype("fp16")? == DType::F16);
    ensure!(matches!(
        video_llava::device::parse_dtype("int8"),
        Err(Error::InvalidRequest(_))
    ));
    Ok(())
}
