//! [`Conversation`]: questions answered from one cached KV prefix equal fresh
//! [`VideoLlava::generate`] answers to the same full prompt, token for token, on every golden
//! tiny model and media mix, greedy and seeded; multi-turn `chat` equals `generate` with the
//! turns as history; the prefix survives many questions and several threads; bad questions are
//! typed errors.

use std::ops::ControlFlow;

use anyhow::{ensure, Context, Result};
use candle_core::{DType, Device, Tensor};
use video_llava::{
    Conversation, Error, Generation, GenerationParams, ImageInput, Request, StopReason, VideoInput,
    VideoLlava,
};

mod common;
use common::{fixture_models, fixtures, inputs, same_answer};

const QUESTIONS: [&str; 4] = [
    "What happens in this video?",
    "Give it a title.",
    "Why",
    "List three tags, separated by commas, for a catalogue of short clips.",
];

fn greedy() -> GenerationParams {
    GenerationParams::greedy(10)
}

fn sampled() -> GenerationParams {
    GenerationParams {
        temperature: 1.0,
        top_k: Some(40),
        top_p: 0.95,
        repetition_penalty: 1.1,
        seed: Some(7),
        ..GenerationParams::greedy(10)
    }
}

fn fresh(model: &VideoLlava, request: &Request, params: &GenerationParams) -> Result<Generation> {
    Ok(model.generate(request, params, None, &mut |_| ControlFlow::Continue(()))?)
}

fn ask(
    conversation: &Conversation,
    question: &str,
    params: &GenerationParams,
) -> Result<Generation> {
    Ok(conversation.generate(question, params, None, &mut |_| ControlFlow::Continue(()))?)
}

/// The media mixes the golden fixtures cover, as requests without a question.
fn media(video: &Tensor, images: &Tensor) -> Result<Vec<(&'static str, Request)>> {
    let v = || VideoInput::Pixels(video.clone());
    let i = |k: usize| -> Result<ImageInput> { Ok(ImageInput::Pixels(images.get(k)?)) };
    Ok(vec![
        ("video", Request::default().with_video(v())),
        ("image", Request::default().with_image(i(0)?)),
        (
            "image+video",
            Request::default().with_image(i(0)?).with_video(v()),
        ),
        (
            "two images",
            Request::default().with_image(i(0)?).with_image(i(1)?),
        ),
        ("text", Request::default()),
        (
            "video, earlier turn",
            Request::default()
                .with_video(v())
                .with_turn("Describe the video.", "A ball rolls."),
        ),
    ])
}

#[test]
fn answers_equal_fresh_generate_on_every_model_and_media_mix() -> Result<()> {
    let models = fixture_models();
    ensure!(
        models.len() >= 2,
        "fixture models missing under {:?}",
        fixtures()
    );
    let (video, images) = inputs()?;
    for dir in &models {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let model = VideoLlava::from_pretrained(dir.to_str().unwrap(), &Device::Cpu, DType::F32)?;
        for (mix, base) in media(&video, &images)? {
            let conversation = model
                .conversation(&base)
                .with_context(|| format!("{name}/{mix}"))?;
            ensure!(conversation.prefix_tokens() > 0 && conversation.prefix_bytes() > 0);
            for question in QUESTIONS {
                for (kind, params) in [("greedy", greedy()), ("sampled", sampled())] {
                    let what = format!("{name}/{mix}/{kind}/{question:?}");
                    let mut request = base.clone();
                    request.question = question.to_string();
                    let want = fresh(&model, &request, &params).with_context(|| what.clone())?;
                    let got =
                        ask(&conversation, question, &params).with_context(|| what.clone())?;
                    same_answer(&got, &want, &what)?;
                    ensure!(
                        want.cached_tokens == 0,
                        "{what}: fresh generate cached nothing"
                    );
                    // All of the prefix but at most its last piece (which a tokenizer may
                    // join with the question's first) comes from the cache.
                    ensure!(
                        got.cached_tokens + 2 >= conversation.prefix_tokens()
                            && got.cached_tokens <= conversation.prefix_tokens(),
                        "{what}: {} of a {}-token prefix cached",
                        got.cached_tokens,
                        conversation.prefix_tokens()
                    );
                    ensure!(got.timings.vision.is_zero() && got.timings.preprocess.is_zero());
                }
            }
        }
    }
    Ok(())
}

#[test]
fn the_prefix_is_unchanged_after_ten_questions() -> Result<()> {
    let model = tiny()?;
    let (video, _) = inputs()?;
    // Text only: the prefix "USER: " ends in a piece the question's tokens replace, so each
    // question overwrites a position the prefix holds (in its own copy).
    for base in [
        Request::default(),
        Request::default().with_video(VideoInput::Pixels(video.clone())),
    ] {
        let conversation = model.conversation(&base)?;
        let (tokens, bytes) = (conversation.prefix_tokens(), conversation.prefix_bytes());
        let first = ask(&conversation, QUESTIONS[0], &sampled())?;
        for k in 0..10 {
            ask(&conversation, &format!("Question number {k}?"), &greedy())?;
        }
        let again = ask(&conversation, QUESTIONS[0], &sampled())?;
        same_answer(&again, &first, "the first question, asked again")?;
        ensure!(conversation.prefix_tokens() == tokens && conversation.prefix_bytes() == bytes);
        let mut request = base.clone();
        request.question = QUESTIONS[0].into();
        same_answer(
            &again,
            &fresh(&model, &request, &sampled())?,
            "against fresh",
        )?;
    }
    Ok(())
}

#[test]
fn chat_turns_equal_generate_with_the_turns_as_history() -> Result<()> {
    let model = tiny()?;
    let (video, images) = inputs()?;
    for base in [
        Request::default().with_video(VideoInput::Pixels(video.clone())),
        Request::default()
            .with_image(ImageInput::Pixels(images.get(0)?))
            .with_video(VideoInput::Pixels(video.clone())),
        Request::default(),
    ] {
        for params in [greedy(), sampled()] {
            let mut conversation = model.conversation(&base)?;
            let mut history: Vec<(String, String)> = Vec::new();
            for question in ["What happens first?", "And then?", "Why"] {
                let mut request = base.clone();
                request.history = history.clone();
                request.question = question.to_string();
                let want = fresh(&model, &request, &params)?;
                let got = conversation
                    .chat(question, &params, None, &mut |_| ControlFlow::Continue(()))?;
                same_answer(
                    &got,
                    &want,
                    &format!("turn {}: {question}", history.len() + 1),
                )?;
                history.push((question.to_string(), want.text.clone()));
                ensure!(conversation.history() == history.as_slice());
            }
            // A plain question after the turns sees all of them, and leaves them as they are.
            let mut request = base.clone();
            request.history = history.clone();
            request.question = "Summarize.".into();
            same_answer(
                &ask(&conversation, "Summarize.", &params)?,
                &fresh(&model, &request, &params)?,
                "after three turns",
            )?;
            ensure!(conversation.history().len() == 3);
        }
    }
    Ok(())
}

#[test]
fn a_cancelled_chat_answer_is_not_appended() -> Result<()> {
    let model = tiny()?;
    let mut conversation = model.conversation(&Request::default())?;
    let mut pieces = 0;
    let answer = conversation.chat("Say something long.", &greedy(), None, &mut |_| {
        pieces += 1;
        ControlFlow::Break(())
    })?;
    ensure!(answer.stop_reason == StopReason::Cancelled && pieces >= 1);
    ensure!(conversation.history().is_empty());
    Ok(())
}

#[test]
fn stream_gives_what_generate_gives() -> Result<()> {
    let model = tiny()?;
    let (video, _) = inputs()?;
    let conversation =
        model.conversation(&Request::default().with_video(VideoInput::Pixels(video)))?;
    let want = ask(&conversation, QUESTIONS[1], &sampled())?;
    let mut stream = conversation.stream(QUESTIONS[1], sampled());
    let mut text = String::new();
    for piece in stream.by_ref() {
        text.push_str(&piece?);
    }
    let got = stream.finish()?;
    same_answer(&got, &want, "stream")?;
    ensure!(text == got.text);
    Ok(())
}

#[test]
fn several_threads_share_one_conversation() -> Result<()> {
    let model = tiny()?;
    let (video, _) = inputs()?;
    let conversation =
        model.conversation(&Request::default().with_video(VideoInput::Pixels(video)))?;
    let alone: Vec<Vec<u32>> = QUESTIONS
        .iter()
        .map(|q| Ok(ask(&conversation, q, &sampled())?.token_ids))
        .collect::<Result<_>>()?;
    let together: Vec<Vec<u32>> = std::thread::scope(|s| {
        let handles: Vec<_> = QUESTIONS
            .iter()
            .map(|q| {
                let conversation = &conversation;
                s.spawn(move || ask(conversation, q, &sampled()).map(|g| g.token_ids))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("no panic"))
            .collect::<Result<Vec<_>>>()
    })?;
    ensure!(alone == together, "{alone:?} vs {together:?}");
    Ok(())
}

#[test]
fn bad_questions_are_typed_errors() -> Result<()> {
    let model = tiny()?;
    let (video, _) = inputs()?;
    let with_video = Request::default().with_video(VideoInput::Pixels(video));
    let conversation = model.conversation(&with_video)?;
    let context = model.config().max_position_embeddings();

    // More than the context left after the prefix.
    let long = "word ".repeat(context);
    let err = ask(&conversation, &long, &greedy()).unwrap_err();
    let err = err.downcast::<Error>()?;
    ensure!(matches!(err, Error::PromptTooLong { .. }), "{err}");
    let room = context - conversation.prefix_tokens();
    let err = ask(&conversation, "Why", &GenerationParams::greedy(room)).unwrap_err();
    ensure!(
        matches!(err.downcast::<Error>()?, Error::PromptTooLong { .. }),
        "max_new_tokens past the context"
    );

    for question in ["", "   ", "Compare <video> with this."] {
        let err = ask(&conversation, question, &greedy()).unwrap_err();
        let err = err.downcast::<Error>()?;
        ensure!(
            matches!(err, Error::InvalidRequest(_)),
            "{question:?}: {err}"
        );
    }
    let err = ask(
        &conversation,
        "Why",
        &GenerationParams {
            top_p: 0.0,
            ..greedy()
        },
    )
    .unwrap_err()
    .downcast::<Error>()?;
    ensure!(matches!(err, Error::InvalidRequest(_)), "bad params: {err}");

    // A request that already has its question.
    let err = model
        .conversation(&with_video.clone().with_turn("Hi?", "Hello."))
        .and_then(|_| model.conversation(&Request::new("What is it?")))
        .unwrap_err();
    ensure!(matches!(err, Error::InvalidRequest(_)), "{err}");
    // The conversation still answers after the refusals.
    ensure!(!ask(&conversation, "Why", &greedy())?.token_ids.is_empty());
    Ok(())
}

fn tiny() -> Result<VideoLlava> {
    Ok(VideoLlava::from_pretrained(
        fixtures().join("tiny-legacy").to_str().unwrap(),
        &Device::Cpu,
        DType::F32,
    )?)
}
