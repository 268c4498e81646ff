//! Resolving a hub repo id to a local directory through `hf-hub`.
//!
//! An existing local directory is used as it is. Anything else is a repo id (`org/name`,
//! optionally `org/name@revision`), whose config, tokenizer files and safetensors (single or
//! index + shards) are downloaded into the standard Hugging Face cache — `HF_HUB_CACHE`, else
//! `$HF_HOME/hub`, else `~/.cache/huggingface/hub` — with progress bars on stderr
//! (`HF_HUB_DISABLE_PROGRESS_BARS=1` turns them off). With
//! `HF_HUB_OFFLINE=1` only that cache is read, and a repo not fully cached is an
//! [`Error::Download`] saying so. Online, an unreachable hub falls back to a complete cached copy.

use std::path::{Path, PathBuf};

use hf_hub::api::sync::ApiBuilder;
use hf_hub::{Cache, Repo, RepoType};

use crate::weights::{INDEX_FILE, SINGLE_FILE};
use crate::{Error, Result};

/// Files fetched besides the weights; the first is required, the rest are used when present.
const REQUIRED: &[&str] = &["config.json", "tokenizer.json"];
const OPTIONAL: &[&str] = &[
    "tokenizer_config.json",
    "special_tokens_map.json",
    "generation_config.json",
    "processor_config.json",
    "preprocessor_config.json",
];

/// Whether the environment variable `name` is set to a true value, as huggingface_hub reads
/// its flags: `1`, `true`, `yes` or `on`, in any case.
fn env_flag(name: &str) -> bool {
    std::env::var(name)
        .map(|v| {
            matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "1" | "true" | "yes" | "on"
            )
        })
        .unwrap_or(false)
}

/// Whether `HF_HUB_OFFLINE` asks for cache-only operation (as huggingface_hub reads it).
pub fn offline_from_env() -> bool {
    env_flag("HF_HUB_OFFLINE")
}

/// Whether `HF_HUB_DISABLE_PROGRESS_BARS` turns the download progress bars off (as
/// huggingface_hub reads it). They are drawn on stderr, and only when it is a terminal.
pub fn progress_disabled_from_env() -> bool {
    env_flag("HF_HUB_DISABLE_PROGRESS_BARS")
}

/// The hub cache directory: `HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`.
pub fn cache_dir() -> PathBuf {
    match std::env::var_os("HF_HUB_CACHE") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => Cache::from_env().path().clone(),
    }
}

fn parse_repo(id: &str) -> Repo {
    match id.split_once('@') {
        Some((name, rev)) if !rev.is_empty() => {
            Repo::with_revision(name.to_string(), RepoType::Model, rev.to_string())
        }
        _ => Repo::new(id.to_string(), RepoType::Model),
    }
}

/// A local directory as is; otherwise a hub repo id downloaded (or, offline, found) in the
/// cache. Returns the directory holding `config.json`, the tokenizer and the weights.
pub fn resolve(dir_or_repo: &str) -> Result<PathBuf> {
    let local = Path::new(dir_or_repo);
    if local.is_dir() {
        return Ok(local.to_path_buf());
    }
    if dir_or_repo.is_empty()
        || dir_or_repo.starts_with('.')
        || dir_or_repo.starts_with('/')
        || dir_or_repo.matches('/').count() > 1
    {
        return Err(Error::MissingFile {
            dir: local.to_path_buf(),
            what: "the model directory (not found, and not a hub repo id like org/name)".into(),
        });
    }
    if offline_from_env() {
        resolve_offline(dir_or_repo, &cache_dir())
    } else {
        resolve_online(dir_or_repo, &cache_dir(), None)
    }
}

/// Finds every needed file of `repo_id` in the cache at `cache`, never touching the network.
pub fn resolve_offline(repo_id: &str, cache: &Path) -> Result<PathBuf> {
    let repo = Cache::new(cache.to_path_buf()).repo(parse_repo(repo_id));
    let not_cached = |file: &str| Error::Download {
        repo: repo_id.to_string(),
        reason: format!(
            "offline (HF_HUB_OFFLINE is set) and {file} is not cached under {}",
            cache.display()
        ),
    };
    let config = repo
        .get("config.json")
        .ok_or_else(|| not_cached("config.json"))?;
    for file in &REQUIRED[1..] {
        repo.get(file).ok_or_else(|| not_cached(file))?;
    }
    if let Some(index) = repo.get(INDEX_FILE) {
        let dir = index.parent().map(Path::to_path_buf).unwrap_or_default();
        for shard in crate::weights::read_index(&index)? {
            repo.get(&shard).ok_or_else(|| not_cached(&shard))?;
        }
        return Ok(dir);
    }
    repo.get(SINGLE_FILE)
        .ok_or_else(|| not_cached(&format!("{SINGLE_FILE} (nor {INDEX_FILE})")))?;
    Ok(config.parent().map(Path::to_path_buf).unwrap_or_default())
}

/// Downloads what is missing; `endpoint` overrides the hub URL (else `HF_ENDPOINT` or the hub).
fn resolve_online(repo_id: &str, cache: &Path, endpoint: Option<&str>) -> Result<PathBuf> {
    let failed = |what: &str, e: hf_hub::api::sync::ApiError| Error::Download {
        repo: repo_id.to_string(),
        reason: format!("{what}: {e}"),
    };
    let mut builder = ApiBuilder::from_env();
    if let Some(endpoint) = endpoint {
        builder = builder.with_endpoint(endpoint.to_string());
    }
    let api = builder
        .with_cache_dir(cache.to_path_buf())
        .with_progress(!progress_disabled_from_env())
        .build()
        .map_err(|e| failed("cannot start the hub client", e))?;
    let repo = api.repo(parse_repo(repo_id));
    let info = match repo.info() {
        Ok(info) => info,
        // Like huggingface_hub, fall back to a complete cached copy when the hub is unreachable.
        Err(e) => {
            return resolve_offline(repo_id, cache).map_err(|_| {
                failed(
                    "cannot list the repo's files (and it is not fully cached)",
                    e,
                )
            })
        }
    };
    let listed: Vec<&str> = info.siblings.iter().map(|s| s.rfilename.as_str()).collect();
    let config = repo
        .get("config.json")
        .map_err(|e| failed("config.json", e))?;
    for file in &REQUIRED[1..] {
        repo.get(file).map_err(|e| failed(file, e))?;
    }
    for file in OPTIONAL.iter().filter(|f| listed.contains(f)) {
        repo.get(file).map_err(|e| failed(file, e))?;
    }
    if listed.contains(&INDEX_FILE) {
        let index = repo.get(INDEX_FILE).map_err(|e| failed(INDEX_FILE, e))?;
        for shard in crate::weights::read_index(&index)? {
            repo.get(&shard).map_err(|e| failed(&shard, e))?;
        }
    } else if listed.contains(&SINGLE_FILE) {
        repo.get(SINGLE_FILE).map_err(|e| failed(SINGLE_FILE, e))?;
    } else if listed
        .iter()
        .any(|f| f.starts_with("pytorch_model") && f.ends_with(".bin"))
    {
        return Err(Error::Download {
            repo: repo_id.to_string(),
            reason: "the repo has only PyTorch pickle weights (.bin); this engine loads safetensors only. Convert them with transformers' save_pretrained(..., safe_serialization=True)".into(),
        });
    } else {
        return Err(Error::Download {
            repo: repo_id.to_string(),
            reason: format!("the repo has neither {SINGLE_FILE} nor {INDEX_FILE}"),
        });
    }
    Ok(config.parent().map(Path::to_path_buf).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds `models--org--name/{refs/main, snapshots/<rev>/...}` as huggingface_hub does.
    fn fake_cache(root: &Path, files: &[&str]) -> PathBuf {
        let repo = root.join("models--org--tiny");
        let rev = "0123456789abcdef0123456789abcdef01234567";
        std::fs::create_dir_all(repo.join("refs")).unwrap();
        std::fs::write(repo.join("refs/main"), rev).unwrap();
        let snap = repo.join("snapshots").join(rev);
        std::fs::create_dir_all(&snap).unwrap();
        for f in files {
            let body = if *f == INDEX_FILE {
                r#"{"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}"#
            } else {
                "{}"
            };
            std::fs::write(snap.join(f), body).unwrap();
        }
        snap
    }

    #[test]
    fn offline_finds_a_fully_cached_single_file_repo() {
        let tmp = tempfile::tempdir().unwrap();
        let snap = fake_cache(tmp.path(), &["config.json", "tokenizer.json", SINGLE_FILE]);
        assert_eq!(resolve_offline("org/tiny", tmp.path()).unwrap(), snap);
    }

    #[test]
    fn offline_finds_a_sharded_repo_and_misses_a_shard() {
        let tmp = tempfile::tempdir().unwrap();
        let mut files = vec![
            "config.json",
            "tokenizer.json",
            INDEX_FILE,
            "model-00001-of-00002.safetensors",
        ];
        fake_cache(tmp.path(), &files);
        let err = resolve_offline("org/tiny", tmp.path()).unwrap_err();
        assert!(
            matches!(&err, Error::Download { reason, .. } if reason.contains("offline") && reason.contains("model-00002-of-00002.safetensors")),
            "{err}"
        );
        files.push("model-00002-of-00002.safetensors");
        let snap = fake_cache(tmp.path(), &files);
        assert_eq!(resolve_offline("org/tiny", tmp.path()).unwrap(), snap);
    }

    #[test]
    fn offline_reports_an_uncached_repo() {
        let tmp = tempfile::tempdir().unwrap();
        let err = resolve_offline("org/absent", tmp.path()).unwrap_err();
        match err {
            Error::Download { repo, reason } => {
                assert_eq!(repo, "org/absent");
                assert!(
                    reason.contains("offline") && reason.contains("not cached"),
                    "{reason}"
                );
            }
            other => panic!("expected Error::Download, got {other}"),
        }
        fake_cache(tmp.path(), &["config.json", "tokenizer.json"]);
        let err = resolve_offline("org/tiny", tmp.path()).unwrap_err();
        assert!(
            matches!(&err, Error::Download { reason, .. } if reason.contains(SINGLE_FILE)),
            "{err}"
        );
    }

    #[test]
    fn an_unreachable_hub_falls_back_to_a_complete_cache() {
        let tmp = tempfile::tempdir().unwrap();
        // Port 9 (discard) on loopback: refused at once, no traffic leaves the machine.
        let dead = Some("http://127.0.0.1:9");
        let err = resolve_online("org/tiny", tmp.path(), dead).unwrap_err();
        assert!(
            matches!(&err, Error::Download { reason, .. } if reason.contains("not fully cached")),
            "{err}"
        );
        let snap = fake_cache(tmp.path(), &["config.json", "tokenizer.json", SINGLE_FILE]);
        assert_eq!(resolve_online("org/tiny", tmp.path(), dead).unwrap(), snap);
    }

    #[test]
    fn a_local_directory_is_used_as_is() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_str().unwrap();
        assert_eq!(resolve(dir).unwrap(), tmp.path());
    }
}
