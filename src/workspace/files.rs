//! Which files of a workspace are read, and reading them safely: the walk honours .gitignore and
//! .ignore (through the `ignore` crate) and the globs of `.pema.toml`; binary, oversized and
//! non-UTF-8 files are skipped with a reason the user can read in the status.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Context as _, Result};
use globset::{Glob, GlobSet, GlobSetBuilder};

use super::config::WorkspaceConfig;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FileKind {
    /// Prose: cut into units, back-paraphrased into pseudo-pairs.
    Corpus,
    /// JSONL pairs, used as they are.
    Pairs,
}

/// A file the walk found, with what tells whether it changed since the last walk.
#[derive(Clone, Debug)]
pub struct Found {
    pub path: PathBuf,
    pub kind: FileKind,
    pub len: u64,
    pub modified: Option<SystemTime>,
}

pub struct Classifier {
    corpus: GlobSet,
    pairs: GlobSet,
    exclude: GlobSet,
}

fn glob_set(globs: &[String]) -> Result<GlobSet> {
    let mut b = GlobSetBuilder::new();
    for g in globs {
        b.add(Glob::new(g).with_context(|| format!("bad glob {g:?}"))?);
    }
    Ok(b.build()?)
}

impl Classifier {
    pub fn new(config: &WorkspaceConfig) -> Result<Self> {
        Ok(Self {
            corpus: glob_set(&config.corpus)?,
            pairs: glob_set(&config.pairs)?,
            exclude: glob_set(&config.exclude)?,
        })
    }

    /// What a path relative to the root is, if pema reads it. Pairs globs win over corpus globs.
    pub fn kind(&self, rel: &Path) -> Option<FileKind> {
        if self.exclude.is_match(rel) {
            None
        } else if self.pairs.is_match(rel) {
            Some(FileKind::Pairs)
        } else if self.corpus.is_match(rel) {
            Some(FileKind::Corpus)
        } else {
            None
        }
    }
}

/// Every file of the workspace that pema reads, in path order. Hidden files and folders and
/// whatever .gitignore or .ignore exclude are not visited; neither is `skip` (the state folder,
/// when the user put it inside the workspace).
pub fn walk(root: &Path, classifier: &Classifier, skip: Option<&Path>) -> Vec<Found> {
    let mut out = Vec::new();
    let walker = ignore::WalkBuilder::new(root)
        .hidden(true)
        .git_ignore(true)
        .git_exclude(true)
        .ignore(true)
        .require_git(false)
        .follow_links(false)
        .build();
    for entry in walker.flatten() {
        let path = entry.path();
        if skip.is_some_and(|s| path.starts_with(s)) {
            continue;
        }
        if !entry.file_type().is_some_and(|t| t.is_file()) {
            continue;
        }
        let Ok(rel) = path.strip_prefix(root) else {
            continue;
        };
        let Some(kind) = classifier.kind(rel) else {
            continue;
        };
        let Ok(meta) = entry.metadata() else {
            continue;
        };
        out.push(Found {
            path: path.to_path_buf(),
            kind,
            len: meta.len(),
            modified: meta.modified().ok(),
        });
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

/// Why a file was not read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Skip {
    #[error("larger than the {limit}-byte limit ({len} bytes); raise max_file_bytes in .pema.toml to include it")]
    TooLarge { len: u64, limit: u64 },
    #[error("binary (holds NUL bytes)")]
    Binary,
    #[error("not valid UTF-8 (first bad byte at offset {offset})")]
    InvalidUtf8 { offset: usize },
    #[error("unreadable: {0}")]
    Unreadable(String),
}

/// The file's text, or why it is skipped. A link at `path` is not followed, and a FIFO or
/// device is not read (the walk lists regular files only, but the tree may change under it).
pub fn read_text(path: &Path, max_bytes: u64) -> Result<String, Skip> {
    use std::io::Read as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| Skip::Unreadable(e.to_string()))?;
    let meta = f.metadata().map_err(|e| Skip::Unreadable(e.to_string()))?;
    if !meta.is_file() {
        return Err(Skip::Unreadable("not a regular file".into()));
    }
    let len = meta.len();
    if len > max_bytes {
        return Err(Skip::TooLarge {
            len,
            limit: max_bytes,
        });
    }
    let mut bytes = Vec::with_capacity(len as usize);
    f.take(max_bytes + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Skip::Unreadable(e.to_string()))?;
    if bytes.len() as u64 > max_bytes {
        return Err(Skip::TooLarge {
            len: bytes.len() as u64,
            limit: max_bytes,
        });
    }
    if bytes[..bytes.len().min(8192)].contains(&0) {
        return Err(Skip::Binary);
    }
    String::from_utf8(bytes).map_err(|e| Skip::InvalidUtf8 {
        offset: e.utf8_error().valid_up_to(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walk_honours_ignore_files_and_globs() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::create_dir_all(r.join("sub")).unwrap();
        std::fs::create_dir_all(r.join(".hidden")).unwrap();
        for f in [
            "a.md",
            "b.txt",
            "c.rs",
            "sub/d.md",
            "sub/x.pairs.jsonl",
            "skipme.md",
            ".hidden/e.md",
        ] {
            std::fs::write(r.join(f), "text").unwrap();
        }
        std::fs::write(r.join(".gitignore"), "skipme.md\n").unwrap();
        let c = Classifier::new(&WorkspaceConfig::default()).unwrap();
        let got: Vec<_> = walk(r, &c, None)
            .into_iter()
            .map(|f| (f.path.strip_prefix(r).unwrap().to_path_buf(), f.kind))
            .collect();
        assert_eq!(
            got,
            vec![
                ("a.md".into(), FileKind::Corpus),
                ("b.txt".into(), FileKind::Corpus),
                ("sub/d.md".into(), FileKind::Corpus),
                ("sub/x.pairs.jsonl".into(), FileKind::Pairs),
            ]
        );
    }

    #[test]
    fn skips_are_explained() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        std::fs::write(&p, b"ab\0cd").unwrap();
        assert_eq!(read_text(&p, 100), Err(Skip::Binary));
        std::fs::write(&p, b"ok \xff bad").unwrap();
        assert_eq!(read_text(&p, 100), Err(Skip::InvalidUtf8 { offset: 3 }));
        assert!(matches!(read_text(&p, 2), Err(Skip::TooLarge { .. })));
        std::fs::write(&p, "fine").unwrap();
        assert_eq!(read_text(&p, 100).unwrap(), "fine");
        // A link is not followed, even to a readable file.
        let l = d.path().join("link");
        std::os::unix::fs::symlink(&p, &l).unwrap();
        assert!(matches!(read_text(&l, 100), Err(Skip::Unreadable(_))));
    }
}
