use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where a video comes from: a file, or bytes already in memory (an upload). Both are seekable.
#[derive(Clone, Debug)]
pub enum Source {
    /// A file on disk.
    Path(PathBuf),
    /// A whole file held in memory; cloning shares the buffer.
    Bytes(Arc<[u8]>),
}

impl Source {
    /// A short human-readable name for error messages: the path, or `<N bytes in memory>`.
    pub fn describe(&self) -> String {
        match self {
            Source::Path(p) => p.display().to_string(),
            Source::Bytes(b) => format!("<{} bytes in memory>", b.len()),
        }
    }
}

impl From<&str> for Source {
    fn from(p: &str) -> Self {
        Source::Path(PathBuf::from(p))
    }
}
impl From<String> for Source {
    fn from(p: String) -> Self {
        Source::Path(PathBuf::from(p))
    }
}
impl From<&Path> for Source {
    fn from(p: &Path) -> Self {
        Source::Path(p.to_path_buf())
    }
}
impl From<PathBuf> for Source {
    fn from(p: PathBuf) -> Self {
        Source::Path(p)
    }
}
impl From<Vec<u8>> for Source {
    fn from(b: Vec<u8>) -> Self {
        Source::Bytes(b.into())
    }
}
impl From<Arc<[u8]>> for Source {
    fn from(b: Arc<[u8]>) -> Self {
        Source::Bytes(b)
    }
}
