//! Turning the PATH arguments of `analyze` into a list of videos: files as given, folders searched
//! recursively for video files, glob patterns expanded.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::failure::Failure;

/// File extensions (lowercase) taken as video when searching folders.
pub const VIDEO_EXTENSIONS: &[&str] = &[
    "mp4", "m4v", "mov", "qt", "mkv", "webm", "avi", "ts", "mts", "m2ts", "mpg", "mpeg", "flv",
    "wmv", "asf", "3gp", "3g2", "ogv", "mxf", "vob", "y4m", "dv", "hevc", "h264", "264", "265",
];

/// Whether `path` has a video file extension.
pub fn is_video_file(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .map(|e| VIDEO_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
        .unwrap_or(false)
}

/// Expands `args` in order, each video once. A named file is taken whatever its extension (and
/// even when missing: the analysis reports it); folders contribute their video files, sorted;
/// a glob pattern that matches nothing, or an unreadable folder, is an input error.
pub fn expand(args: &[String]) -> Result<Vec<PathBuf>, Failure> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let mut push = |path: PathBuf, out: &mut Vec<PathBuf>| {
        let key = path.canonicalize().unwrap_or_else(|_| path.clone());
        if seen.insert(key) {
            out.push(path);
        }
    };
    for arg in args {
        let path = PathBuf::from(arg);
        if path.is_dir() {
            for file in walk(&path)? {
                push(file, &mut out);
            }
        } else if path.exists() || !is_glob(arg) {
            push(path, &mut out);
        } else {
            let pattern = glob::glob(arg)
                .map_err(|e| Failure::input(arg, format!("bad glob pattern: {e}")))?;
            let mut matched = false;
            for entry in pattern {
                let found = entry.map_err(|e| Failure::io(e.path(), e.error()))?;
                matched = true;
                if found.is_dir() {
                    for file in walk(&found)? {
                        push(file, &mut out);
                    }
                } else {
                    push(found, &mut out);
                }
            }
            if !matched {
                return Err(Failure::input(arg, "no file matches this pattern"));
            }
        }
    }
    Ok(out)
}

fn is_glob(arg: &str) -> bool {
    arg.contains(['*', '?', '['])
}

/// Video files under `dir`, depth first, sorted by path. Symlinked folders are searched, each
/// real folder once: a link back up the tree (a cycle) is not followed again.
fn walk(dir: &Path) -> Result<Vec<PathBuf>, Failure> {
    let mut files = Vec::new();
    let mut visited = std::collections::HashSet::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let real = std::fs::canonicalize(&dir).map_err(|e| Failure::io(&dir, &e))?;
        if !visited.insert(real) {
            continue;
        }
        let entries = std::fs::read_dir(&dir).map_err(|e| Failure::io(&dir, &e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Failure::io(&dir, &e))?;
            let path = entry.path();
            // Follows symlinks, as users expect a linked folder of uploads to be searched.
            if path.is_dir() {
                pending.push(path);
            } else if is_video_file(&path) {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_yield_video_files_recursively_and_sorted() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::create_dir_all(root.join("b/c")).unwrap();
        for f in [
            "z.mp4",
            "notes.txt",
            "b/a.MKV",
            "b/c/x.webm",
            "b/c/cover.jpg",
        ] {
            std::fs::write(root.join(f), b"x").unwrap();
        }
        let got = expand(&[root.display().to_string()]).unwrap();
        let want: Vec<PathBuf> = ["b/a.MKV", "b/c/x.webm", "z.mp4"]
            .iter()
            .map(|f| root.join(f))
            .collect();
        assert_eq!(got, want);
    }

    #[cfg(unix)]
    #[test]
    fn a_symlink_cycle_is_walked_once() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("uploads");
        std::fs::create_dir(&sub).unwrap();
        std::fs::write(sub.join("a.mp4"), b"x").unwrap();
        // uploads/loop -> .. : without a visited set the walk never ends.
        std::os::unix::fs::symlink(dir.path(), sub.join("loop")).unwrap();
        let files = walk(dir.path()).unwrap();
        assert_eq!(files, vec![sub.join("a.mp4")]);
    }

    #[test]
    fn globs_expand_and_duplicates_collapse() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        for f in ["a.mp4", "b.mp4", "c.avi"] {
            std::fs::write(root.join(f), b"x").unwrap();
        }
        let a = root.join("a.mp4").display().to_string();
        let pattern = root.join("*.mp4").display().to_string();
        let got = expand(&[a, pattern]).unwrap();
        assert_eq!(got, vec![root.join("a.mp4"), root.join("b.mp4")]);
    }

    #[test]
    fn a_glob_matching_nothing_is_an_input_error_but_a_missing_file_is_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let pattern = tmp.path().join("*.mov").display().to_string();
        let err = expand(&[pattern]).unwrap_err();
        assert_eq!(err.kind, crate::failure::FailureKind::Input);
        let missing = tmp.path().join("missing.mp4");
        assert_eq!(
            expand(&[missing.display().to_string()]).unwrap(),
            vec![missing]
        );
    }
}
