//! The `--jsonl` log: one JSON object per line, appended as each video finishes, read back on the
//! next run so videos already answered are skipped.
//!
//! A record answers one video for one run key (question, model, frame count): a rerun with
//! another question or model analyzes every video again, and a run asking several questions
//! answers, for each video, the ones not yet recorded. A video that failed as bad input is
//! skipped while the file is unchanged (same size and modification time) and retried once it
//! changes; an internal failure is retried. Records a rerun replaces (the failures it retries,
//! duplicates) are dropped from the file when it is opened, by writing the kept lines to a new
//! file and renaming it over the log, so a key never has two records.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::failure::Failure;

/// What makes two records answers to the same request about a video.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RunKey {
    /// The question asked.
    pub question: String,
    /// The model as given to `--model`.
    pub model: String,
    /// Frames shown to the model.
    pub frames: u64,
}

/// A file's size and modification time (nanoseconds since the epoch), to tell whether it
/// changed since a failure was recorded.
pub fn file_stamp(path: &Path) -> Option<(u64, u128)> {
    let meta = std::fs::metadata(path).ok()?;
    let mtime = meta
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_nanos();
    Some((meta.len(), mtime))
}

/// What the log says of one video under this run's key.
#[derive(Clone, Debug, PartialEq)]
enum Recorded {
    Answered,
    /// Bad input, when the file had this stamp.
    BadInput(Option<(u64, u128)>),
}

/// An open log.
pub struct JsonlLog {
    path: PathBuf,
    file: File,
    recorded: HashMap<(PathBuf, RunKey), Recorded>,
}

/// The run key a record was written under; `None` for records of other shapes.
fn record_key(value: &serde_json::Value) -> Option<RunKey> {
    let frames = value
        .get("frames")
        .and_then(|f| f.as_u64())
        .or_else(|| Some(value.get("frame_indices")?.as_array()?.len() as u64))?;
    Some(RunKey {
        question: value.get("question")?.as_str()?.to_string(),
        model: value.get("model")?.as_str()?.to_string(),
        frames,
    })
}

impl JsonlLog {
    /// Opens (creating) the log at `path` and reads what it records for `keys` (this run's
    /// questions). Unparseable lines are kept as they are, except a last line cut short by a
    /// crash, which is dropped.
    pub fn open(path: &Path, keys: &[RunKey]) -> Result<Self, Failure> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| Failure::io(parent, &e))?;
        }
        let mut text = String::new();
        match File::open(path) {
            Ok(mut f) => {
                f.read_to_string(&mut text)
                    .map_err(|e| Failure::io(path, &e))?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Failure::io(path, &e)),
        }
        let torn = !text.is_empty() && !text.ends_with('\n');
        let mut lines: Vec<&str> = text.lines().collect();
        if torn {
            lines.pop();
        }
        // The last word on each video under each key, and the line that said it.
        let mut recorded: HashMap<(PathBuf, RunKey), (usize, Recorded)> = HashMap::new();
        let mut superseded = vec![false; lines.len()];
        for (i, line) in lines.iter().enumerate() {
            let Ok(value) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            let Some(video) = value.get("path").and_then(|p| p.as_str()) else {
                continue;
            };
            let Some(key) = record_key(&value).filter(|k| keys.contains(k)) else {
                continue;
            };
            let video = (identity(Path::new(video)), key);
            let said = match value.get("error") {
                None => Some(Recorded::Answered),
                Some(_) if value.get("error_kind").and_then(|k| k.as_str()) == Some("input") => {
                    let stamp = value
                        .get("size")
                        .and_then(|s| s.as_u64())
                        .zip(value.get("mtime_ns").and_then(|m| m.as_str()?.parse().ok()));
                    Some(Recorded::BadInput(stamp))
                }
                // An internal failure is retried: its line goes.
                Some(_) => None,
            };
            match (recorded.get(&video), said) {
                // An answer stands; later lines for the same key are duplicates.
                (Some((_, Recorded::Answered)), _) => superseded[i] = true,
                (_, None) => superseded[i] = true,
                (previous, Some(said)) => {
                    if let Some((j, _)) = previous {
                        superseded[*j] = true;
                    }
                    recorded.insert(video, (i, said));
                }
            }
        }
        // A bad-input record of a file that changed since goes too: the file is retried. (One
        // whose file is gone stays: there is nothing to retry.)
        for ((video, _), (i, said)) in &recorded {
            if let Recorded::BadInput(stamp) = said {
                let now = file_stamp(video);
                if stamp.is_none() || (now.is_some() && *stamp != now) {
                    superseded[*i] = true;
                }
            }
        }
        let recorded: HashMap<(PathBuf, RunKey), Recorded> = recorded
            .into_iter()
            .filter(|(_, (i, _))| !superseded[*i])
            .map(|(v, (_, r))| (v, r))
            .collect();
        if torn || superseded.iter().any(|&s| s) {
            let kept: String = lines
                .iter()
                .zip(&superseded)
                .filter(|(_, &s)| !s)
                .map(|(l, _)| format!("{l}\n"))
                .collect();
            rewrite(path, kept.as_bytes())?;
        }
        let mut file = OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .map_err(|e| Failure::io(path, &e))?;
        file.seek(SeekFrom::End(0))
            .map_err(|e| Failure::io(path, &e))?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
            recorded,
        })
    }

    /// Whether `video` needs no work under `key`: answered, or bad input and unchanged since.
    pub fn is_done(&self, video: &Path, key: &RunKey) -> bool {
        self.recorded.contains_key(&(identity(video), key.clone()))
    }

    /// Appends `record` as one line and flushes it, so a crash loses at most the answer in flight.
    pub fn append<T: Serialize>(&mut self, record: &T) -> Result<(), Failure> {
        let mut line = serde_json::to_string(record)
            .map_err(|e| Failure::internal(self.path.display().to_string(), e.to_string()))?;
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .and_then(|()| self.file.flush())
            .map_err(|e| Failure::io(&self.path, &e))
    }
}

/// Replaces `path`'s contents with `bytes` atomically: a crash leaves the old log or the new.
fn rewrite(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    let tmp = path.with_extension("jsonl.partial");
    let mut f = File::create(&tmp).map_err(|e| Failure::io(&tmp, &e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| Failure::io(&tmp, &e))?;
    std::fs::rename(&tmp, path).map_err(|e| Failure::io(path, &e))
}

/// The same video named two ways (relative, absolute, through a symlink) compares equal.
fn identity(path: &Path) -> PathBuf {
    path.canonicalize().unwrap_or_else(|_| path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(question: &str) -> RunKey {
        RunKey {
            question: question.into(),
            model: "m".into(),
            frames: 8,
        }
    }

    fn answer(video: &Path, question: &str) -> String {
        serde_json::json!({"path": video.display().to_string(), "question": question,
            "model": "m", "frame_indices": [0, 1, 2, 3, 4, 5, 6, 7], "answer": "ok"})
        .to_string()
    }

    fn failure(video: &Path, kind: &str, stamp: Option<(u64, u128)>) -> String {
        let mut v = serde_json::json!({"path": video.display().to_string(), "question": "q",
            "model": "m", "frames": 8, "error": "bad", "error_kind": kind});
        if let Some((size, mtime)) = stamp {
            v["size"] = size.into();
            v["mtime_ns"] = mtime.to_string().into();
        }
        v.to_string()
    }

    #[test]
    fn records_answer_one_key_and_failures_are_kept_once() {
        let tmp = tempfile::tempdir().unwrap();
        let [a, b, c, d] = ["a", "b", "c", "d"].map(|n| tmp.path().join(format!("{n}.mp4")));
        for v in [&a, &b, &c, &d] {
            std::fs::write(v, b"x").unwrap();
        }
        let log_path = tmp.path().join("log.jsonl");
        let lines = [
            answer(&a, "q"),
            answer(&a, "q"),                         // a duplicate: dropped
            answer(&b, "another question"),          // another key: kept, not done
            failure(&c, "input", file_stamp(&c)),    // bad input, unchanged: done
            failure(&d, "internal", file_stamp(&d)), // internal: retried, dropped
            "not json at all".into(),                // kept as it is
        ];
        let text = format!("{}\n{{\"path\":\"e.mp", lines.join("\n"));
        std::fs::write(&log_path, text).unwrap();
        let mut log = JsonlLog::open(&log_path, &[key("q")]).unwrap();
        assert!(log.is_done(&a, &key("q")));
        assert!(!log.is_done(&b, &key("q")));
        assert!(log.is_done(&c, &key("q")));
        assert!(!log.is_done(&d, &key("q")));
        let kept = std::fs::read_to_string(&log_path).unwrap();
        let expect = [&lines[0], &lines[2], &lines[3], &lines[5]];
        assert_eq!(kept.lines().collect::<Vec<_>>(), expect, "{kept}");
        log.append(&serde_json::json!({"path": d.display().to_string()}))
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(&log_path).unwrap().lines().count(),
            5
        );

        // c changes: its bad-input record goes and it is retried; nothing else changes.
        std::fs::write(&c, b"a longer file").unwrap();
        let log = JsonlLog::open(&log_path, &[key("q")]).unwrap();
        assert!(!log.is_done(&c, &key("q")));
        let kept = std::fs::read_to_string(&log_path).unwrap();
        assert!(!kept.contains("c.mp4"), "{kept}");
        // Under the other question, only b is answered.
        let other = JsonlLog::open(&log_path, &[key("another question")]).unwrap();
        assert!(
            other.is_done(&b, &key("another question"))
                && !other.is_done(&a, &key("another question"))
        );
    }

    #[test]
    fn several_questions_are_recorded_and_resumed_one_by_one() {
        let tmp = tempfile::tempdir().unwrap();
        let [a, b] = ["a", "b"].map(|n| tmp.path().join(format!("{n}.mp4")));
        let log_path = tmp.path().join("log.jsonl");
        let lines = [
            answer(&a, "q"),
            answer(&a, "r"),
            answer(&b, "r"),
            answer(&b, "s"),
        ];
        std::fs::write(&log_path, format!("{}\n", lines.join("\n"))).unwrap();
        let keys = [key("q"), key("r")];
        let log = JsonlLog::open(&log_path, &keys).unwrap();
        assert!(log.is_done(&a, &keys[0]) && log.is_done(&a, &keys[1]));
        assert!(!log.is_done(&b, &keys[0]) && log.is_done(&b, &keys[1]));
        assert!(!log.is_done(&b, &key("s")), "not one of this run's keys");
        // Nothing was superseded: every line stays.
        let kept = std::fs::read_to_string(&log_path).unwrap();
        assert_eq!(kept.lines().count(), 4, "{kept}");
    }
}
