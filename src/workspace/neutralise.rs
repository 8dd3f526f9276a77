//! Neutralisation: a pseudo-source for a unit of the user's own writing, made by the base
//! model's own expectations. Where the model, reading the unit, is confident of one word and the
//! user wrote a word it found far less likely ("unto" where it expects "to", "hath" where it
//! expects "has"), the word is replaced by the model's; every other word is kept. The pair
//! (neutralised unit → unit) teaches the adapter to put the user's words back where the plain
//! model would not write them, which is where a personal style shows. Names and content words are
//! kept: the model is not confident of any one word there.
//!
//! Measured on Bible prose (BENCHMARKS.md, "Learning from prose"), that rule mostly swaps function
//! words (the model in context expects the archaic words too) and carries little style: an option
//! (`pseudo_sources = "neutralise"`). Given the workspace's style words ([`super::style_words`]),
//! only those are replaced, by the model's best word that is not one: the default
//! (`pseudo_sources = "style-words"`), measured in BENCHMARKS.md, "Style words".

use anyhow::Result;

use crate::logspace::{argmax, log_softmax};
use crate::model::{Session, Token};

/// Changes whenever the rule or its settings change, so that cached pseudo-sources made another
/// way are not reused.
pub const VERSION: &str = "neutralise-v1";

/// When a word is replaced.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Text read before the unit (plain prose sets a plain register for the model's guesses).
    pub context: String,
    /// The model's top word must have at least this probability.
    pub confidence: f32,
    /// The user's word (its first token) must be at most this share of the top word's probability.
    pub ratio: f32,
    /// The user's word must be among the model's this many likeliest tokens: a near alternative
    /// in the model's eyes, not content the model could not guess (names, facts).
    pub max_rank: usize,
    /// Passes: the second reads the first pass's output, so a replaced word no longer primes the
    /// style of the words after it.
    pub passes: usize,
    /// Style words (lower case; [`super::style_words`]). When given, only these are replaced, by
    /// the model's likeliest word of the same shape that is not one of them, if it has at least
    /// `confidence`, whatever the model expected there: reading the unit, the model expects the
    /// style's own words too. An empty list replaces nothing.
    pub style_words: Option<std::collections::HashSet<String>>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            context: String::new(),
            confidence: 0.3,
            ratio: 0.1,
            max_rank: 10,
            passes: 2,
            style_words: None,
        }
    }
}

/// What a token's text is, for grouping tokens into words.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Piece {
    /// A letter-led piece after a space (or at the start): begins a word.
    WordStart,
    /// A letter-led piece glued to the previous one: continues a word.
    WordPart,
    /// Anything else (punctuation, digits, spaces): never replaced.
    Other,
}

fn piece_kind(text: &str, first: bool) -> Piece {
    let trimmed = text.strip_prefix(' ');
    let body = trimmed.unwrap_or(text);
    match body.chars().next() {
        Some(c) if c.is_alphabetic() && body.chars().all(char::is_alphabetic) => {
            if trimmed.is_some() || first {
                Piece::WordStart
            } else {
                Piece::WordPart
            }
        }
        _ => Piece::Other,
    }
}

/// What the model expected where a word starts.
struct Guess {
    best: Token,
    p_best: f32,
    p_own: f32,
    /// How many tokens the model found likelier than the one written.
    own_rank: usize,
}

impl Guess {
    fn of(logits: &[f32], own: Token) -> Self {
        let mut lp = logits.to_vec();
        log_softmax(&mut lp);
        let best = argmax(&lp);
        let own_lp = lp[own as usize];
        Self {
            best: best as Token,
            p_best: lp[best].exp(),
            p_own: own_lp.exp(),
            own_rank: lp.iter().filter(|&&x| x > own_lp).count(),
        }
    }
}

/// The neutral form of `unit` (the unit itself when nothing is replaced, or when it does not fit
/// one batch of the session).
pub fn neutralise(session: &mut Session, unit: &str, settings: &Settings) -> Result<String> {
    let mut text = unit.to_string();
    for _ in 0..settings.passes.max(1) {
        let next = one_pass(session, &text, settings)?;
        if next == text {
            break;
        }
        text = next;
    }
    Ok(text)
}

fn one_pass(session: &mut Session, unit: &str, s: &Settings) -> Result<String> {
    let model = session.model().clone();
    let unit_tokens = model.tokenize(unit)?;
    let mut tokens: Vec<Token> = model.bos().into_iter().collect();
    if !s.context.is_empty() {
        tokens.extend(model.tokenize(&s.context)?);
    }
    let start = tokens.len();
    tokens.extend_from_slice(&unit_tokens);
    if unit_tokens.len() < 2 || tokens.len() > session.n_batch() {
        return Ok(unit.to_string());
    }
    let pieces: Vec<String> = unit_tokens
        .iter()
        .map(|&t| String::from_utf8_lossy(&model.token_bytes(t)).into_owned())
        .collect();
    let kinds: Vec<Piece> = pieces
        .iter()
        .enumerate()
        .map(|(i, p)| piece_kind(p, i == 0))
        .collect();
    // The model's guess for each word start after the first (with style words given, each that
    // begins one: the LM head runs only there), from the position before it.
    let word_at = |i: usize| -> String {
        let end = (i + 1..unit_tokens.len())
            .find(|&e| kinds[e] != Piece::WordPart)
            .unwrap_or(unit_tokens.len());
        pieces[i..end].concat().trim().to_lowercase()
    };
    let asked: Vec<usize> = (1..unit_tokens.len())
        .filter(|&i| kinds[i] == Piece::WordStart)
        .filter(|&i| {
            s.style_words
                .as_ref()
                .is_none_or(|w| w.contains(&word_at(i)))
        })
        .map(|i| start + i - 1)
        .collect();
    if asked.is_empty() {
        return Ok(unit.to_string());
    }
    let mut guesses: std::collections::HashMap<usize, Guess> = Default::default();
    // With style words: the model's likeliest word start of the same shape that is not one.
    let mut plain: std::collections::HashMap<usize, (Token, f32)> = Default::default();
    let spaced: Vec<bool> = pieces.iter().map(|p| p.starts_with(' ')).collect();
    session.logits_at(&tokens, &asked, |p, logits| {
        let at = p + 1 - start;
        let Some(style) = &s.style_words else {
            guesses.insert(at, Guess::of(logits, unit_tokens[at]));
            return;
        };
        let mut lp = logits.to_vec();
        log_softmax(&mut lp);
        // The best candidates are among the 64 likeliest tokens, or the model has no plain word
        // to offer there.
        let k = 64.min(lp.len() - 1);
        let mut order: Vec<usize> = (0..lp.len()).collect();
        order.select_nth_unstable_by(k, |&x, &y| lp[y].total_cmp(&lp[x]));
        order.truncate(k);
        order.sort_by(|&x, &y| lp[y].total_cmp(&lp[x]));
        for t in order {
            let text = String::from_utf8_lossy(&model.token_bytes(t as Token)).into_owned();
            if piece_kind(&text, false) != Piece::WordStart || text.starts_with(' ') != spaced[at] {
                continue;
            }
            // Neither a style word nor the written word's own first piece ("bre" of "brethren").
            if t as Token == unit_tokens[at] || style.contains(text.trim().to_lowercase().as_str())
            {
                continue;
            }
            plain.insert(at, (t as Token, lp[t].exp()));
            break;
        }
    })?;
    let mut out = String::with_capacity(unit.len());
    let mut i = 0;
    while i < unit_tokens.len() {
        // A word: a word start and the word parts glued to it.
        let mut end = i + 1;
        if kinds[i] == Piece::WordStart {
            while end < unit_tokens.len() && kinds[end] == Piece::WordPart {
                end += 1;
            }
        }
        let replacement = if s.style_words.is_some() {
            plain.get(&i).and_then(|(best, p)| {
                (*p >= s.confidence)
                    .then(|| String::from_utf8_lossy(&model.token_bytes(*best)).into_owned())
            })
        } else {
            guesses.get(&i).and_then(|g| {
                let best_text = String::from_utf8_lossy(&model.token_bytes(g.best)).into_owned();
                let same_shape = best_text.starts_with(' ') == pieces[i].starts_with(' ')
                    && piece_kind(&best_text, false) == Piece::WordStart;
                (same_shape
                    && g.best != unit_tokens[i]
                    && g.own_rank < s.max_rank
                    && g.p_best >= s.confidence
                    && g.p_own <= s.ratio * g.p_best)
                    .then_some(best_text)
            })
        };
        match replacement {
            Some(r) => out.push_str(&r),
            None => pieces[i..end].iter().for_each(|p| out.push_str(p)),
        }
        i = end;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_group_into_words() {
        assert_eq!(piece_kind(" unto", false), Piece::WordStart);
        assert_eq!(piece_kind("And", true), Piece::WordStart);
        assert_eq!(piece_kind("ake", false), Piece::WordPart);
        assert_eq!(piece_kind(",", false), Piece::Other);
        assert_eq!(piece_kind(" 12", false), Piece::Other);
        assert_eq!(piece_kind(" ", false), Piece::Other);
    }
}
