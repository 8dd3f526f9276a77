//! Marked words: the words a memory's targets write and its sources do not ("unto", "thou",
//! "Jehovah" in a Basic English → King James memory; "Sie", "Ihnen" in an informal → formal
//! one). A rewrite may give the adapter its full weight only where it reaches for one of them,
//! and the last styled attempt at a line that lost part of its source keeps only them
//! (docs/method.md §8.8). Learned at build time from the training side of the pairs (the
//! memory keeps no text) and kept beside the memory.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context as _, Result};

/// The file beside a memory that holds its marked words.
pub const MARKED_WORDS_FILE: &str = "marked-words.json";
const FORMAT: &str = "pema-marked-words";
const VERSION: u32 = 1;
/// A marked word is written at least this many times as often in the targets as in the sources
/// (their count plus one: a word the sources never write needs this many uses).
const MIN_RATIO: usize = 10;
/// At most this many, the most written first.
const MAX_WORDS: usize = 200;

#[derive(serde::Serialize, serde::Deserialize)]
struct File {
    format: String,
    version: u32,
    words: Vec<String>,
}

/// The words of `text`: runs of letters and digits, case kept ("Sie" is not "sie").
fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
}

/// The marked words of `pairs` (source, target): written at least [`MIN_RATIO`] times as often
/// in the targets as in the sources (plus one); the most written first.
pub fn marked_words<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<String> {
    let mut counts: HashMap<&str, (usize, usize)> = HashMap::new();
    for (s, t) in pairs {
        for w in words(s) {
            counts.entry(w).or_default().0 += 1;
        }
        for w in words(t) {
            counts.entry(w).or_default().1 += 1;
        }
    }
    let mut marked: Vec<(&str, usize)> = counts
        .into_iter()
        .filter(|&(_, (s, t))| t >= MIN_RATIO * (s + 1))
        .map(|(w, (_, t))| (w, t))
        .collect();
    marked.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    marked
        .into_iter()
        .take(MAX_WORDS)
        .map(|(w, _)| w.to_string())
        .collect()
}

/// Writes the marked words beside the memory in `dir` (atomically).
pub fn write_marked_words(dir: &Path, words: &[String]) -> Result<()> {
    let file = File {
        format: FORMAT.into(),
        version: VERSION,
        words: words.to_vec(),
    };
    crate::fsutil::write_atomic(
        &dir.join(MARKED_WORDS_FILE),
        &serde_json::to_vec_pretty(&file)?,
    )
    .context("saving the memory's marked words")
}

/// The marked words kept beside the memory in `dir`; none for a memory built before pema kept
/// them, or whose file is unreadable (they only steer the mixture: a rewrite then mixes as
/// before).
pub fn read_marked_words(dir: &Path) -> Vec<String> {
    let Ok(bytes) = std::fs::read(dir.join(MARKED_WORDS_FILE)) else {
        return vec![];
    };
    match serde_json::from_slice::<File>(&bytes) {
        Ok(f) if f.format == FORMAT && f.version == VERSION => f.words,
        _ => vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marked_words_are_the_targets_own() {
        let pairs: Vec<(String, String)> = (0..12)
            .map(|i| {
                (
                    format!("And he said to them, come {i} times; she said it."),
                    format!("And he said unto them, Come {i} times; Sie said it, unto them."),
                )
            })
            .collect();
        let got = marked_words(pairs.iter().map(|(s, t)| (s.as_str(), t.as_str())));
        // "unto" 24 times, never in the sources; "Sie" 12 times (case kept: "she" is another
        // word); "Come" 12 times, while "come" is the sources' own word.
        assert_eq!(got[0], "unto");
        assert!(got.contains(&"Sie".to_string()), "{got:?}");
        assert!(got.contains(&"Come".to_string()), "{got:?}");
        assert!(!got
            .iter()
            .any(|w| w == "said" || w == "them" || w == "come"));
        // Too rare: 9 uses.
        let few = marked_words(pairs[..9].iter().map(|(s, t)| (s.as_str(), t.as_str())));
        assert!(!few.contains(&"Sie".to_string()), "{few:?}");
        // A word the sources write once for the targets' ten is not marked.
        let mixed: Vec<(String, String)> = (0..10)
            .map(|i| {
                let s = if i == 0 { "behold it" } else { "see it" };
                (s.to_string(), "behold it".to_string())
            })
            .collect();
        assert!(marked_words(mixed.iter().map(|(s, t)| (s.as_str(), t.as_str()))).is_empty());
    }

    #[test]
    fn kept_beside_the_memory() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read_marked_words(dir.path()).is_empty());
        let w = vec!["unto".to_string(), "thou".to_string()];
        write_marked_words(dir.path(), &w).unwrap();
        assert_eq!(read_marked_words(dir.path()), w);
        std::fs::write(dir.path().join(MARKED_WORDS_FILE), b"{not json").unwrap();
        assert!(read_marked_words(dir.path()).is_empty());
    }
}
