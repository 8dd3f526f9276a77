//! The file table: what every file the walk hands to pema became (units, pairs, or a reason it
//! was skipped), taken as a snapshot after each refresh, from which `pema/files` is answered
//! off the pipeline thread.

use super::*;

/// What a file the walk hands to pema became.
#[derive(Clone, Debug)]
pub enum TableEntry {
    /// Read and learned from.
    Read {
        /// Corpus or pairs.
        kind: FileKind,
        /// Corpus files: units cut from it.
        units: usize,
        /// Pairs files: pairs read from it.
        pairs: usize,
        /// Pairs files: lines skipped.
        bad_lines: usize,
    },
    /// Not read, and why (too large, binary, not UTF-8, unreadable).
    Skipped(String),
}

/// What `pema/files` needs of a workspace, taken after each refresh (cheap: one entry a file).
#[derive(Clone, Debug)]
pub struct FileTable {
    /// The workspace's root folder.
    pub root: PathBuf,
    /// The settings the files were read with (their globs decide what the walk takes).
    pub config: WorkspaceConfig,
    /// The workspace's state folder, left out of the walk.
    pub state: PathBuf,
    /// Each file the latest refresh handed to pema, by path: read, or skipped with why.
    pub table: BTreeMap<PathBuf, TableEntry>,
}

/// A file pema learns from.
#[derive(Clone, Debug)]
pub struct LearnedFile {
    /// The file's path (the root joined with its path inside).
    pub path: PathBuf,
    /// Corpus or pairs.
    pub kind: FileKind,
    /// Corpus files: the units (sentences or paragraphs) cut from it.
    pub units: usize,
    /// Pairs files: the pairs read from it.
    pub pairs: usize,
    /// Pairs files: lines skipped (their reasons are in `pema/status`).
    pub bad_lines: usize,
}

/// The answer to "which files does this workspace learn from, and why not the others".
#[derive(Clone, Debug)]
pub struct FilesReport {
    /// The workspace's root folder.
    pub root: PathBuf,
    /// The files pema learns from.
    pub learned: Vec<LearnedFile>,
    /// Files pema will read but has not read yet (the workspace is still loading).
    pub waiting: Vec<PathBuf>,
    /// Files and folders not learned from, with why (a folder passed over is one entry).
    pub skipped: Vec<Skipped>,
    /// More entries than the listing's limit: the rest are not listed.
    pub truncated: bool,
}

/// Entries `pema/files` lists at most.
pub const FILES_LIMIT: usize = 20_000;

impl FileTable {
    /// Walks the tree again (reading no file) and tells, for each entry, what pema makes of it.
    pub fn report(&self, limit: usize) -> Result<FilesReport> {
        let classifier = Classifier::new(&self.config)?;
        let (entries, truncated) = files::survey(&self.root, &classifier, Some(&self.state), limit);
        let mut r = FilesReport {
            root: self.root.clone(),
            learned: vec![],
            waiting: vec![],
            skipped: vec![],
            truncated,
        };
        for (path, verdict) in entries {
            match (verdict, self.table.get(&path)) {
                (Err(why), _) => r.skipped.push(Skipped {
                    path,
                    reason: why.to_string(),
                }),
                (
                    Ok(_),
                    Some(TableEntry::Read {
                        kind,
                        units,
                        pairs,
                        bad_lines,
                    }),
                ) => r.learned.push(LearnedFile {
                    path,
                    kind: *kind,
                    units: *units,
                    pairs: *pairs,
                    bad_lines: *bad_lines,
                }),
                (Ok(_), Some(TableEntry::Skipped(reason))) => r.skipped.push(Skipped {
                    path,
                    reason: reason.clone(),
                }),
                (Ok(_), None) => r.waiting.push(path),
            }
        }
        Ok(r)
    }
}

/// How many files a workspace has read, by kind.
#[derive(Clone, Copy, Debug, Default)]
pub struct FileCounts {
    /// Prose files read.
    pub corpus_files: usize,
    /// Pairs files read.
    pub pairs_files: usize,
    /// Units cut from the prose files, all together.
    pub units: usize,
}
