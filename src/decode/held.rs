//! What of a streamed rewrite can be shown yet: a line that lacks a kept name is made again
//! (`TextEvent::Retract`), so a stream that cannot take text back holds the line in progress.

/// The text of a streamed rewrite not passed on yet: with `hold`, the line being generated,
/// which may still be taken back; without, nothing.
pub struct HeldLine {
    hold: bool,
    line: String,
}

impl HeldLine {
    /// `hold`: the stream may take text back (an adapter's rewrite with the names check).
    pub fn new(hold: bool) -> Self {
        Self {
            hold,
            line: String::new(),
        }
    }

    /// What of `piece` can be passed on now: all of it, or the lines it completes.
    pub fn push(&mut self, piece: &str) -> Option<String> {
        if !self.hold {
            return Some(piece.to_string());
        }
        self.line.push_str(piece);
        let end = self.line.rfind('\n')? + 1;
        let rest = self.line.split_off(end);
        Some(std::mem::replace(&mut self.line, rest))
    }

    /// The last `n` bytes are taken back (they were never passed on).
    pub fn retract(&mut self, n: usize) {
        self.line.truncate(self.line.len().saturating_sub(n));
    }

    /// The last line, once the rewrite is done.
    pub fn finish(&mut self) -> Option<String> {
        Some(std::mem::take(&mut self.line)).filter(|l| !l.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_line_passes_on_whole_lines_and_drops_what_is_taken_back() {
        let mut h = HeldLine::new(true);
        assert_eq!(h.push("The Lord "), None);
        h.retract("Lord ".len());
        assert_eq!(h.push("God said.\nAnd "), Some("The God said.\n".into()));
        assert_eq!(h.push("so"), None);
        assert_eq!(h.finish(), Some("And so".into()));
        assert_eq!(h.finish(), None);
        let mut open = HeldLine::new(false);
        assert_eq!(open.push("as it comes"), Some("as it comes".into()));
        assert_eq!(open.finish(), None);
    }
}
