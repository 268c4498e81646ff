//! The model core against golden outputs of transformers' VideoLlavaForConditionalGeneration
//! (made by tests/fixtures/make_fixtures.py): for every fixture model and case, in f32 on CPU,
//! last-position logits within 1e-4 (max abs difference relative to the largest reference
//! logit) and 16 greedy tokens identical; bf16 loading stays close to f32.

use anyhow::{ensure, Context, Result};
use candle_core::{DType, Device, Tensor};
use video_llava::model::VideoLlavaModel;

mod common;
use common::{case_pixels, fixture_models, fixtures, inputs, relative_error, Golden};

fn argmax(logits: &Tensor) -> Result<u32> {
    Ok(logits.argmax(0)?.to_scalar::<u32>()?)
}

/// Prompt logits and `new_tokens` greedy tokens through the model core's public API.
fn run_case(
    model: &VideoLlavaModel,
    ids: &[u32],
    video: Option<&Tensor>,
    images: Option<&Tensor>,
    new_tokens: usize,
) -> Result<(Tensor, Vec<u32>)> {
    let video_features = video.map(|v| model.encode_videos(v)).transpose()?;
    let image_features = images.map(|i| model.encode_images(i)).transpose()?;
    let embeds = model.embed(ids, image_features.as_ref(), video_features.as_ref())?;
    let mut cache = model.new_cache(ids.len() + new_tokens)?;
    let logits = model.forward_embeds(&embeds, &mut cache)?;
    let mut tokens = vec![argmax(&logits)?];
    while tokens.len() < new_tokens {
        let next = model.forward_tokens(&tokens[tokens.len() - 1..], &mut cache)?;
        tokens.push(argmax(&next)?);
    }
    ensure!(cache.len() == ids.len() + new_tokens - 1, "cache length");
    Ok((logits, tokens))
}

#[test]
fn every_fixture_model_matches_the_reference_in_f32() -> Result<()> {
    let models = fixture_models();
    ensure!(
        !models.is_empty(),
        "no fixture models under {:?}",
        fixtures()
    );
    let (video, images) = inputs()?;
    let mut failures = Vec::new();
    for dir in &models {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let model = VideoLlavaModel::load(dir, &Device::Cpu, DType::F32)
            .with_context(|| format!("loading {name}"))?;
        let golden = Golden::load(dir)?;
        ensure!(!golden.cases.is_empty(), "{name}: no cases");
        for case in &golden.cases {
            let ids = golden.ids(&case.name, "input_ids")?;
            let want_logits = golden.tensor(&case.name, "logits")?;
            let want_tokens = golden.ids(&case.name, "greedy")?;
            let (v, i) = case_pixels(case, &video, &images)?;
            let (logits, tokens) =
                run_case(&model, &ids, v.as_ref(), i.as_ref(), want_tokens.len())
                    .with_context(|| format!("{name}/{}", case.name))?;
            let err = relative_error(&logits, want_logits)?;
            eprintln!(
                "{name}/{}: {} tokens, max logits error {err:.3e} (relative), greedy {}",
                case.name,
                ids.len(),
                if tokens == want_tokens {
                    "identical"
                } else {
                    "DIFFERENT"
                }
            );
            if err > 1e-4 {
                failures.push(format!(
                    "{name}/{}: logits error {err:.3e} > 1e-4",
                    case.name
                ));
            }
            if tokens != want_tokens {
                failures.push(format!(
                    "{name}/{}: greedy {tokens:?} != reference {want_tokens:?}",
                    case.name
                ));
            }
        }
    }
    ensure!(failures.is_empty(), "{}", failures.join("\n"));
    Ok(())
}

#[test]
fn bf16_loading_stays_close_to_f32() -> Result<()> {
    let (video, images) = inputs()?;
    for dir in fixture_models() {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let f32_model = VideoLlavaModel::load(&dir, &Device::Cpu, DType::F32)?;
        let bf16_model = VideoLlavaModel::load(&dir, &Device::Cpu, DType::BF16)?;
        assert_eq!(bf16_model.dtype(), DType::BF16);
        let golden = Golden::load(&dir)?;
        // The image case exercises towers, projector, merge and LM in a few hundred positions.
        let case = golden
            .cases
            .iter()
            .find(|c| c.images > 0 && !c.video)
            .unwrap_or(&golden.cases[0]);
        let ids = golden.ids(&case.name, "input_ids")?;
        let (v, i) = case_pixels(case, &video, &images)?;
        let (want, _) = run_case(&f32_model, &ids, v.as_ref(), i.as_ref(), 1)?;
        let (got, _) = run_case(&bf16_model, &ids, v.as_ref(), i.as_ref(), 1)?;
        assert_eq!(got.dtype(), DType::F32, "logits come back as f32");
        let err = relative_error(&got, &want)?;
        eprintln!(
            "{name}/{}: bf16 vs f32 max logits error {err:.3e} (relative)",
            case.name
        );
        ensure!(err < 0.05, "{name}: bf16 logits too far from f32: {err}");
        // Same weights in bf16 still rank the top token the same in these fixtures.
        let top = argmax(&want)?;
        let got_rank = got
            .to_vec1::<f32>()?
            .iter()
            .filter(|&&x| x > got.to_vec1::<f32>().unwrap()[top as usize])
            .count();
        ensure!(
            got_rank < 5,
            "{name}: f32's top token ranks {got_rank} in bf16"
        );
    }
    Ok(())
}

#[test]
fn one_model_serves_several_threads_at_once() -> Result<()> {
    let dir = fixture_models()
        .into_iter()
        .next()
        .context("a fixture model")?;
    let model = VideoLlavaModel::load(&dir, &Device::Cpu, DType::F32)?;
    let golden = Golden::load(&dir)?;
    let (video, images) = inputs()?;
    std::thread::scope(|s| -> Result<()> {
        let handles: Vec<_> = golden
            .cases
            .iter()
            .filter(|c| !c.video)
            .map(|case| {
                let model = &model;
                let golden = &golden;
                let (video, images) = (&video, &images);
                s.spawn(move || -> Result<()> {
                    let ids = golden.ids(&case.name, "input_ids")?;
                    let want = golden.ids(&case.name, "greedy")?;
                    let (v, i) = case_pixels(case, video, images)?;
                    let (_, tokens) = run_case(model, &ids, v.as_ref(), i.as_ref(), want.len())?;
                    ensure!(tokens == want, "{}: {tokens:?} != {want:?}", case.name);
                    Ok(())
                })
            })
            .collect();
        ensure!(
            handles.len() >= 2,
            "need at least two cases to run concurrently"
        );
        for h in handles {
            h.join().expect("thread panicked")?;
        }
        Ok(())
    })
}

#[test]
fn a_prefill_split_in_chunks_gives_the_same_logits() -> Result<()> {
    // Chunked prefill exercises the causal mask with an offset and the cache write positions.
    let (video, images) = inputs()?;
    for dir in fixture_models() {
        let model = VideoLlavaModel::load(&dir, &Device::Cpu, DType::F32)?;
        let golden = Golden::load(&dir)?;
        let case = golden
            .cases
            .iter()
            .find(|c| c.images == 1 && !c.video)
            .context("image case")?;
        let ids = golden.ids(&case.name, "input_ids")?;
        let (_, i) = case_pixels(case, &video, &images)?;
        let features = model.encode_images(i.as_ref().context("images")?)?;
        let embeds = model.embed(&ids, Some(&features), None)?;
        let mut cache = model.new_cache(ids.len())?;
        let cut = [0, 5, 130, ids.len() - 1, ids.len()];
        let mut logits = None;
        for w in cut.windows(2) {
            let part = embeds.narrow(1, w[0], w[1] - w[0])?;
            logits = Some(model.forward_embeds(&part, &mut cache)?);
        }
        ensure!(cache.len() == ids.len() && cache.len() == cache.capacity());
        let want = golden.tensor(&case.name, "logits")?;
        let err = relative_error(&logits.context("logits")?, want)?;
        ensure!(err < 1e-4, "{dir:?}: chunked prefill error {err}");
    }
    Ok(())
}

#[test]
fn misuse_of_the_model_api_gives_typed_errors() -> Result<()> {
    use video_llava::Error;
    let dir = fixture_models()
        .into_iter()
        .next()
        .context("a fixture model")?;
    let model = VideoLlavaModel::load(&dir, &Device::Cpu, DType::F32)?;
    let cfg = model.config();
    let invalid = |r: video_llava::Result<Tensor>| matches!(r, Err(Error::InvalidRequest(_)));

    // Caches: empty or beyond the context.
    assert!(matches!(model.new_cache(0), Err(Error::InvalidRequest(_))));
    assert!(matches!(
        model.new_cache(cfg.max_position_embeddings() + 1),
        Err(Error::InvalidRequest(_))
    ));
    // Overflowing a cache is refused and leaves it as it was.
    let mut cache = model.new_cache(4)?;
    model.forward_tokens(&[1, 2, 3], &mut cache)?;
    assert!(invalid(model.forward_tokens(&[4, 5], &mut cache)));
    assert_eq!(cache.len(), 3);
    model.forward_tokens(&[4], &mut cache)?;
    assert_eq!(cache.len(), 4);
    // Ids outside the vocabulary, and empty inputs.
    let mut cache = model.new_cache(8)?;
    assert!(invalid(model.forward_tokens(&[1, 99_999], &mut cache)));
    assert!(invalid(model.forward_tokens(&[], &mut cache)));
    assert!(invalid(model.embed(&[], None, None)));
    // Placeholders without features, and features without placeholders.
    assert!(invalid(model.embed(
        &[1, cfg.image_token_index, 2],
        None,
        None
    )));
    let pixels = Tensor::zeros((1, 3, 224, 224), DType::F32, &Device::Cpu)?;
    let features = model.encode_images(&pixels)?;
    assert_eq!(
        features.dims(),
        &[1, cfg.image_tokens(), cfg.text.hidden_size]
    );
    assert!(invalid(model.embed(&[1, 2], Some(&features), None)));
    // Pixels of the wrong size or rank.
    assert!(invalid(model.encode_images(&Tensor::zeros(
        (1, 3, 112, 112),
        DType::F32,
        &Device::Cpu
    )?)));
    assert!(invalid(model.encode_videos(&pixels)));
    let video = Tensor::zeros((1, 2, 3, 224, 224), DType::F32, &Device::Cpu)?;
    assert_eq!(
        model.encode_videos(&video)?.dims(),
        &[1, 2 * cfg.video_tokens_per_frame(), cfg.text.hidden_size]
    );
    // Embeddings of the wrong width.
    let wrong = Tensor::zeros((1, 2, cfg.text.hidden_size + 1), DType::F32, &Device::Cpu)?;
    assert!(invalid(model.forward_embeds(&wrong, &mut cache)));
    Ok(())
}
