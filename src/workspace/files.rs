//! Which files of a workspace are read, and reading them safely: the walk honours .gitignore and
//! .ignore (through the `ignore` crate) and the globs of `.pema.toml`; binary, oversized and
//! non-UTF-8 files are skipped with a reason the user can read in the status.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Context as _, Result};
use globset::{Glob, GlobSet, GlobSetBuilder};

use super::config::WorkspaceConfig;

/// What pema makes of a file it reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// Prose: cut into units, back-paraphrased into pseudo-pairs.
    Corpus,
    /// JSONL pairs, used as they are.
    Pairs,
}

/// A file the walk found, with what tells whether it changed since the last walk.
#[derive(Clone, Debug)]
pub struct Found {
    /// The file's path: the workspace root joined with its path inside.
    pub path: PathBuf,
    /// Corpus or pairs, as the globs of `.pema.toml` say.
    pub kind: FileKind,
    /// Size in bytes at the walk.
    pub len: u64,
    /// Last modification time at the walk; None where the file system does not give one.
    pub modified: Option<SystemTime>,
}

/// Tells from a path inside the workspace whether pema reads it, and as what: the corpus,
/// pairs and exclude globs of `.pema.toml`.
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
    /// The classifier of `config`'s globs; fails on a glob that does not parse.
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

/// The walk pema learns from: hidden entries and what .gitignore or .ignore exclude are not
/// visited, links are not followed. `walk` and `survey` share it so they cannot disagree.
fn walker(root: &Path) -> ignore::Walk {
    ignore::WalkBuilder::new(root)
        .hidden(true)
        .git_ignore(true)
        .git_exclude(true)
        .ignore(true)
        .require_git(false)
        .follow_links(false)
        .build()
}

/// Every file of the workspace that pema reads, in path order. Hidden files and folders and
/// whatever .gitignore or .ignore exclude are not visited; neither is `skip` (the state folder,
/// when the user put it inside the workspace).
pub fn walk(root: &Path, classifier: &Classifier, skip: Option<&Path>) -> Vec<Found> {
    let mut out = Vec::new();
    let walker = walker(root);
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
    /// The file is larger than `max_file_bytes` of `.pema.toml`.
    #[error("larger than the {limit}-byte limit ({len} bytes); raise max_file_bytes in .pema.toml to include it")]
    TooLarge {
        /// The file's size in bytes (`limit + 1` for a file that grew past the limit while read).
        len: u64,
        /// The limit in bytes.
        limit: u64,
    },
    /// A NUL byte in the first 8 KiB: not text.
    #[error("binary (holds NUL bytes)")]
    Binary,
    /// The text is not UTF-8.
    #[error("not valid UTF-8 (first bad byte at offset {offset})")]
    InvalidUtf8 {
        /// Byte offset of the first invalid byte.
        offset: usize,
    },
    /// The file could not be opened or read, or is not a regular file (a link, FIFO or device);
    /// the words say why.
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

/// Why a file the walk did not hand to pema is not read (`pema/files`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotVisited {
    /// A hidden file or folder (its name starts with a dot); a folder is not entered.
    Hidden,
    /// Excluded by a .gitignore, .ignore or .git/info/exclude rule; a folder is not entered.
    Ignored,
    /// A symbolic link: never followed.
    Link,
    /// Not a regular file (a FIFO, socket or device).
    Special,
    /// pema's own state folder, inside the workspace.
    State,
    /// Matched by an `exclude` glob of .pema.toml.
    Excluded,
    /// Matched by neither the `corpus` nor the `pairs` globs of .pema.toml.
    NoGlob,
}

impl std::fmt::Display for NotVisited {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Hidden => "hidden (name starts with a dot)",
            Self::Ignored => "ignored by .gitignore, .ignore or .git/info/exclude",
            Self::Link => "a symbolic link (never followed)",
            Self::Special => "not a regular file",
            Self::State => "pema's own state folder",
            Self::Excluded => "matched by an exclude glob of .pema.toml",
            Self::NoGlob => {
                "not a file type pema reads (no corpus or pairs glob of .pema.toml matches it)"
            }
        })
    }
}

/// An entry of the tree and what pema makes of it.
pub type Surveyed = (PathBuf, Result<FileKind, NotVisited>);

/// What the walk makes of every entry of the tree: the files it hands to pema (with their
/// kind) and the entries it passes over, with why. A folder passed over is one entry (it is not
/// entered). Stops after `limit` entries (the bool is then true).
pub fn survey(
    root: &Path,
    classifier: &Classifier,
    skip: Option<&Path>,
    limit: usize,
) -> (Vec<Surveyed>, bool) {
    // What the real walk visits (files and folders), so that the survey agrees with it exactly.
    let mut visited = std::collections::HashSet::new();
    let walker = walker(root);
    for entry in walker.flatten() {
        visited.insert(entry.path().to_path_buf());
    }
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut entries: Vec<_> = rd.flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        let mut subdirs = Vec::new();
        for e in entries {
            if out.len() >= limit {
                return (out, true);
            }
            let path = e.path();
            let Ok(t) = e.file_type() else { continue };
            let verdict = if skip.is_some_and(|s| path.starts_with(s)) {
                Err(NotVisited::State)
            } else if t.is_symlink() {
                Err(NotVisited::Link)
            } else if !visited.contains(&path) {
                if e.file_name().to_string_lossy().starts_with('.') {
                    Err(NotVisited::Hidden)
                } else {
                    Err(NotVisited::Ignored)
                }
            } else if t.is_dir() {
                subdirs.push(path);
                continue;
            } else if !t.is_file() {
                Err(NotVisited::Special)
            } else {
                let rel = path.strip_prefix(root).unwrap_or(&path);
                match classifier.kind(rel) {
                    Some(k) => Ok(k),
                    None if classifier.exclude.is_match(rel) => Err(NotVisited::Excluded),
                    None => Err(NotVisited::NoGlob),
                }
            };
            out.push((path, verdict));
        }
        subdirs.reverse();
        stack.extend(subdirs);
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    (out, false)
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

    #[test]
    fn survey_agrees_with_the_walk_and_says_why() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        for dir in ["sub", ".hidden", "build", "drafts"] {
            std::fs::create_dir_all(r.join(dir)).unwrap();
        }
        for f in [
            "a.md",
            "c.rs",
            "sub/d.md",
            "sub/x.pairs.jsonl",
            "skipme.md",
            ".hidden/e.md",
            "build/out.md",
            "drafts/z.md",
        ] {
            std::fs::write(r.join(f), "text").unwrap();
        }
        std::fs::write(r.join(".gitignore"), "skipme.md\nbuild/\n").unwrap();
        std::os::unix::fs::symlink(r.join("a.md"), r.join("link.md")).unwrap();
        let config = WorkspaceConfig {
            exclude: vec!["drafts/**".into()],
            ..WorkspaceConfig::default()
        };
        let c = Classifier::new(&config).unwrap();
        let (got, truncated) = survey(r, &c, None, 1000);
        assert!(!truncated);
        let got: Vec<(String, Result<FileKind, NotVisited>)> = got
            .into_iter()
            .map(|(p, v)| (p.strip_prefix(r).unwrap().display().to_string(), v))
            .collect();
        let want: Vec<(String, Result<FileKind, NotVisited>)> = vec![
            (".gitignore".into(), Err(NotVisited::Hidden)),
            (".hidden".into(), Err(NotVisited::Hidden)),
            ("a.md".into(), Ok(FileKind::Corpus)),
            ("build".into(), Err(NotVisited::Ignored)),
            ("c.rs".into(), Err(NotVisited::NoGlob)),
            ("drafts/z.md".into(), Err(NotVisited::Excluded)),
            ("link.md".into(), Err(NotVisited::Link)),
            ("skipme.md".into(), Err(NotVisited::Ignored)),
            ("sub/d.md".into(), Ok(FileKind::Corpus)),
            ("sub/x.pairs.jsonl".into(), Ok(FileKind::Pairs)),
        ];
        assert_eq!(got, want);
        // Every file the survey hands on is one the walk finds, and the other way round.
        let walked: Vec<String> = walk(r, &c, None)
            .into_iter()
            .map(|f| f.path.strip_prefix(r).unwrap().display().to_string())
            .collect();
        let surveyed: Vec<String> = got
            .iter()
            .filter(|(_, v)| v.is_ok())
            .map(|(p, _)| p.clone())
            .collect();
        assert_eq!(walked, surveyed);
        let (few, truncated) = survey(r, &c, None, 3);
        assert!(truncated && few.len() == 3);
    }
}
