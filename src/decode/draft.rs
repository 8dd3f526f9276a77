//! Drafts: tokens a generation is likely to write again, fed to the model several at a time and
//! kept only as far as the generation's own picks agree with them. A rewrite keeps much of its
//! source, and a line made again after it dropped a name (docs/method.md §8.7) mostly repeats
//! its earlier attempt up to where that one went wrong, and often joins it again after; those
//! tokens then cost a share of one batched decode instead of one decode each. The output is the
//! one token-by-token generation would give (up to the rounding of a batched decode): every
//! token is still picked from its own state.

use std::collections::VecDeque;

use anyhow::Result;

use crate::model::{Session, Step, Token};

/// The most draft tokens fed in one decode. With the generation's own token that makes 16
/// output rows, not more than the daemon lets a context keep (`SHED_ABOVE_ROWS`).
const MAX_DRAFT: usize = 15;

/// Draft tokens fed at first: a draft that is picked whole doubles it (to [`MAX_DRAFT`]), one
/// that is not halves it, so a draft the generation has left costs little.
const FIRST_DRAFT: usize = 4;

/// Tokens of the output that must match a draft before the draft's next tokens are proposed,
/// where the output is not at the draft's own position.
const REJOIN: usize = 3;

/// Earlier token sequences a generation may repeat.
#[derive(Default)]
pub struct Drafts {
    seqs: Vec<Vec<Token>>,
}

impl Drafts {
    /// Drafts from the source (its tokens as the output would hold them): a rewrite keeps much
    /// of its source, and the plain model copies it nearly whole.
    pub fn from_source(tokens: Vec<Token>) -> Self {
        let mut d = Self::default();
        d.push(tokens);
        d
    }

    /// Adds a sequence to draft from.
    pub fn push(&mut self, tokens: Vec<Token>) {
        if !tokens.is_empty() {
            self.seqs.push(tokens);
        }
    }

    /// Up to `k` tokens proposed to follow `out` (the output so far): what a draft holds after
    /// the same tokens at the same place, else after its last occurrence of the output's last
    /// [`REJOIN`] tokens.
    pub fn propose(&self, out: &[Token], k: usize) -> &[Token] {
        if k == 0 || out.is_empty() {
            return &[];
        }
        let take = |d: &'_ [Token], from: usize| -> Option<usize> {
            (from < d.len()).then_some((from + k).min(d.len()))
        };
        for d in &self.seqs {
            if d.starts_with(out) {
                if let Some(to) = take(d, out.len()) {
                    return &d[out.len()..to];
                }
            }
        }
        if out.len() < REJOIN {
            return &[];
        }
        let tail = &out[out.len() - REJOIN..];
        for d in &self.seqs {
            if let Some(i) = d.windows(REJOIN).rposition(|w| w == tail) {
                if let Some(to) = take(d, i + REJOIN) {
                    return &d[i + REJOIN..to];
                }
            }
        }
        &[]
    }
}

/// Feeds a generation's tokens, a draft's several at a time: holds the draft tokens fed but
/// not yet picked, with the model's state after each.
pub struct Feeder {
    ahead: VecDeque<(Token, Step)>,
    /// Draft tokens to feed next time.
    len: usize,
    /// Tokens fed that the generation picked (for `pema bench`'s account of what drafts save).
    pub accepted: usize,
    /// Draft tokens fed that it did not pick.
    pub wasted: usize,
}

impl Default for Feeder {
    fn default() -> Self {
        Self {
            ahead: VecDeque::new(),
            len: FIRST_DRAFT,
            accepted: 0,
            wasted: 0,
        }
    }
}

impl Feeder {
    /// Feeds the last token of `out` (the output so far, that token included) and returns the
    /// model's state after it: from the draft fed earlier when the draft had that token, else
    /// from a decode of it, with up to `room` more draft tokens after it.
    pub fn feed(
        &mut self,
        session: &mut Session,
        drafts: &Drafts,
        out: &[Token],
        room: usize,
    ) -> Result<Step> {
        let token = *out.last().expect("a token to feed");
        if let Some((t, _)) = self.ahead.front() {
            if *t == token {
                self.accepted += 1;
                if self.ahead.len() == 1 {
                    self.len = (2 * self.len).min(MAX_DRAFT);
                }
                return Ok(self.ahead.pop_front().expect("a fed token").1);
            }
            self.wasted += self.ahead.len();
            self.len = (self.len / 2).max(1);
            session.rewind(self.ahead.len())?;
            self.ahead.clear();
        }
        let draft = drafts.propose(out, room.min(self.len));
        if draft.is_empty() {
            return session.advance(token);
        }
        let mut tokens = Vec::with_capacity(draft.len() + 1);
        tokens.push(token);
        tokens.extend_from_slice(draft);
        let mut steps = session.advance_many(&tokens)?.into_iter();
        let first = steps.next().expect("a state per token");
        self.ahead.extend(draft.iter().copied().zip(steps));
        Ok(first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proposes_what_follows_at_the_same_place_then_after_a_rejoin() {
        let mut d = Drafts::default();
        d.push(vec![1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(d.propose(&[1, 2], 3), &[3, 4, 5]);
        assert_eq!(d.propose(&[1, 2], 30), &[3, 4, 5, 6, 7, 8]);
        // Diverged at the second token: nothing until three tokens agree again.
        assert_eq!(d.propose(&[1, 9], 3), &[] as &[Token]);
        assert_eq!(d.propose(&[1, 9, 4, 5], 3), &[] as &[Token]);
        assert_eq!(d.propose(&[1, 9, 4, 5, 6], 3), &[7, 8]);
        // At the draft's end, nothing.
        assert_eq!(d.propose(&[1, 2, 3, 4, 5, 6, 7, 8], 3), &[] as &[Token]);
        assert_eq!(d.propose(&[], 3), &[] as &[Token]);
        assert_eq!(d.propose(&[1], 0), &[] as &[Token]);
        assert!(Drafts::default().propose(&[1], 3).is_empty());
    }
}
