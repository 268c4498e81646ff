//! The `--jsonl` log: one JSON object per line, appended as each video finishes, read back on the
//! next run so videos already analyzed are skipped.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::failure::Failure;

/// An open log.
pub struct JsonlLog {
    path: PathBuf,
    file: File,
    done: HashSet<PathBuf>,
}

impl JsonlLog {
    /// Opens (creating) the log at `path` and reads which videos it records as analyzed: lines
    /// with a `path` and no `error`. Unparseable lines (a line cut short by a crash) are ignored.
    pub fn open(path: &Path) -> Result<Self, Failure> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| Failure::io(parent, &e))?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(|e| Failure::io(path, &e))?;
        let mut text = String::new();
        file.read_to_string(&mut text)
            .map_err(|e| Failure::io(path, &e))?;
        let mut done = HashSet::new();
        for line in text.lines() {
            let Ok(value) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            if value.get("error").is_some() {
                continue;
            }
            if let Some(recorded) = value.get("path").and_then(|p| p.as_str()) {
                done.insert(identity(Path::new(recorded)));
            }
        }
        // A crash mid-line leaves no trailing newline: start the next record on a line of its own.
        if !text.is_empty() && !text.ends_with('\n') {
            file.seek(SeekFrom::End(0))
                .map_err(|e| Failure::io(path, &e))?;
            file.write_all(b"\n").map_err(|e| Failure::io(path, &e))?;
        }
        Ok(Self {
            path: path.to_path_buf(),
            file,
            done,
        })
    }

    /// Whether `video` was analyzed successfully in an earlier run.
    pub fn is_done(&self, video: &Path) -> bool {
        self.done.contains(&identity(video))
    }

    /// Appends `record` as one line and flushes it, so a crash loses at most the video in flight.
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

/// The same video named two ways (relative, absolute, through a symlink) compares equal.
fn identity(path: &Path) -> PathBuf {
    path.canonicalize().unwrap_or_else(|_| path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn successes_are_done_errors_and_torn_lines_are_not() {
        let tmp = tempfile::tempdir().unwrap();
        let a = tmp.path().join("a.mp4");
        let b = tmp.path().join("b.mp4");
        std::fs::write(&a, b"x").unwrap();
        std::fs::write(&b, b"x").unwrap();
        let log_path = tmp.path().join("log.jsonl");
        let torn = format!(
            "{{\"path\":{:?},\"answer\":\"ok\"}}\n{{\"path\":{:?},\"error\":\"bad\"}}\n{{\"path\":\"c.mp",
            a.display().to_string(),
            b.display().to_string()
        );
        std::fs::write(&log_path, torn).unwrap();
        let mut log = JsonlLog::open(&log_path).unwrap();
        assert!(log.is_done(&a));
        assert!(!log.is_done(&b));
        log.append(&serde_json::json!({"path": b.display().to_string()}))
            .unwrap();
        let text = std::fs::read_to_string(&log_path).unwrap();
        let last = text.lines().last().unwrap();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(last).unwrap()["path"],
            b.display().to_string()
        );
        assert!(JsonlLog::open(&log_path).unwrap().is_done(&b));
    }
}
