//! Batched decoding ([`VideoLlava::generate_batch`], [`VideoLlava::generate_continuous`]):
//! every member's answer equals the same request run alone, token for token, on every golden
//! tiny model, for batches of 1-5 requests with different prompt lengths, media and
//! `max_new_tokens`, greedy and seeded; members join mid-way and leave early; a cancelled
//! member stops alone; the KV bound makes requests wait or refuses them with a typed error.

use std::ops::ControlFlow;

use anyhow::{ensure, Context, Result};
use candle_core::{DType, Device, Tensor};
use video_llava::{
    BatchOptions, BatchRequest, CancelToken, Error, Generation, GenerationParams, ImageInput,
    Request, StopReason, VideoInput, VideoLlava,
};

mod common;
use common::{fixture_models, fixtures, inputs, same_answer};

fn greedy(n: usize) -> GenerationParams {
    GenerationParams::greedy(n)
}

fn sampled(n: usize, seed: u64) -> GenerationParams {
    GenerationParams {
        temperature: 0.9,
        top_k: Some(30),
        top_p: 0.95,
        seed: Some(seed),
        ..GenerationParams::greedy(n)
    }
}

/// Requests of different media and prompt lengths.
fn requests(video: &Tensor, images: &Tensor) -> Result<Vec<BatchRequest>> {
    let v = || VideoInput::Pixels(video.clone());
    let i = |k: usize| -> Result<ImageInput> { Ok(ImageInput::Pixels(images.get(k)?)) };
    Ok(vec![
        BatchRequest::new(
            Request::new("What happens in this video?").with_video(v()),
            greedy(9),
        ),
        BatchRequest::new(Request::new("Why").with_image(i(0)?), sampled(6, 11)),
        BatchRequest::new(
            Request::new("Tell me a short story about the sea."),
            greedy(2),
        ),
        BatchRequest::new(
            Request::new("Compare them.")
                .with_image(i(0)?)
                .with_video(v()),
            sampled(12, 5),
        ),
        BatchRequest::new(
            Request::new("And then?")
                .with_image(i(1)?)
                .with_turn("Describe it.", "A red ball."),
            greedy(7),
        ),
    ])
}

fn alone(model: &VideoLlava, member: &BatchRequest) -> Result<Generation> {
    Ok(
        model.generate(&member.request, &member.params, None, &mut |_| {
            ControlFlow::Continue(())
        })?,
    )
}

#[test]
fn batched_answers_equal_each_request_alone_on_every_model() -> Result<()> {
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
        let all = requests(&video, &images)?;
        let want: Vec<Generation> = all
            .iter()
            .map(|m| alone(&model, m))
            .collect::<Result<_>>()?;
        for size in 1..=all.len() {
            for max_batch in [size, 2] {
                let batch = &all[..size];
                let mut pieces = vec![String::new(); size];
                let got = model.generate_batch(
                    batch,
                    &BatchOptions {
                        max_batch,
                        ..BatchOptions::default()
                    },
                    &mut |i, piece| {
                        pieces[i].push_str(piece);
                        ControlFlow::Continue(())
                    },
                );
                ensure!(got.len() == size);
                for (i, got) in got.iter().enumerate() {
                    let what = format!("{name}: member {i} of {size}, max_batch {max_batch}");
                    let got = got.as_ref().map_err(|e| anyhow::anyhow!("{what}: {e}"))?;
                    same_answer(got, &want[i], &what)?;
                    ensure!(pieces[i] == got.text, "{what}: streamed {:?}", pieces[i]);
                }
            }
        }
    }
    Ok(())
}

#[test]
fn members_join_mid_way_and_a_cancelled_one_stops_alone() -> Result<()> {
    let model = tiny()?;
    let (video, images) = inputs()?;
    let all = requests(&video, &images)?;
    let want: Vec<Generation> = all
        .iter()
        .map(|m| alone(&model, m))
        .collect::<Result<_>>()?;
    // Requests arrive one per call of `next`, so each joins a batch already decoding.
    let cancel = CancelToken::new();
    let mut queue: Vec<BatchRequest> = all.clone();
    queue[4].cancel = Some(cancel.clone());
    queue.reverse();
    let mut calls = Vec::new();
    let mut done: Vec<Option<Generation>> = vec![None; all.len()];
    let mut pieces = vec![0usize; all.len()];
    model.generate_continuous(
        &BatchOptions::default(),
        &mut |idle| {
            calls.push(idle);
            // Hand out one request per step.
            if calls.len() % 2 == 1 || idle {
                queue.pop()
            } else {
                None
            }
        },
        &mut |i, _| {
            pieces[i] += 1;
            // The last member is cancelled by its token once its answer has begun.
            if i == 4 && pieces[i] == 1 {
                cancel.cancel();
            }
            // Member 3 stops itself after three pieces.
            if i == 3 && pieces[i] == 3 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        },
        &mut |i, result| done[i] = Some(result.expect("each member answers")),
    )?;
    ensure!(
        calls.first() == Some(&true),
        "the first call finds nothing running"
    );
    ensure!(
        calls.iter().filter(|idle| !**idle).count() >= 4,
        "{calls:?}"
    );
    for i in [0, 1, 2] {
        same_answer(done[i].as_ref().unwrap(), &want[i], &format!("member {i}"))?;
    }
    let stopped = done[3].as_ref().unwrap();
    ensure!(stopped.stop_reason == StopReason::Cancelled);
    ensure!(
        want[3].token_ids.starts_with(&stopped.token_ids),
        "a prefix of its answer"
    );
    let cancelled = done[4].as_ref().unwrap();
    ensure!(
        cancelled.stop_reason == StopReason::Cancelled,
        "{:?}",
        cancelled.stop_reason
    );
    ensure!(want[4].token_ids.starts_with(&cancelled.token_ids));
    ensure!(
        cancelled.token_ids.len() < want[4].token_ids.len(),
        "the cancel is seen before the next token: {:?} vs {:?}",
        cancelled.token_ids,
        want[4].token_ids
    );
    Ok(())
}

#[test]
fn the_kv_bound_makes_members_wait_or_refuses_them() -> Result<()> {
    let model = tiny()?;
    let (video, images) = inputs()?;
    let all = requests(&video, &images)?;
    let want: Vec<Generation> = all
        .iter()
        .map(|m| alone(&model, m))
        .collect::<Result<_>>()?;
    let per_position = model.model().kv_bytes_per_position();
    let need = |i: usize| (want[i].prompt_tokens + all[i].params.max_new_tokens) * per_position;
    // Room for the largest member alone: the others wait their turn, and all answer right.
    let largest = (0..all.len()).map(need).max().unwrap();
    let got = model.generate_batch(
        &all,
        &BatchOptions {
            max_batch: 5,
            max_kv_bytes: Some(largest),
        },
        &mut |_, _| ControlFlow::Continue(()),
    );
    for (i, got) in got.iter().enumerate() {
        same_answer(got.as_ref().unwrap(), &want[i], &format!("member {i}"))?;
    }
    // Room for less than the video members: they are refused, the others answer.
    let bound = need(1).max(need(2)).max(need(4));
    let got = model.generate_batch(
        &all,
        &BatchOptions {
            max_batch: 5,
            max_kv_bytes: Some(bound),
        },
        &mut |_, _| ControlFlow::Continue(()),
    );
    for i in [0, 3] {
        let err = got[i].as_ref().unwrap_err();
        ensure!(
            matches!(err, Error::KvMemory { needed, limit } if *needed == need(i) && *limit == bound),
            "{err}"
        );
        ensure!(err.kind() == video_llava::ErrorKind::TooLarge);
    }
    for i in [1, 2, 4] {
        same_answer(got[i].as_ref().unwrap(), &want[i], &format!("member {i}"))?;
    }
    Ok(())
}

#[test]
fn bad_members_fail_alone_and_bad_options_fail_all() -> Result<()> {
    let model = tiny()?;
    let good = BatchRequest::new(Request::new("Why"), greedy(3));
    let too_long = BatchRequest::new(Request::new("Why"), greedy(1_000_000));
    let no_media = BatchRequest::new(Request::new("<video> what?"), greedy(3));
    let got = model.generate_batch(
        &[&good, &too_long, &no_media, &good],
        &BatchOptions::default(),
        &mut |_, _| ControlFlow::Continue(()),
    );
    ensure!(
        matches!(got[1], Err(Error::PromptTooLong { .. })),
        "{:?}",
        got[1]
    );
    ensure!(
        matches!(got[2], Err(Error::InvalidRequest(_))),
        "{:?}",
        got[2]
    );
    let want = alone(&model, &good)?;
    for i in [0, 3] {
        same_answer(got[i].as_ref().unwrap(), &want, "good")?;
    }
    for max_batch in [0, video_llava::MAX_BATCH + 1] {
        let got = model.generate_batch(
            &[&good],
            &BatchOptions {
                max_batch,
                ..BatchOptions::default()
            },
            &mut |_, _| ControlFlow::Continue(()),
        );
        ensure!(
            matches!(got[0], Err(Error::InvalidRequest(_))),
            "{max_batch}"
        );
    }
    Ok(())
}

#[test]
fn a_prefix_cache_batch_shares_the_video_prefix() -> Result<()> {
    let model = tiny()?;
    let frames = VideoInput::Frames {
        data: (0..8 * 48 * 64 * 3).map(|i| (i * 7 % 251) as u8).collect(),
        count: 8,
        height: 48,
        width: 64,
    };
    let cache = video_llava::PrefixCache::new(model.clone(), 1 << 30);
    let members: Vec<BatchRequest> = ["What happens?", "Give it a title.", "Why", "List tags."]
        .iter()
        .enumerate()
        .map(|(i, q)| {
            BatchRequest::new(
                Request::new(*q).with_video(frames.clone()),
                sampled(5 + i, i as u64),
            )
        })
        .collect();
    let mut queue = members.clone();
    queue.reverse();
    let mut done: Vec<Option<Generation>> = vec![None; members.len()];
    cache.generate_continuous(
        &BatchOptions::default(),
        &mut |_| queue.pop(),
        &mut |_, _| ControlFlow::Continue(()),
        &mut |i, r| done[i] = Some(r.expect("answers")),
    )?;
    for (i, member) in members.iter().enumerate() {
        let got = done[i].as_ref().unwrap();
        same_answer(got, &alone(&model, member)?, &format!("member {i}"))?;
        ensure!(
            (got.cached_tokens > 0) == (i > 0),
            "{i}: {}",
            got.cached_tokens
        );
    }
    ensure!(
        cache.stats().hits == 3 && cache.stats().misses == 1,
        "{:?}",
        cache.stats()
    );
    Ok(())
}

fn tiny() -> Result<VideoLlava> {
    VideoLlava::from_pretrained(
        fixtures().join("tiny-legacy").to_str().unwrap(),
        &Device::Cpu,
        DType::F32,
    )
    .context("the tiny-legacy fixture loads")
}
