//! Uploads and analyses in one SQLite file (`DATA_DIR/video-llava.sqlite3`, WAL), the videos and
//! their images in `DATA_DIR/videos/<id>/`.
//!
//! An analysis is written `queued`, then `running`, then `done` with its whole answer or
//! `failed` with its error, each in one statement: a reader never sees a half answer as done.
//! Analyses a stopped server left `queued` or `running` are marked `failed` when it starts again.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use serde_json::Value;

use crate::failure::Failure;

/// The database file's name under the data dir.
pub const DB_FILE: &str = "video-llava.sqlite3";

/// The database.
pub struct Store {
    conn: Mutex<Connection>,
    dir: PathBuf,
}

/// One uploaded video.
#[derive(Debug, Clone, Serialize)]
pub struct VideoRow {
    /// `vid_...`.
    pub id: String,
    /// The name it was uploaded under.
    pub filename: String,
    /// Its size.
    pub bytes: u64,
    /// Unix seconds.
    pub created_at: i64,
    /// The probe's facts (`video-llava probe --json`'s fields).
    pub info: Value,
}

/// One analysis.
#[derive(Debug, Clone, Serialize)]
pub struct AnalysisRow {
    /// `ana_...`.
    pub id: String,
    /// The video.
    pub video_id: String,
    /// The question.
    pub question: String,
    /// `queued`, `running`, `done` or `failed`.
    pub state: String,
    /// The answer, once done.
    pub answer: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
    /// Prompt tokens (placeholders expanded).
    pub prompt_tokens: Option<u64>,
    /// Tokens generated.
    pub completion_tokens: Option<u64>,
    /// `stop`, `length`.
    pub finish_reason: Option<String>,
    /// Seconds per stage.
    pub timings: Option<Value>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds, once done or failed.
    pub finished_at: Option<i64>,
}

/// A finished analysis.
pub struct Finished<'a> {
    /// The answer.
    pub answer: &'a str,
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Tokens generated.
    pub completion_tokens: u64,
    /// `stop` or `length`.
    pub finish_reason: &'a str,
    /// Seconds per stage.
    pub timings: Value,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS videos (
    id TEXT PRIMARY KEY,
    filename TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    info TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS analyses (
    id TEXT PRIMARY KEY,
    video_id TEXT NOT NULL REFERENCES videos(id) ON DELETE CASCADE,
    question TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed')),
    answer TEXT,
    error TEXT,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    finish_reason TEXT,
    timings TEXT,
    created_at INTEGER NOT NULL,
    finished_at INTEGER
);
CREATE INDEX IF NOT EXISTS analyses_by_video ON analyses(video_id, created_at);
";

type DbResult<T> = rusqlite::Result<T>;

impl Store {
    /// Opens (or creates) the database under `dir`.
    pub fn open(dir: &Path) -> Result<Self, Failure> {
        let path = dir.join(DB_FILE);
        let fail =
            |e: rusqlite::Error| Failure::internal(path.display().to_string(), e.to_string());
        let conn = Connection::open(&path).map_err(fail)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(fail)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(fail)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(fail)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(fail)?;
        conn.execute_batch(SCHEMA).map_err(fail)?;
        let videos = dir.join("videos");
        std::fs::create_dir_all(&videos).map_err(|e| Failure::io(dir, &e))?;
        // Partial uploads a stopped server left behind.
        if let Ok(entries) = std::fs::read_dir(&videos) {
            for entry in entries.flatten() {
                if entry.file_name().to_string_lossy().starts_with(".upload-") {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        Ok(Self {
            conn: Mutex::new(conn),
            dir: dir.to_path_buf(),
        })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The folder of a video's files.
    pub fn video_dir(&self, id: &str) -> PathBuf {
        self.dir.join("videos").join(id)
    }

    /// Marks what a stopped server left unfinished as failed; returns how many.
    pub fn fail_unfinished(&self) -> DbResult<usize> {
        self.conn().execute(
            "UPDATE analyses SET state = 'failed', error = 'interrupted: the server stopped before it finished', \
             finished_at = strftime('%s', 'now') WHERE state IN ('queued', 'running')",
            [],
        )
    }

    /// Records an upload.
    pub fn insert_video(&self, v: &VideoRow) -> DbResult<()> {
        self.conn().execute(
            "INSERT INTO videos (id, filename, bytes, created_at, info) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![v.id, v.filename, v.bytes as i64, v.created_at, v.info.to_string()],
        )?;
        Ok(())
    }

    fn video_from(row: &rusqlite::Row<'_>) -> DbResult<VideoRow> {
        let info: String = row.get(4)?;
        Ok(VideoRow {
            id: row.get(0)?,
            filename: row.get(1)?,
            bytes: row.get::<_, i64>(2)? as u64,
            created_at: row.get(3)?,
            info: serde_json::from_str(&info).unwrap_or(Value::Null),
        })
    }

    /// Every upload, newest first.
    pub fn videos(&self) -> DbResult<Vec<VideoRow>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id, filename, bytes, created_at, info FROM videos ORDER BY created_at DESC, rowid DESC",
        )?;
        let rows = stmt.query_map([], Self::video_from)?;
        rows.collect()
    }

    /// One upload.
    pub fn video(&self, id: &str) -> DbResult<Option<VideoRow>> {
        self.conn()
            .query_row(
                "SELECT id, filename, bytes, created_at, info FROM videos WHERE id = ?1",
                [id],
                Self::video_from,
            )
            .optional()
    }

    /// Deletes an upload and its analyses; whether it existed.
    pub fn delete_video(&self, id: &str) -> DbResult<bool> {
        Ok(self
            .conn()
            .execute("DELETE FROM videos WHERE id = ?1", [id])?
            > 0)
    }

    /// Records a queued analysis.
    pub fn insert_analysis(&self, a: &AnalysisRow) -> DbResult<()> {
        self.conn().execute(
            "INSERT INTO analyses (id, video_id, question, state, created_at) VALUES (?1, ?2, ?3, 'queued', ?4)",
            params![a.id, a.video_id, a.question, a.created_at],
        )?;
        Ok(())
    }

    /// `queued` -> `running`.
    pub fn analysis_running(&self, id: &str) -> DbResult<()> {
        self.conn().execute(
            "UPDATE analyses SET state = 'running' WHERE id = ?1 AND state = 'queued'",
            [id],
        )?;
        Ok(())
    }

    /// The whole answer, in one statement.
    pub fn analysis_done(&self, id: &str, f: &Finished<'_>) -> DbResult<()> {
        self.conn().execute(
            "UPDATE analyses SET state = 'done', answer = ?2, prompt_tokens = ?3, completion_tokens = ?4, \
             finish_reason = ?5, timings = ?6, error = NULL, finished_at = strftime('%s', 'now') WHERE id = ?1",
            params![
                id,
                f.answer,
                f.prompt_tokens as i64,
                f.completion_tokens as i64,
                f.finish_reason,
                f.timings.to_string()
            ],
        )?;
        Ok(())
    }

    /// Failed, with why.
    pub fn analysis_failed(&self, id: &str, error: &str) -> DbResult<()> {
        self.conn().execute(
            "UPDATE analyses SET state = 'failed', error = ?2, finished_at = strftime('%s', 'now') WHERE id = ?1",
            params![id, error],
        )?;
        Ok(())
    }

    fn analysis_from(row: &rusqlite::Row<'_>) -> DbResult<AnalysisRow> {
        let timings: Option<String> = row.get(9)?;
        Ok(AnalysisRow {
            id: row.get(0)?,
            video_id: row.get(1)?,
            question: row.get(2)?,
            state: row.get(3)?,
            answer: row.get(4)?,
            error: row.get(5)?,
            prompt_tokens: row.get::<_, Option<i64>>(6)?.map(|v| v as u64),
            completion_tokens: row.get::<_, Option<i64>>(7)?.map(|v| v as u64),
            finish_reason: row.get(8)?,
            timings: timings.and_then(|t| serde_json::from_str(&t).ok()),
            created_at: row.get(10)?,
            finished_at: row.get(11)?,
        })
    }

    const ANALYSIS_COLUMNS: &'static str =
        "id, video_id, question, state, answer, error, prompt_tokens, \
         completion_tokens, finish_reason, timings, created_at, finished_at";

    /// A video's analyses, oldest first.
    pub fn analyses(&self, video_id: &str) -> DbResult<Vec<AnalysisRow>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {} FROM analyses WHERE video_id = ?1 ORDER BY created_at, rowid",
            Self::ANALYSIS_COLUMNS
        ))?;
        let rows = stmt.query_map([video_id], Self::analysis_from)?;
        rows.collect()
    }

    /// One analysis of one video.
    pub fn analysis(&self, video_id: &str, id: &str) -> DbResult<Option<AnalysisRow>> {
        self.conn()
            .query_row(
                &format!(
                    "SELECT {} FROM analyses WHERE video_id = ?1 AND id = ?2",
                    Self::ANALYSIS_COLUMNS
                ),
                [video_id, id],
                Self::analysis_from,
            )
            .optional()
    }
}
