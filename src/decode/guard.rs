//! The repetition guard: a rewrite never loops. A run of [`N`] tokens may occur in the output
//! as often as in the source (at least once), never more; the token that would complete one
//! more occurrence is banned.

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
}
