//! Workspaces: a folder of the user's files turned into pairs. This module knows files, units and
//! pairs; it runs no model (paraphrasing is a function the daemon calls on its worker).

pub mod config;
pub mod files;
pub mod neutralise;
pub mod paraphrase;
pub mod state;
pub mod style_words;
mod table;
pub mod units;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{bail, Context as _, Result};

pub use config::{PendingUnits, PseudoSources, UnitKind, WorkspaceConfig};
pub use files::FileKind;
pub use state::ParaphraseCache;
pub use style_words::StyleWords;
pub use table::{FileCounts, FileTable, FilesReport, LearnedFile, TableEntry, FILES_LIMIT};

use crate::memory::{self, Pair, PairsRead, SkippedLine};
use files::{Classifier, Found};

/// What pema took from one file.
#[derive(Clone, Debug)]
struct FileEntry {
    kind: FileKind,
    len: u64,
    modified: Option<SystemTime>,
    content: blake3::Hash,
    /// Corpus files: the units. Pairs files: none.
    units: Vec<String>,
    /// Pairs files: the pairs.
    pairs: Vec<Pair>,
    bad_lines: Vec<SkippedLine>,
}

/// What a refresh found.
#[derive(Clone, Copy, Debug, Default)]
pub struct Refresh {
    /// Files read and split again because they are new or their content changed.
    pub files_read: usize,
    /// Files read before that the walk no longer finds (deleted, moved, excluded): dropped with
    /// their units and pairs.
    pub files_removed: usize,
    /// Files not read again: same size and time as before, or same content.
    pub files_unchanged: usize,
    /// `.pema.toml` changed (or appeared or went) and was read again; a problem with it is in
    /// [`Workspace::config_error`].
    pub config_reloaded: bool,
}

/// A skipped file and why.
#[derive(Clone, Debug)]
pub struct Skipped {
    /// The file (or folder) passed over; for a bad line, the pairs file that holds it.
    pub path: PathBuf,
    /// Why, in words for the user (a bad line's begins with its line number).
    pub reason: String,
}

/// The pairs a memory of this workspace is built from.
pub struct PairSet {
    /// The pairs files' pairs and one pseudo-pair per paraphrased unit (with
    /// `pending_units = "identity"`, one unit → unit pair per pending unit too), in file order.
    pub pairs: Vec<Pair>,
    /// Units whose paraphrase is not ready and that are within `paraphrase_limit`, in the
    /// order they are paraphrased.
    pub pending: Vec<String>,
}

/// The units to paraphrase next, at most `allowed`: the ones whose text hashes lowest, so that a
/// limited share still spreads over every file and the same units are picked on every refresh.
fn paraphrase_order(waiting: Vec<&String>, allowed: usize) -> Vec<String> {
    let mut keyed: Vec<([u8; 32], &String)> = waiting
        .into_iter()
        .map(|u| (*blake3::hash(u.as_bytes()).as_bytes(), u))
        .collect();
    keyed.sort_unstable();
    keyed.dedup_by(|a, b| a.1 == b.1);
    keyed
        .into_iter()
        .take(allowed)
        .map(|(_, u)| u.clone())
        .collect()
}

/// An open workspace: its settings and what pema took from each of its files (units, pairs),
/// kept up to date by [`Workspace::refresh`].
pub struct Workspace {
    root: PathBuf,
    config: WorkspaceConfig,
    config_error: Option<String>,
    config_stamp: Option<SystemTime>,
    classifier: Classifier,
    state: PathBuf,
    files: BTreeMap<PathBuf, FileEntry>,
    /// Skipped files: why, and the size and time they had (so they are not read again until
    /// they change).
    skipped: BTreeMap<PathBuf, (String, u64, Option<SystemTime>)>,
}

impl Workspace {
    /// The workspace at `root` (an existing folder), with nothing read yet.
    pub fn open(root: &Path) -> Result<Self> {
        let root = root
            .canonicalize()
            .with_context(|| format!("cannot open the workspace {}", root.display()))?;
        if !root.is_dir() {
            bail!("the workspace {} is not a folder", root.display());
        }
        check_root(&root)?;
        let (config, config_error) = match WorkspaceConfig::load(&root) {
            Ok(c) => (c, None),
            Err(e) => (
                WorkspaceConfig::default(),
                Some(format!("{e:#}; using the defaults")),
            ),
        };
        let state = state::state_dir(&root, &config);
        Ok(Self {
            classifier: Classifier::new(&config)?,
            config_stamp: config_stamp(&root),
            root,
            config,
            config_error,
            state,
            files: BTreeMap::new(),
            skipped: BTreeMap::new(),
        })
    }

    /// The workspace's root folder, symbolic links resolved.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The settings in force: `.pema.toml`'s, or the defaults (or the previous settings) when
    /// it could not be used.
    pub fn config(&self) -> &WorkspaceConfig {
        &self.config
    }

    /// Why `.pema.toml` could not be used; None when it loaded or there is none.
    pub fn config_error(&self) -> Option<&str> {
        self.config_error.as_deref()
    }

    /// The folder of this workspace's memory, adapter and caches.
    pub fn state_dir(&self) -> &Path {
        &self.state
    }

    /// Brings the file table up to date with the disk: only new or changed files are read and
    /// split again. A changed `.pema.toml` is reloaded (and, if it changed how files are read,
    /// every file is read again).
    pub fn refresh(&mut self) -> Result<Refresh> {
        if !self.root.is_dir() {
            bail!(
                "the workspace folder {} is gone; its memory and adapter are kept",
                self.root.display()
            );
        }
        let mut r = Refresh::default();
        let stamp = config_stamp(&self.root);
        if stamp != self.config_stamp {
            self.config_stamp = stamp;
            r.config_reloaded = true;
            match WorkspaceConfig::load(&self.root) {
                Ok(c) => {
                    if c.corpus != self.config.corpus
                        || c.pairs != self.config.pairs
                        || c.exclude != self.config.exclude
                        || c.unit != self.config.unit
                        || c.max_file_bytes != self.config.max_file_bytes
                    {
                        self.files.clear();
                    }
                    self.classifier = Classifier::new(&c)?;
                    self.config = c;
                    self.config_error = None;
                }
                Err(e) => self.config_error = Some(format!("{e:#}; keeping the previous settings")),
            }
        }
        let found = files::walk(&self.root, &self.classifier, Some(&self.state));
        let present: std::collections::HashSet<&Path> =
            found.iter().map(|f| f.path.as_path()).collect();
        let before = self.files.len();
        self.files.retain(|p, _| present.contains(p.as_path()));
        self.skipped.retain(|p, _| present.contains(p.as_path()));
        r.files_removed = before - self.files.len();
        for f in &found {
            match self.files.get_mut(&f.path) {
                Some(e) if e.kind == f.kind && e.len == f.len && e.modified == f.modified => {
                    r.files_unchanged += 1;
                }
                None if self
                    .skipped
                    .get(&f.path)
                    .is_some_and(|(_, len, m)| *len == f.len && *m == f.modified) =>
                {
                    r.files_unchanged += 1;
                }
                _ => {
                    if self.read(f)? {
                        r.files_read += 1;
                    } else {
                        r.files_unchanged += 1;
                    }
                }
            }
        }
        Ok(r)
    }

    /// Reads one file into the table; false when its content had not changed after all.
    fn read(&mut self, f: &Found) -> Result<bool> {
        let text = match files::read_text(&f.path, self.config.max_file_bytes) {
            Ok(t) => t,
            Err(skip) => {
                self.files.remove(&f.path);
                self.skipped
                    .insert(f.path.clone(), (skip.to_string(), f.len, f.modified));
                return Ok(true);
            }
        };
        self.skipped.remove(&f.path);
        let content = blake3::hash(text.as_bytes());
        if let Some(e) = self.files.get_mut(&f.path) {
            if e.content == content && e.kind == f.kind {
                e.len = f.len;
                e.modified = f.modified;
                return Ok(false);
            }
        }
        let mut entry = FileEntry {
            kind: f.kind,
            len: f.len,
            modified: f.modified,
            content,
            units: vec![],
            pairs: vec![],
            bad_lines: vec![],
        };
        match f.kind {
            FileKind::Corpus => {
                let ext = f
                    .path
                    .extension()
                    .map(|e| e.to_string_lossy().to_lowercase())
                    .unwrap_or_default();
                entry.units = units::split(&text, &ext, &self.config.split_options());
            }
            FileKind::Pairs => {
                let mut read = PairsRead::default();
                memory::parse_pairs(&f.path, text.as_bytes(), &mut read);
                entry.pairs = read.pairs;
                entry.bad_lines = read.skipped;
            }
        }
        self.files.insert(f.path.clone(), entry);
        Ok(true)
    }

    /// Forgets every file so that the next refresh reads them all again.
    pub fn forget_files(&mut self) {
        self.files.clear();
        self.skipped.clear();
    }

    /// Every unit of the corpus files, in file order.
    pub fn units(&self) -> impl Iterator<Item = &str> {
        self.files
            .values()
            .flat_map(|e| e.units.iter().map(String::as_str))
    }

    /// Pairs from the pairs files and from the corpus units whose paraphrase is in `cache`.
    pub fn pairs(&self, cache: &ParaphraseCache) -> PairSet {
        let mut out = PairSet {
            pairs: vec![],
            pending: vec![],
        };
        let identity = self.config.pending_units == PendingUnits::Identity;
        let mut waiting = vec![];
        let mut paraphrased = 0;
        for e in self.files.values() {
            out.pairs.extend(e.pairs.iter().cloned());
            for u in &e.units {
                match cache.get(u) {
                    Some(p) => {
                        paraphrased += 1;
                        out.pairs.push(paraphrase::pseudo_pair(u, p));
                    }
                    None => {
                        waiting.push(u);
                        if identity {
                            out.pairs.push(paraphrase::pseudo_pair(u, u));
                        }
                    }
                }
            }
        }
        out.pending = paraphrase_order(
            waiting,
            self.config.paraphrase_limit.saturating_sub(paraphrased),
        );
        out
    }

    /// The file table, for `pema/files`.
    pub fn file_table(&self) -> FileTable {
        let mut table: BTreeMap<PathBuf, TableEntry> = self
            .files
            .iter()
            .map(|(p, e)| {
                let entry = TableEntry::Read {
                    kind: e.kind,
                    units: e.units.len(),
                    pairs: e.pairs.len(),
                    bad_lines: e.bad_lines.len(),
                };
                (p.clone(), entry)
            })
            .collect();
        for (p, (reason, _, _)) in &self.skipped {
            table.insert(p.clone(), TableEntry::Skipped(reason.clone()));
        }
        FileTable {
            root: self.root.clone(),
            config: self.config.clone(),
            state: self.state.clone(),
            table,
        }
    }

    /// How many files were read, by kind, and how many units they gave.
    pub fn counts(&self) -> FileCounts {
        let mut c = FileCounts::default();
        for e in self.files.values() {
            match e.kind {
                FileKind::Corpus => c.corpus_files += 1,
                FileKind::Pairs => c.pairs_files += 1,
            }
            c.units += e.units.len();
        }
        c
    }

    /// Files not read, with the reason; pairs files' bad lines too.
    pub fn skipped(&self) -> Vec<Skipped> {
        let mut out: Vec<Skipped> = self
            .skipped
            .iter()
            .map(|(p, (r, _, _))| Skipped {
                path: p.clone(),
                reason: r.clone(),
            })
            .collect();
        for e in self.files.values() {
            out.extend(e.bad_lines.iter().map(|s| Skipped {
                path: s.file.clone(),
                reason: format!("line {}: {}", s.line, s.reason),
            }));
        }
        out
    }
}

/// Folders that are not a workspace: the file system's root, the home folder itself, and the
/// system's folders (reading them would read the whole machine, or files that are not prose).
const SYSTEM_FOLDERS: &[&str] = &[
    "/proc",
    "/sys",
    "/dev",
    "/etc",
    "/usr",
    "/bin",
    "/sbin",
    "/boot",
    "/var",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/run",
    "/snap",
    "/opt",
    "/srv",
    "/root",
    "/home",
    "/tmp",
    "/mnt",
    "/media",
    "/lost+found",
    "/private",
    "/System",
    "/Library",
    "/Applications",
    "/Users",
];

/// Refuses a root that is `/`, the home folder itself, a system folder or inside `/proc`,
/// `/sys`, `/dev`, `/etc`, `/usr`, `/bin`, `/sbin`, `/boot`, `/lib*` (a canonical path).
pub fn check_root(root: &Path) -> Result<()> {
    let home = crate::dirs::home().and_then(|h| h.canonicalize().ok());
    if root.parent().is_none() || home.as_deref() == Some(root) {
        bail!(
            "{} cannot be a workspace: open the folder of your documents, not {}",
            root.display(),
            if root.parent().is_none() {
                "the root of the file system"
            } else {
                "your whole home folder"
            }
        );
    }
    let inside = [
        "/proc", "/sys", "/dev", "/etc", "/usr", "/bin", "/sbin", "/boot", "/lib", "/lib32",
        "/lib64",
    ];
    if SYSTEM_FOLDERS.iter().any(|s| root == Path::new(s))
        || inside.iter().any(|s| root.starts_with(s))
    {
        bail!(
            "{} is a system folder and cannot be a workspace: open the folder of your documents",
            root.display()
        );
    }
    Ok(())
}

fn config_stamp(root: &Path) -> Option<SystemTime> {
    std::fs::symlink_metadata(root.join(config::FILE_NAME))
        .and_then(|m| m.modified())
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Past `paraphrase_limit`, units stand for themselves and are never queued; the queued ones
    /// are the same on every refresh and shrink as paraphrases arrive.
    #[test]
    fn paraphrasing_stops_at_the_limit_and_picks_the_same_units() {
        let root = tempfile::tempdir().unwrap();
        let cache_dir = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join(".pema.toml"), "paraphrase_limit = 4\n").unwrap();
        let text: Vec<String> = (0..10)
            .map(|i| format!("Sentence number {i} of the plain notes is here."))
            .collect();
        std::fs::write(root.path().join("a.md"), text[..5].join(" ")).unwrap();
        std::fs::write(root.path().join("b.md"), text[5..].join(" ")).unwrap();
        let mut ws = Workspace::open(root.path()).unwrap();
        ws.refresh().unwrap();
        assert_eq!(ws.units().count(), 10);
        let (mut cache, _) = ParaphraseCache::load(cache_dir.path(), "test");
        let first = ws.pairs(&cache);
        assert_eq!(first.pending.len(), 4, "{:?}", first.pending);
        assert_eq!(
            first.pairs.len(),
            10,
            "every unit stands for itself meanwhile"
        );
        assert_eq!(ws.pairs(&cache).pending, first.pending);
        for u in &first.pending[..2] {
            cache.insert(u, format!("plain {u}"));
        }
        let second = ws.pairs(&cache);
        assert_eq!(second.pending, first.pending[2..]);
        assert_eq!(
            second
                .pairs
                .iter()
                .filter(|p| p.source.starts_with("plain "))
                .count(),
            2
        );
    }
}
