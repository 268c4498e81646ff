//! Every committed input (fuzz/seeds/<target>/, the seed corpus, and fuzz/regressions/<target>/,
//! each crash a fuzz run found, minimized) run through its target as an ordinary test: a fixed
//! bug stays fixed without a fuzzer.

use std::path::PathBuf;

fn inputs(target: &str) -> Vec<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in ["seeds", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        files.extend(entries.map(|e| e.unwrap().path()).filter(|p| p.is_file()));
    }
    files.sort();
    files
}

#[test]
fn every_committed_input_runs_clean() {
    for (target, body) in video_llava_fuzz::TARGETS {
        let files = inputs(target);
        assert!(
            !files.is_empty(),
            "no seeds for {target} under fuzz/seeds/{target}"
        );
        for file in files {
            eprintln!("{target}: {}", file.display());
            body(&std::fs::read(&file).unwrap());
        }
    }
}
