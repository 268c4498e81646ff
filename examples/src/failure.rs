//! What the command reports when it fails: one line naming the file and the cause, and the exit
//! status that tells bad input (2) from everything else (1).

use std::fmt;
use std::process::ExitCode;

/// Whether a failure is the caller's input or something else.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// Bad input: a missing or unreadable video, an invalid model directory, a bad option (exit 2).
    Input,
    /// Anything else: a download, the model's computation, writing outputs (exit 1).
    Internal,
}

impl FailureKind {
    /// `Input` when the core says the caller's input caused the error.
    pub fn of(is_input: bool) -> Self {
        if is_input {
            FailureKind::Input
        } else {
            FailureKind::Internal
        }
    }

    /// The process exit status for this kind.
    pub fn exit_code(self) -> u8 {
        match self {
            FailureKind::Input => 2,
            FailureKind::Internal => 1,
        }
    }

    /// `"input"` or `"internal"`, as the JSON records name it.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Input => "input",
            FailureKind::Internal => "internal",
        }
    }
}

/// A failure about one subject (a file, a directory, a model).
#[derive(Clone, Debug)]
pub struct Failure {
    /// What failed: a path or a model name.
    pub subject: String,
    /// Why, without the subject.
    pub cause: String,
    /// Input or internal.
    pub kind: FailureKind,
}

impl Failure {
    /// A failure; a cause that already starts with `subject: ` is not repeated.
    pub fn new(kind: FailureKind, subject: impl Into<String>, cause: impl Into<String>) -> Self {
        let subject = subject.into();
        let cause = cause.into();
        let cause = match cause.strip_prefix(&format!("{subject}: ")) {
            Some(rest) => rest.to_string(),
            None => cause,
        };
        Self {
            subject,
            cause,
            kind,
        }
    }

    /// Bad input about `subject`.
    pub fn input(subject: impl Into<String>, cause: impl Into<String>) -> Self {
        Self::new(FailureKind::Input, subject, cause)
    }

    /// Any other failure about `subject`.
    pub fn internal(subject: impl Into<String>, cause: impl Into<String>) -> Self {
        Self::new(FailureKind::Internal, subject, cause)
    }

    /// A frame-sampler error while working on `subject`.
    pub fn from_video(subject: impl Into<String>, err: &frame_sampler::Error) -> Self {
        Self::new(FailureKind::of(err.is_input()), subject, err.to_string())
    }

    /// A model or pipeline error while working on `subject`; the core classifies it.
    pub fn from_model(subject: impl Into<String>, err: &video_llava::Error) -> Self {
        Self::new(FailureKind::of(err.is_input()), subject, err.to_string())
    }

    /// An I/O error on `path`.
    pub fn io(path: &std::path::Path, err: &std::io::Error) -> Self {
        let kind = match err.kind() {
            std::io::ErrorKind::NotFound => FailureKind::Input,
            _ => FailureKind::Internal,
        };
        Self::new(kind, path.display().to_string(), err.to_string())
    }

    /// The process exit status.
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.kind.exit_code())
    }
}

impl fmt::Display for Failure {
    /// `<subject>: <cause>` on one line (the caller adds `error: `).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cause = self.cause.replace('\n', " ");
        write!(f, "{}: {}", self.subject, cause.trim())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_naming_the_subject_is_not_repeated() {
        let f = Failure::input("a.mp4", "a.mp4: file not found");
        assert_eq!(f.to_string(), "a.mp4: file not found");
        let f = Failure::internal("model", "download failed\nretry later");
        assert_eq!(f.to_string(), "model: download failed retry later");
    }

    #[test]
    fn kinds_map_to_exit_statuses() {
        let missing = frame_sampler::Error::NotFound {
            source_name: "x.mp4".into(),
        };
        assert_eq!(
            Failure::from_video("x.mp4", &missing).kind,
            FailureKind::Input
        );
        let download = video_llava::Error::Download {
            repo: "a/b".into(),
            reason: "offline".into(),
        };
        assert_eq!(
            Failure::from_model("a/b", &download).kind,
            FailureKind::Internal
        );
        let dir = video_llava::Error::MissingFile {
            dir: "m".into(),
            what: "config.json".into(),
        };
        assert_eq!(Failure::from_model("m", &dir).kind.exit_code(), 2);
    }
}
