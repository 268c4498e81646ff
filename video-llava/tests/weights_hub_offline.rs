//! `hub::resolve` in offline mode against a fake Hugging Face cache under `HF_HOME`: no network.
//! One test in its own binary, because it sets process-wide environment variables.
#![cfg(feature = "hub")]

use std::path::Path;

use candle_core::{DType, Device};
use video_llava::model::VideoLlavaModel;
use video_llava::{hub, Error};

#[test]
fn offline_resolve_reads_the_hf_home_cache_only() {
    let home = tempfile::tempdir().unwrap();
    // The layout huggingface_hub and hf-hub share: hub/models--org--name/{refs/main, snapshots/<rev>/}.
    let repo = home.path().join("hub/models--video-llava-rs--tiny-legacy");
    let rev = "4b825dc642cb6eb9a060e54bf8d69288fbee4904";
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), rev).unwrap();
    let snapshot = repo.join("snapshots").join(rev);
    std::fs::create_dir_all(&snapshot).unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-legacy");
    for file in [
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "model.safetensors",
    ] {
        std::fs::copy(fixture.join(file), snapshot.join(file)).unwrap();
    }
    // SAFETY (edition 2024 wording): this binary has a single test, so no other thread reads
    // the environment while it changes.
    std::env::remove_var("HF_HUB_CACHE");
    std::env::set_var("HF_HOME", home.path());
    std::env::set_var("HF_HUB_OFFLINE", "1");
    assert!(hub::offline_from_env());
    assert_eq!(hub::cache_dir(), home.path().join("hub"));

    let dir = hub::resolve("video-llava-rs/tiny-legacy").unwrap();
    assert_eq!(dir, snapshot);
    let model = VideoLlavaModel::load(&dir, &Device::Cpu, DType::F32).unwrap();
    assert_eq!(model.config().text.hidden_size, 32);

    // A repo not in the cache fails with a typed error saying so, without touching the network.
    match hub::resolve("video-llava-rs/not-cached") {
        Err(Error::Download { repo, reason }) => {
            assert_eq!(repo, "video-llava-rs/not-cached");
            assert!(
                reason.contains("offline") && reason.contains("not cached"),
                "{reason}"
            );
        }
        other => panic!("expected Error::Download, got {other:?}"),
    }
    // A cached repo missing its weights is reported the same way.
    std::fs::remove_file(snapshot.join("model.safetensors")).unwrap();
    match hub::resolve("video-llava-rs/tiny-legacy") {
        Err(Error::Download { reason, .. }) => {
            assert!(reason.contains("model.safetensors"), "{reason}")
        }
        other => panic!("expected Error::Download, got {other:?}"),
    }
}
