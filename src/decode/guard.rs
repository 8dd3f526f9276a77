//! The repetition guards: a rewrite never loops. A run of [`N`] tokens may occur in the output
//! as often as in the source (at least once), never more; the token that would complete one
//! more occurrence is banned. A run of [`WORDS`] words (what the degenerate-output measure
//! counts) may occur twice, or as often as in the source: the word that would make a third is
//! banned where it starts.

use std::collections::HashMap;

use crate::model::Token;

/// Length of the guarded runs, in tokens.
pub const N: usize = 5;

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

/// Watches runs of [`WORDS`] whitespace-separated words: a small model that has found a phrase
/// it likes ("and thou shalt not walk before …") can vary the tokens around it and slip past the
/// token guard while repeating the words.
pub struct WordGuard {
    source: HashMap<Vec<String>, u32>,
}

impl WordGuard {
    pub fn new(source: &str) -> Self {
        let words: Vec<&str> = source.split_whitespace().collect();
        let mut counts = HashMap::new();
        for w in words.windows(WORDS) {
            *counts
                .entry(w.iter().map(|s| s.to_string()).collect())
                .or_insert(0) += 1;
        }
        Self { source: counts }
    }

    /// Words that must not start next in `output` (whose last word is complete if the next
    /// token starts a new one): those that would make the run ending with them occur a third
    /// time, or more often than in the source.
    pub fn banned_words(&self, output: &str) -> Vec<String> {
        let words: Vec<&str> = output.split_whitespace().collect();
        if words.len() < WORDS {
            return Vec::new();
        }
        let ctx = &words[words.len() - (WORDS - 1)..];
        let mut seen: HashMap<&str, u32> = HashMap::new();
        for w in words.windows(WORDS) {
            if &w[..WORDS - 1] == ctx {
                *seen.entry(w[WORDS - 1]).or_insert(0) += 1;
            }
        }
        seen.into_iter()
            .filter(|(next, n)| {
                let mut run: Vec<String> = ctx.iter().map(|s| s.to_string()).collect();
                run.push(next.to_string());
                *n >= self.source.get(&run).copied().unwrap_or(0).max(2)
            })
            .map(|(next, _)| next.to_string())
            .collect()
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
        assert_eq!(g.banned_words(out), vec!["walk".to_string()]);
        assert!(g
            .banned_words("and thou shalt not walk before me, and thou shalt not")
            .is_empty());
        // What the source itself repeats three times may come back three times.
        let src = "a b c d, a b c d, a b c d, x";
        assert!(WordGuard::new(src)
            .banned_words("a b c d, a b c d, a b c")
            .is_empty());
        assert_eq!(
            WordGuard::new(src).banned_words("a b c d, a b c d, a b c d, a b c"),
            vec!["d,".to_string()]
        );
    }
}
