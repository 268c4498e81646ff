use std::io::{self, Read, Seek, SeekFrom};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Where a video comes from: a file, bytes already in memory (an upload), or any seekable reader.
#[derive(Clone, Debug)]
pub enum Source {
    /// A file on disk.
    Path(PathBuf),
    /// A whole file held in memory; cloning shares the buffer.
    Bytes(Arc<[u8]>),
    /// A seekable reader (a network stream with range requests, an archive member, ...);
    /// cloning shares it. See [`Source::reader`].
    Reader(SharedReader),
}

/// What a [`Source::Reader`] holds.
pub trait ReadSeek: Read + Seek + Send {}
impl<T: Read + Seek + Send> ReadSeek for T {}

/// A seekable reader shared by every demuxer opened on it: each reads through its own cursor
/// (it seeks the reader to its own position before each read), so two demuxers of one
/// [`crate::Video`] never see each other's position. A panic in the reader is an I/O error.
#[derive(Clone)]
pub struct SharedReader(Arc<Mutex<Box<dyn ReadSeek>>>);

impl std::fmt::Debug for SharedReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedReader")
    }
}

impl SharedReader {
    /// A new cursor at position 0.
    pub(crate) fn cursor(&self) -> ReaderCursor {
        ReaderCursor {
            reader: self.clone(),
            position: 0,
        }
    }

    /// The reader's length (it seeks to the end; every read seeks to its own position first).
    pub(crate) fn len(&self) -> io::Result<u64> {
        self.with(|r| r.seek(SeekFrom::End(0)))
    }

    fn with<T>(&self, f: impl FnOnce(&mut dyn ReadSeek) -> io::Result<T>) -> io::Result<T> {
        let mut guard = self
            .0
            .lock()
            .map_err(|_| io::Error::other("the reader panicked in an earlier call"))?;
        let inner: &mut dyn ReadSeek = &mut **guard;
        catch_unwind(AssertUnwindSafe(|| f(inner)))
            .unwrap_or_else(|_| Err(io::Error::other("the reader panicked")))
    }
}

/// One demuxer's position in a [`SharedReader`].
pub(crate) struct ReaderCursor {
    reader: SharedReader,
    position: u64,
}

impl Read for ReaderCursor {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let position = self.position;
        let n = self.reader.with(|r| {
            r.seek(SeekFrom::Start(position))?;
            r.read(buf)
        })?;
        self.position += n as u64;
        Ok(n)
    }
}

impl Seek for ReaderCursor {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        self.position = match to {
            SeekFrom::Start(p) => p,
            SeekFrom::Current(d) => self
                .position
                .checked_add_signed(d)
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before 0"))?,
            SeekFrom::End(_) => self.reader.with(|r| r.seek(to))?,
        };
        Ok(self.position)
    }
}

impl Source {
    /// A short human-readable name for error messages: the path, or `<N bytes in memory>`.
    pub fn describe(&self) -> String {
        match self {
            Source::Path(p) => p.display().to_string(),
            Source::Bytes(b) => format!("<{} bytes in memory>", b.len()),
            Source::Reader(_) => "<reader>".into(),
        }
    }

    /// A source reading from `reader` (it must be able to seek: containers keep their index at
    /// the end, and exact sampling seeks).
    pub fn reader(reader: impl Read + Seek + Send + 'static) -> Self {
        Source::Reader(SharedReader(Arc::new(Mutex::new(Box::new(reader)))))
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
