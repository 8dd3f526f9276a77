//! The repetition guards: a rewrite never loops. A run of [`N`] tokens may occur in the output
//! as often as in the source (at least once), never more; the token that would complete one
//! more occurrence is banned. A run of [`WORDS`] words (what the degenerate-output measure
//! counts) may occur twice, or as often as in the source: the word that would make a third is
//! banned where it starts.

use std::collections::HashMap;

use crate::model::Token;

/// Length of the guarded runs, in tokens.
pub const N: usize = 5;

/// The token guard: counts every [`N`]-token run of the source and of the output so far, and
/// bans the next token that would make a run occur more often than in the source (once is
/// always allowed).
pub struct RepeatGuard {
    source: HashMap<[Token; N], u32>,
    output: HashMap<[Token; N], u32>,
    /// What followed each (N − 1)-token context in the output.
    next: HashMap<[Token; N - 1], Vec<Token>>,
    tail: Vec<Token>,
}

fn grams(tokens: &[Token]) -> impl Iterator<Item = [Token; N]> + '_ {
    tokens.windows(N).map(|w| w.try_into().unwrap())
}

impl RepeatGuard {
    /// A guard for a rewrite of `source` (its tokens as the output would hold them), with no
    /// output yet.
    pub fn new(source: &[Token]) -> Self {
        let mut counts = HashMap::new();
        for g in grams(source) {
            *counts.entry(g).or_insert(0) += 1;
        }
        Self {
            source: counts,
            output: HashMap::new(),
            next: HashMap::new(),
            tail: Vec::new(),
        }
    }

    /// Tokens that must not come next.
    pub fn banned(&self) -> Vec<Token> {
        if self.tail.len() < N - 1 {
            return Vec::new();
        }
        let ctx: [Token; N - 1] = self.tail[self.tail.len() - (N - 1)..].try_into().unwrap();
        let Some(next) = self.next.get(&ctx) else {
            return Vec::new();
        };
        next.iter()
            .copied()
            .filter(|&t| {
                let mut g = [0; N];
                g[..N - 1].copy_from_slice(&ctx);
                g[N - 1] = t;
                self.output.get(&g).copied().unwrap_or(0)
                    >= self.source.get(&g).copied().unwrap_or(0).max(1)
            })
            .collect()
    }

    /// Records `t` as the output's next token.
    pub fn push(&mut self, t: Token) {
        self.tail.push(t);
        if self.tail.len() >= N {
            let g: [Token; N] = self.tail[self.tail.len() - N..].try_into().unwrap();
            *self.output.entry(g).or_insert(0) += 1;
            let ctx: [Token; N - 1] = g[..N - 1].try_into().unwrap();
            let e = self.next.entry(ctx).or_default();
            if !e.contains(&t) {
                e.push(t);
            }
        }
    }
}

/// Length of the word runs [`WordGuard`] watches.
pub const WORDS: usize = 4;

/// Watches runs of [`WORDS`] words, compared as the degenerate-output measure compares them
/// (case and surrounding punctuation ignored): a small model that has found a phrase it likes
/// varies the tokens around it ("ein Produkt für Sie über ein produkt für Sie …") and slips past
/// the token guard while repeating the words.
pub struct WordGuard {
    source: HashMap<Vec<String>, u32>,
}

fn norm(w: &str) -> String {
    w.trim_matches(|c: char| !c.is_alphanumeric())
        .to_lowercase()
}

impl WordGuard {
    /// A guard for a rewrite of `source`: counts its runs of [`WORDS`] words.
    pub fn new(source: &str) -> Self {
        let words: Vec<String> = source.split_whitespace().map(norm).collect();
        let mut counts = HashMap::new();
        for w in words.windows(WORDS) {
            *counts.entry(w.to_vec()).or_insert(0) += 1;
        }
        Self { source: counts }
    }

    /// Whether `piece` must not follow `output`: it starts or continues a word that would make
    /// the run of the [`WORDS`] − 1 words before it plus itself occur a third time (or more
    /// often than in the source). Any spelling of the word is caught, and so is its beginning,
    /// so the model cannot spell its way around the ban.
    pub fn vetoes(&self, output: &str, piece: &str) -> bool {
        let mut words: Vec<&str> = output.split_whitespace().collect();
        let partial = if piece.starts_with(char::is_whitespace)
            || output.is_empty()
            || output.ends_with(char::is_whitespace)
        {
            piece.split_whitespace().next().unwrap_or("").to_string()
        } else {
            let last = words.pop().unwrap_or("");
            format!("{last}{}", piece.split_whitespace().next().unwrap_or(""))
        };
        let partial = norm(&partial);
        if partial.is_empty() || words.len() < WORDS - 1 {
            return false;
        }
        let words: Vec<String> = words.iter().map(|w| norm(w)).collect();
        let ctx = &words[words.len() - (WORDS - 1)..];
        let mut seen: HashMap<&str, u32> = HashMap::new();
        for w in words.windows(WORDS) {
            if &w[..WORDS - 1] == ctx {
                *seen.entry(w[WORDS - 1].as_str()).or_insert(0) += 1;
            }
        }
        seen.into_iter().any(|(next, n)| {
            let mut run = ctx.to_vec();
            run.push(next.to_string());
            next.starts_with(&partial) && n >= self.source.get(&run).copied().unwrap_or(0).max(2)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(source: &[Token], wants: &[Token]) -> Vec<Token> {
        // Feeds `wants`, replacing any banned token by 99.
        let mut g = RepeatGuard::new(source);
        wants
            .iter()
            .map(|&t| {
                let t = if g.banned().contains(&t) { 99 } else { t };
                g.push(t);
                t
            })
            .collect()
    }

    #[test]
    fn a_loop_is_broken_at_its_second_turn() {
        let looped: Vec<Token> = [1, 2, 3, 4, 5].repeat(4);
        let got = run(&[], &looped);
        assert_eq!(&got[..9], &[1, 2, 3, 4, 5, 1, 2, 3, 4]);
        assert_eq!(got[9], 99);
    }

    #[test]
    fn what_the_source_repeats_may_be_repeated() {
        let twice: Vec<Token> = [1, 2, 3, 4, 5, 6].repeat(2);
        assert_eq!(run(&twice, &twice), twice);
        // ... but not a third time.
        let thrice: Vec<Token> = [1, 2, 3, 4, 5, 6].repeat(3);
        assert!(run(&twice, &thrice).contains(&99));
    }

    #[test]
    fn a_single_token_run_is_a_loop_too() {
        let got = run(&[], &[7; 8]);
        assert_eq!(&got[..5], &[7; 5]);
        assert_eq!(got[5], 99);
    }

    #[test]
    fn a_word_run_may_occur_twice_never_three_times() {
        let g = WordGuard::new("I will hear thee.");
        let out = "and thou shalt not walk before me, and thou shalt not walk before thee, and thou shalt not";
        assert!(g.vetoes(out, " walk"));
        assert!(g.vetoes(out, " Wa"), "nor its beginning");
        assert!(!g.vetoes(out, " go"));
        assert!(!g.vetoes(
            "and thou shalt not walk before me, and thou shalt not",
            " walk"
        ));
        // Case, punctuation and the way it is cut into tokens do not make a run new.
        let out = "ein Produkt für Sie über ein produkt für Sie, über ein Produkt für";
        assert!(g.vetoes(out, " sie"));
        assert!(g.vetoes(&format!("{out} S"), "ie,"));
        assert!(!g.vetoes(out, " Ihre"));
        // What the source itself repeats three times may come back three times.
        let src = "a b c d, a b c d, a b c d, x";
        assert!(!WordGuard::new(src).vetoes("a b c d, a b c d, a b c", " d"));
        assert!(WordGuard::new(src).vetoes("a b c d, a b c d, a b c d, a b c", " d"));
    }
}
