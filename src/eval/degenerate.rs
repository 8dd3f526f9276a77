//! Degenerate rewrites: a loop (a 4-word sequence repeated 3 or more times) or a run far past
//! the source (more than twice its words plus 8).

use std::collections::HashMap;

/// Whether `output`, a rewrite of `source`, is degenerate: more than twice the source's words
/// plus 8, or a 4-word sequence (case and punctuation around words ignored) that occurs 3 times
/// or more.
pub fn is_degenerate(output: &str, source: &str) -> bool {
    let words: Vec<String> = output
        .split_whitespace()
        .map(|w| {
            w.trim_matches(|c: char| !c.is_alphanumeric())
                .to_lowercase()
        })
        .collect();
    if words.len() > 2 * source.split_whitespace().count() + 8 {
        return true;
    }
    let mut counts: HashMap<&[String], usize> = HashMap::new();
    for w in words.windows(4) {
        let c = counts.entry(w).or_insert(0);
        *c += 1;
        if *c >= 3 {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loops_and_runaways_are_degenerate() {
        let src = "And you have heard the voice of the Lord.";
        let looped = "And thou hast heard the voice of the Lord, and hast heard the voice of \
                      the Lord, and hast heard the voice of the Lord.";
        assert!(is_degenerate(looped, src));
        assert!(is_degenerate(
            &"word ".repeat(30),
            "one two three four five six"
        ));
        assert!(!is_degenerate(
            "And thou hast heard the voice of the Lord.",
            src
        ));
        // Twice is not a loop.
        assert!(!is_degenerate(
            "the voice of the Lord and the voice of the Lord",
            "the voice of the Lord and the voice of the Lord"
        ));
        // Exactly twice the source's words plus 8 is still allowed.
        assert!(!is_degenerate(&"a b c d e ".repeat(2), "x"));
        assert!(is_degenerate("a b c d e f g h i j k", "x"));
    }
}
