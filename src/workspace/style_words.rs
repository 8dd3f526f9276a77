//! Style words: the words a workspace's prose uses far more often than plain text of its language
//! does ("unto", "thou", "hath" in a King James folder). They are what
//! [`super::neutralise`] takes out of a unit to make its pseudo-source, so that the pair teaches
//! the adapter to put them back (docs/method.md §8.5).
//!
//! The list is made from the workspace's units and kept in its state folder, so that the
//! pseudo-sources made with it stay valid while files are edited; it is made again only once the
//! units have doubled since (a folder that grew from a few notes), which makes every
//! pseudo-source again.

use std::collections::HashSet;
use std::path::Path;

use anyhow::{bail, Context as _, Result};
use serde::{Deserialize, Serialize};

/// Plain text the units are compared against, by language (`LICENSE-NOTE.md` beside them).
const REFERENCES: &[(&str, &str)] = &[
    ("en", include_str!("reference/en.txt")),
    ("de", include_str!("reference/de.txt")),
];

/// Changes whenever the rule or its settings change.
pub const VERSION: &str = "style-words-v1";
const FILE_NAME: &str = "style-words.json";
const FORMAT: &str = "pema-style-words";
/// A style word is used at least this many times in the units…
const MIN_COUNT: usize = 5;
/// …and at least this many times as often as in the reference (its count smoothed by one).
const MIN_RATIO: f64 = 20.0;
/// At most this many, the most over-used first.
const MAX_WORDS: usize = 200;
/// The reference of a language is used when at least this share of the units' words occur in it
/// (language `auto`); below it, no language fits and there are no style words.
const MIN_COVERAGE: f64 = 0.5;

/// A workspace's style words, and what they were made from.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StyleWords {
    format: String,
    version: String,
    /// The `language` setting it was made under (`auto`, `en`, …): another setting, another list.
    pub setting: String,
    /// The reference's language (`en`, `de`), or none when no reference fits the units.
    pub language: Option<String>,
    /// Units the list was made from.
    pub units: usize,
    /// The words, lower case, the most over-used first.
    pub words: Vec<String>,
}

impl StyleWords {
    /// The list kept in `state`, if there is a usable one.
    pub fn load(state: &Path) -> Option<Self> {
        let bytes = std::fs::read(state.join(FILE_NAME)).ok()?;
        let s: Self = serde_json::from_slice(&bytes).ok()?;
        (s.format == FORMAT && s.version == VERSION).then_some(s)
    }

    /// Keeps the list in `state` (atomically).
    pub fn save(&self, state: &Path) -> Result<()> {
        crate::fsutil::write_atomic(&state.join(FILE_NAME), &serde_json::to_vec_pretty(self)?)
            .context("saving the style words")
    }

    /// Whether a list of `units` units under the `language` setting should be made, given the
    /// one kept (if any).
    pub fn due(kept: Option<&Self>, units: usize, language: &str) -> bool {
        units > 0 && kept.is_none_or(|k| units >= 2 * k.units.max(1) || k.setting != language)
    }

    /// The style words of `units`, against the reference of `language` (`auto`: the one that
    /// covers most of their words).
    pub fn make<'a>(units: impl IntoIterator<Item = &'a str>, language: &str) -> Result<Self> {
        let units: Vec<&str> = units.into_iter().collect();
        let counts = word_counts(units.iter().copied());
        let reference = match language {
            "auto" => REFERENCES
                .iter()
                .map(|&(lang, text)| {
                    let r = word_counts(text.lines());
                    (coverage(&counts, &r), lang, r)
                })
                .max_by(|a, b| a.0.total_cmp(&b.0))
                .filter(|(c, _, _)| *c >= MIN_COVERAGE)
                .map(|(_, lang, r)| (lang, r)),
            lang => match REFERENCES.iter().find(|(l, _)| *l == lang) {
                Some(&(l, text)) => Some((l, word_counts(text.lines()))),
                None if ["fr", "es"].contains(&lang) => None,
                None => bail!("no reference text for language {lang:?}"),
            },
        };
        let words = match &reference {
            Some((_, r)) => over_used(&counts, r, MIN_COUNT, MIN_RATIO, MAX_WORDS),
            None => vec![],
        };
        Ok(Self {
            format: FORMAT.into(),
            version: VERSION.into(),
            setting: language.to_string(),
            language: reference.map(|(l, _)| l.to_string()),
            units: units.len(),
            words,
        })
    }

    /// The words, for lookups.
    pub fn set(&self) -> HashSet<String> {
        self.words.iter().cloned().collect()
    }

    /// Names the list, for what made a pseudo-source: another list, another pseudo-source.
    pub fn digest(&self) -> String {
        let mut h = blake3::Hasher::new();
        for w in &self.words {
            h.update(w.as_bytes());
            h.update(b"\n");
        }
        h.finalize().to_hex()[..16].to_string()
    }
}

/// Word counts (words: runs of letters, as written) and the total.
struct Counts {
    by_word: std::collections::HashMap<String, usize>,
    total: usize,
}

fn word_counts<'a>(texts: impl IntoIterator<Item = &'a str>) -> Counts {
    let mut by_word = std::collections::HashMap::new();
    let mut total = 0;
    for t in texts {
        for w in t
            .split(|c: char| !c.is_alphabetic())
            .filter(|w| !w.is_empty())
        {
            *by_word.entry(w.to_string()).or_insert(0) += 1;
            total += 1;
        }
    }
    Counts { by_word, total }
}

/// The share of the units' words (by use) that the reference has.
fn coverage(units: &Counts, reference: &Counts) -> f64 {
    let known: usize = units
        .by_word
        .iter()
        .filter(|(w, _)| reference.by_word.contains_key(w.as_str()))
        .map(|(_, n)| n)
        .sum();
    known as f64 / units.total.max(1) as f64
}

/// Words used at least `min_count` times in `units`, written in lower case (names are not style),
/// and at least `min_ratio` times as often there as in `reference`; at most `max`, the most
/// over-used first.
fn over_used(
    units: &Counts,
    reference: &Counts,
    min_count: usize,
    min_ratio: f64,
    max: usize,
) -> Vec<String> {
    let mut scored: Vec<(f64, &String)> = units
        .by_word
        .iter()
        .filter(|(w, n)| **n >= min_count && w.chars().next().is_some_and(char::is_lowercase))
        .map(|(w, &n)| {
            let r = reference.by_word.get(w).copied().unwrap_or(0);
            let ratio = (n as f64 / units.total.max(1) as f64)
                / ((r + 1) as f64 / reference.total.max(1) as f64);
            (ratio, w)
        })
        .filter(|(ratio, _)| *ratio >= min_ratio)
        .collect();
    scored.sort_by(|x, y| y.0.total_cmp(&x.0).then_with(|| x.1.cmp(y.1)));
    scored
        .into_iter()
        .take(max)
        .map(|(_, w)| w.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archaic_english_gives_its_archaic_words_and_keeps_names() {
        // 200 verses of the American Standard Version, the repository's example corpus.
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/bible_bbe_asv/train.jsonl"
        );
        let units: Vec<String> = std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .take(200)
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["target"].to_string())
            .collect();
        let s = StyleWords::make(units.iter().map(String::as_str), "auto").unwrap();
        assert_eq!(s.language.as_deref(), Some("en"));
        for w in ["unto", "thou", "thy", "shalt", "hath", "ye", "saith"] {
            assert!(
                s.words.iter().any(|x| x == w),
                "{w} missing from {:?}",
                s.words
            );
        }
        // Names, sentence starts and plain words are not style words.
        for w in [
            "jehovah", "Jehovah", "israel", "And", "the", "and", "of", "said", "people",
        ] {
            assert!(!s.words.iter().any(|x| x == w), "{w} in {:?}", s.words);
        }
        assert_eq!(s.words[0], "shall", "{:?}", s.words);
        assert_eq!(s.units, 200);
        // The same units give the same list, so the same pseudo-sources.
        let again = StyleWords::make(units.iter().map(String::as_str), "en").unwrap();
        assert_eq!(again.digest(), s.digest());
    }

    #[test]
    fn no_reference_no_style_words_and_the_list_is_kept() {
        let units = ["Le chat est sur la table et il dort depuis le matin."; 10];
        let s = StyleWords::make(units, "auto").unwrap();
        assert_eq!(s.language, None);
        assert!(s.words.is_empty());
        assert!(StyleWords::make(units, "fr").unwrap().words.is_empty());
        assert!(StyleWords::make(units, "xx").is_err());

        let d = tempfile::tempdir().unwrap();
        assert!(StyleWords::load(d.path()).is_none());
        s.save(d.path()).unwrap();
        assert_eq!(StyleWords::load(d.path()), Some(s.clone()));
        std::fs::write(d.path().join(FILE_NAME), b"{damaged").unwrap();
        assert!(StyleWords::load(d.path()).is_none());

        assert!(StyleWords::due(None, 1, "auto"));
        assert!(!StyleWords::due(None, 0, "auto"));
        assert!(!StyleWords::due(Some(&s), 19, "auto"));
        assert!(StyleWords::due(Some(&s), 20, "auto"));
        assert!(StyleWords::due(Some(&s), 10, "en"));
    }
}
