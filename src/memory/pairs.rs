//! Pairs files: JSON Lines of `{"source": ..., "target": ...}`. Bad lines are skipped and named
//! (file and line); the good lines are still used.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use serde::Deserialize;

/// One training example: a source text and the text wanted for it (the same thing in the
/// house style, a translation…).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pair {
    /// The text to rewrite: what fills the template's `{source}` slot.
    pub source: String,
    /// The rewrite wanted for it: the memory's rows are its tokens.
    pub target: String,
}

impl Pair {
    /// The content hash that keys a pair's entries in the memory.
    pub fn hash(&self) -> [u8; 16] {
        let mut h = blake3::Hasher::new();
        h.update(&(self.source.len() as u64).to_le_bytes());
        h.update(self.source.as_bytes());
        h.update(self.target.as_bytes());
        h.finalize().as_bytes()[..16].try_into().unwrap()
    }
}

/// A line that was not used, and why.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SkippedLine {
    /// The pairs file the line is in.
    pub file: PathBuf,
    /// Its line number, from 1.
    pub line: usize,
    /// Why it was skipped (invalid UTF-8, not a pair object, empty side).
    pub reason: String,
}

impl std::fmt::Display for SkippedLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.reason)
    }
}

/// What reading pairs files gave, accumulated over the files read.
#[derive(Default, Debug)]
pub struct PairsRead {
    /// The good pairs, in file and line order.
    pub pairs: Vec<Pair>,
    /// The lines that were not used, and why.
    pub skipped: Vec<SkippedLine>,
}

#[derive(Deserialize)]
struct Line {
    source: String,
    target: String,
}

/// Reads one pairs file. A file that cannot be read at all is an error; a bad line is not.
pub fn read_pairs_file(path: &Path, into: &mut PairsRead) -> Result<()> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("cannot read pairs file {}", path.display()))?;
    parse_pairs(path, &bytes, into);
    Ok(())
}

/// Writes pairs as a JSON Lines pairs file (atomically: a file being replaced stays whole).
pub fn write_pairs_file(path: &Path, pairs: &[Pair]) -> Result<()> {
    crate::fsutil::write_atomic(path, pairs_text(pairs).as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// The file beside a memory that holds its held-out pairs' text.
pub const HELD_OUT_FILE: &str = "held-out.jsonl";

/// Writes the held-out pairs' text beside the memory in `dir` (atomically).
pub fn write_held_out(dir: &Path, pairs: &[Pair]) -> Result<()> {
    crate::fsutil::write_atomic(&dir.join(HELD_OUT_FILE), pairs_text(pairs).as_bytes())
}

/// The held-out pairs' text kept beside the memory in `dir`; none for a memory built before
/// pema kept them (or whose file is unreadable: they only guide the choice of schedule).
pub fn read_held_out(dir: &Path) -> Vec<Pair> {
    let mut read = PairsRead::default();
    let path = dir.join(HELD_OUT_FILE);
    match std::fs::read(&path) {
        Ok(bytes) if bytes.len() <= 4 << 20 => parse_pairs(&path, &bytes, &mut read),
        _ => {}
    }
    read.pairs
}

fn pairs_text(pairs: &[Pair]) -> String {
    let mut text = String::new();
    for p in pairs {
        text.push_str(&serde_json::json!({"source": p.source, "target": p.target}).to_string());
        text.push('\n');
    }
    text
}

/// Parses the bytes of a pairs file (`path` only names it in [`SkippedLine`]s), adding its
/// pairs and skipped lines to `into`. A UTF-8 BOM, blank lines and CRLF endings are accepted;
/// a line with an empty (or blank) source or target is skipped.
pub fn parse_pairs(path: &Path, bytes: &[u8], into: &mut PairsRead) {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let skip = |reason: String| SkippedLine {
            file: path.to_path_buf(),
            line: i + 1,
            reason,
        };
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.iter().all(|b| b.is_ascii_whitespace()) {
            continue;
        }
        let text = match std::str::from_utf8(raw) {
            Ok(t) => t,
            Err(e) => {
                into.skipped
                    .push(skip(format!("invalid UTF-8 at byte {}", e.valid_up_to())));
                continue;
            }
        };
        match serde_json::from_str::<Line>(text) {
            Ok(l) if l.source.trim().is_empty() || l.target.trim().is_empty() => {
                into.skipped.push(skip("empty source or target".into()))
            }
            Ok(l) => into.pairs.push(Pair {
                source: l.source,
                target: l.target,
            }),
            Err(e) => into.skipped.push(skip(format!(
                "not a {{\"source\", \"target\"}} object: {e}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_lines_are_named_and_good_ones_kept() {
        let data = b"{\"source\":\"a\",\"target\":\"b\"}\n\nnot json\n{\"source\":\"a\"}\n\xff\xfe\n{\"source\":\"\",\"target\":\"x\"}\r\n{\"source\":\"c\",\"target\":\"d\"}\r\n";
        let mut r = PairsRead::default();
        parse_pairs(Path::new("p.jsonl"), data, &mut r);
        assert_eq!(r.pairs.len(), 2);
        assert_eq!(r.pairs[1].target, "d");
        let lines: Vec<_> = r.skipped.iter().map(|s| s.line).collect();
        assert_eq!(lines, vec![3, 4, 5, 6]);
        assert!(r.skipped[2].reason.contains("UTF-8"));
        assert!(r.skipped[0].to_string().starts_with("p.jsonl:3:"));
    }

    #[test]
    fn hash_depends_on_both_sides_and_their_boundary() {
        let p = |s: &str, t: &str| {
            Pair {
                source: s.into(),
                target: t.into(),
            }
            .hash()
        };
        assert_ne!(p("ab", "c"), p("a", "bc"));
        assert_ne!(p("a", "b"), p("b", "a"));
        assert_eq!(p("a", "b"), p("a", "b"));
    }
}
