//! Whether a rewrite kept the source's names: the check behind a rewrite's back-off
//! (docs/method.md §8.7). A rewrite that writes another sentence almost always drops a name, a
//! number or an identifier of its source ("Then Nathan said to Bath-sheba …" → "Then said
//! Adonijah …"), and a style almost never does. Which capitalised words a style *does* change
//! ("the Lord" → "Jehovah") is learned from the workspace's own held-out pairs, and so is
//! whether the check applies at all: a translation, which renames things, turns it off.
//!
//! A leaf that the adapter (which stores what was learned) and the decoder (which checks) both
//! use, so that neither imports the other.

use std::collections::{HashMap, HashSet};

/// A style that keeps names: learned from pairs by [`KeptNames::learn`], stored in the adapter.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct KeptNames {
    /// Names the pairs' targets usually change (kept in under half of the pairs whose source
    /// holds them, seen in at least [`MIN_SEEN`]), in lower case: a rewrite may drop them.
    pub changed: Vec<String>,
    /// Share of the pairs with names whose target keeps every other name.
    pub share_kept: f64,
    /// Pairs with at least one name, among those learned from.
    pub pairs_with_names: usize,
}

/// A name must be seen in this many pairs before the pairs can say a style changes it.
pub const MIN_SEEN: usize = 3;
/// The check applies only when at least this share of the workspace's own pairs (with names)
/// keep all their names: otherwise the style itself renames things (a translation does).
pub const MIN_SHARE_KEPT: f64 = 0.8;
/// And only when this many pairs hold names, so that the share means something.
pub const MIN_PAIRS: usize = 10;

impl KeptNames {
    /// What `pairs` (source, target) say about names; None when the check should not apply.
    pub fn learn<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Option<Self> {
        let pairs: Vec<(Vec<String>, HashSet<String>)> = pairs
            .into_iter()
            .map(|(s, t)| {
                let lower = |v: Vec<String>| -> Vec<String> {
                    v.into_iter().map(|w| w.to_lowercase()).collect()
                };
                (
                    lower(names(s)),
                    words(t).iter().map(|w| w.to_lowercase()).collect(),
                )
            })
            .filter(|(n, _)| !n.is_empty())
            .collect();
        let mut seen: HashMap<&str, (usize, usize)> = HashMap::new();
        for (ns, target) in &pairs {
            for n in ns {
                let e = seen.entry(n.as_str()).or_default();
                e.0 += 1;
                e.1 += usize::from(target.contains(n));
            }
        }
        let mut changed: Vec<String> = seen
            .iter()
            .filter(|(_, &(s, k))| s >= MIN_SEEN && 2 * k < s)
            .map(|(n, _)| n.to_string())
            .collect();
        changed.sort();
        let rule = |c: &[String]| {
            let kept = pairs
                .iter()
                .filter(|(ns, t)| ns.iter().all(|n| c.contains(n) || t.contains(n)))
                .count();
            kept as f64 / pairs.len().max(1) as f64
        };
        let share_kept = rule(&changed);
        let out = Self {
            changed,
            share_kept,
            pairs_with_names: pairs.len(),
        };
        (out.pairs_with_names >= MIN_PAIRS && share_kept >= MIN_SHARE_KEPT).then_some(out)
    }

    /// Whether `output` keeps every name of `source` that this style does not change. Case is
    /// ignored: a style may write "the Temple" as "the temple".
    pub fn keeps(&self, source: &str, output: &str) -> bool {
        let out: HashSet<String> = words(output).iter().map(|w| w.to_lowercase()).collect();
        names(source)
            .iter()
            .map(|n| n.to_lowercase())
            .all(|n| out.contains(&n) || self.changed.binary_search(&n).is_ok())
    }
}

/// How short a rewrite of this style may come out: one much shorter than its source, against
/// what the workspace's own pairs do, has lost a clause or become another sentence ("Then I
/// said to them, Whoever has any gold, let him take it off; …" → "Then I said unto them, Who
/// am I that I can speak with them, and they speak not?"), names or not.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct KeptLength {
    /// The [`LENGTH_PERCENTILE`] of target words over source words among the pairs learned
    /// from: a rewrite with fewer words than this share of its source's is made again.
    pub min_ratio: f64,
    /// Pairs it was learned from (those with at least [`MIN_SOURCE_WORDS`] source words).
    pub pairs: usize,
}

/// Which of the pairs' own length ratios bounds a rewrite's (the 5th percentile: one pair in
/// twenty of the style itself is shorter).
pub const LENGTH_PERCENTILE: f64 = 0.05;
/// Shorter sources are not checked: a word more or less swings their ratio too much.
pub const MIN_SOURCE_WORDS: usize = 8;
/// A rewrite must fall this many words short of the bound to count: the check is for a lost
/// clause, not a lost word (which the plain model's copy, the last fallback, would pay for
/// with the whole line's style).
pub const SLACK_WORDS: usize = 3;

impl KeptLength {
    /// What `pairs` (source, target) say about length; None with fewer than [`MIN_PAIRS`] of
    /// them long enough to count.
    pub fn learn<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Option<Self> {
        let mut ratios: Vec<f64> = pairs
            .into_iter()
            .map(|(s, t)| (word_count(s), word_count(t)))
            .filter(|&(s, _)| s >= MIN_SOURCE_WORDS)
            .map(|(s, t)| t as f64 / s as f64)
            .collect();
        if ratios.len() < MIN_PAIRS {
            return None;
        }
        ratios.sort_by(f64::total_cmp);
        let i = ((ratios.len() - 1) as f64 * LENGTH_PERCENTILE).floor() as usize;
        Some(Self {
            min_ratio: ratios[i],
            pairs: ratios.len(),
        })
    }

    /// Whether `output` is no shorter than this style makes a rewrite of `source`, give or
    /// take [`SLACK_WORDS`].
    pub fn keeps(&self, source: &str, output: &str) -> bool {
        let n = word_count(source);
        n < MIN_SOURCE_WORDS
            || (word_count(output) + SLACK_WORDS) as f64 >= self.min_ratio * n as f64
    }
}

/// Words as the degenerate-output measure counts them: runs between whitespace.
fn word_count(text: &str) -> usize {
    text.split_whitespace().count()
}

/// The words of `text`: runs of letters, digits, `_`, `'` and `-`.
fn words(text: &str) -> HashSet<String> {
    split(text)
        .into_iter()
        .filter(|t| !is_stop(t))
        .map(str::to_string)
        .collect()
}

fn is_stop(t: &str) -> bool {
    t.len() == 1 && ".!?:;,".contains(t)
}

/// Tokens: words (as [`words`]) and the punctuation that can end a clause.
fn split(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices() {
        let word = c.is_alphanumeric() || matches!(c, '_' | '\'' | '-' | '’');
        match (word, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                out.push(&text[s..i]);
                start = None;
            }
            _ => {}
        }
        if !word && ".!?:;,".contains(c) {
            out.push(&text[i..i + c.len_utf8()]);
        }
    }
    if let Some(s) = start {
        out.push(&text[s..]);
    }
    out
}

/// The names of `text`, each once: words that hold a digit or an `_` (numbers, identifiers),
/// and capitalised words inside a clause. A capitalised word first in the text or after
/// punctuation may be any word starting a sentence or a quotation ("He said, Get up").
pub fn names(text: &str) -> Vec<String> {
    let toks = split(text);
    let mut out: Vec<String> = Vec::new();
    for (i, t) in toks.iter().enumerate() {
        if is_stop(t) {
            continue;
        }
        let first = t.chars().next().unwrap_or(' ');
        let sentence_start = i == 0 || is_stop(toks[i - 1]);
        let name = t.chars().any(|c| c.is_ascii_digit() || c == '_')
            || (first.is_uppercase() && !sentence_start);
        if name && !out.iter().any(|o| o == t) {
            out.push(t.to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_skip_sentence_starts_and_keep_numbers_and_identifiers() {
        assert_eq!(
            names("Then Nathan said to Bath-sheba, Has it come? Yes, 3 of my_var and David."),
            ["Nathan", "Bath-sheba", "3", "my_var", "David"]
        );
        assert!(names("plain words only.").is_empty());
    }

    #[test]
    fn learns_which_names_a_style_changes_and_checks_the_others() {
        let mut pairs = Vec::new();
        for i in 0..12 {
            pairs.push((
                format!("And Moses{i} said to the Lord, Go."),
                format!("And Moses{i} said unto Jehovah, Go."),
            ));
        }
        let k = KeptNames::learn(pairs.iter().map(|(s, t)| (s.as_str(), t.as_str()))).unwrap();
        assert_eq!(k.changed, ["lord"]);
        assert_eq!(k.pairs_with_names, 12);
        assert!((k.share_kept - 1.0).abs() < 1e-9);
        assert!(k.keeps(
            "Then Aaron spoke to the Lord.",
            "Then spake Aaron unto Jehovah."
        ));
        assert!(!k.keeps(
            "Then Aaron spoke to the Lord.",
            "Then spake Moses unto Jehovah."
        ));
        // Case does not: a style may lower-case a noun.
        assert!(k.keeps("He saw the Sea.", "He saw the sea."));
        assert!(!k.keeps("He saw the Sea.", "He saw the lake."));
    }

    #[test]
    fn a_rewrite_shorter_than_the_style_makes_them_is_caught() {
        // 21 pairs of 10 source words: targets of 5 and 7 words, then 8 to 11: the 5th
        // percentile is the second shortest.
        let pairs: Vec<(String, String)> = (0..21)
            .map(|i| {
                let n = match i {
                    0 => 5,
                    1 => 7,
                    _ => 8 + i % 4,
                };
                ("w ".repeat(10), "t ".repeat(n))
            })
            .collect();
        let k = KeptLength::learn(pairs.iter().map(|(s, t)| (s.as_str(), t.as_str()))).unwrap();
        assert_eq!(k.pairs, 21);
        assert!((k.min_ratio - 0.7).abs() < 1e-9, "{k:?}");
        // 7 words of 10 is the bound; 3 words fewer still pass, 4 do not.
        let source = "one two three four five six seven eight nine ten";
        assert!(k.keeps(source, "a b c d"));
        assert!(!k.keeps(source, "a b c"));
        // Short sources are not checked.
        assert!(k.keeps("one two three four five six seven", "a"));
        // Too few long pairs say nothing.
        let short: Vec<(&str, &str)> = vec![("a b c", "a b"); 30];
        assert_eq!(KeptLength::learn(short), None);
    }

    #[test]
    fn a_style_that_renames_things_turns_the_check_off() {
        let pairs: Vec<(String, String)> = (0..20)
            .map(|i| {
                (
                    format!("On Saturday{i} we met."),
                    format!("Am Samstag{i} trafen wir uns."),
                )
            })
            .collect();
        assert!(KeptNames::learn(pairs.iter().map(|(s, t)| (s.as_str(), t.as_str()))).is_none());
        // Too few pairs with names say nothing.
        let few = [("Ask Anna.", "Ask Anna."), ("Fine.", "Fine.")];
        assert!(KeptNames::learn(few).is_none());
    }
}
