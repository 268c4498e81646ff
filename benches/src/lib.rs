//! Shared locations for the criterion benches in `benches/` (and the peer comparison, `compare.py`).

use std::path::PathBuf;

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A bench input: `.cache/bench/NAME` (made by `benches/make-bench-data.sh`) or `test-data/NAME`.
/// Returns None (the bench is skipped with a message) when neither exists.
pub fn input(name: &str) -> Option<PathBuf> {
    let root = workspace_root();
    [
        root.join(".cache/bench").join(name),
        root.join("test-data").join(name),
    ]
    .into_iter()
    .find(|p| p.exists())
    .or_else(|| {
        eprintln!("skipping {name}: run benches/make-bench-data.sh and scripts/make-test-data.sh");
        None
    })
}

/// The model the model benches load: `.cache/bench-model` (benches/make_bench_model.py) when present,
/// else the tiny test fixture.
pub fn bench_model_dir() -> PathBuf {
    let root = workspace_root();
    let mid = root.join(".cache/bench-model");
    if mid.join("config.json").exists() {
        mid
    } else {
        root.join("video-llava/tests/fixtures/tiny-legacy")
    }
}
