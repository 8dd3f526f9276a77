//! The instruction template that turns a source text into a prompt. Memory and inference must use
//! the same one, so a memory records it and refuses to mix with another.

use anyhow::{bail, Result};

/// The slot a template fills with the source text.
pub const SOURCE_SLOT: &str = "{source}";

/// The preset a memory is built with unless told otherwise.
pub const DEFAULT_TEMPLATE: &str = "rewrite";

/// Templates shipped with pema, by name. Each ends at the colon: with Gemma's tokenizer a trailing
/// space becomes a lone space token after which the base model mostly writes markup (docs/method.md §5).
pub const PRESETS: &[(&str, &str)] = &[
    ("rewrite", "Rewrite the text in the house style:\n{source}\nRewritten:"),
    ("translate-de", "Translate this from English to German: \n{source}\nGerman:"),
    (
        "formal",
        "Convert the following informal sentence into a formal sentence: \nInformal: {source}\nFormal:",
    ),
];

/// An instruction template: text with exactly one `{source}` slot that makes a source into a
/// prompt, possibly after worked examples. It never ends in whitespace. A memory records its
/// template, and its keys are valid only for prompts made with that same template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    text: String,
}

impl Default for Template {
    fn default() -> Self {
        Self::new(PRESETS[0].1).expect("preset is valid")
    }
}

impl Template {
    /// A template from its text; refuses one without exactly one `{source}` slot or ending in
    /// whitespace.
    pub fn new(text: &str) -> Result<Self> {
        let n = text.matches(SOURCE_SLOT).count();
        if n != 1 {
            bail!("a template needs exactly one {SOURCE_SLOT} slot, this one has {n}: {text:?}");
        }
        if text.ends_with([' ', '\t']) {
            bail!(
                "the template ends in whitespace: end it at the colon instead (the target's first \
                 token carries its own space): {text:?}"
            );
        }
        Ok(Self {
            text: text.to_string(),
        })
    }

    /// A preset's name, or a literal template containing `{source}`.
    pub fn from_arg(arg: &str) -> Result<Self> {
        if let Some((_, t)) = PRESETS.iter().find(|(name, _)| *name == arg) {
            return Self::new(t);
        }
        if !arg.contains(SOURCE_SLOT) {
            let names: Vec<_> = PRESETS.iter().map(|(n, _)| *n).collect();
            bail!(
                "unknown template {arg:?}: use one of {} or a text with a {SOURCE_SLOT} slot",
                names.join(", ")
            );
        }
        Self::new(arg)
    }

    /// The template's text, worked examples included, `{source}` unfilled.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// This template after worked examples, each written out as the template would prompt it
    /// and answered by its target: the few-shot prompt a memory is built with and a rewrite
    /// uses, so that the base model is already rewriting faithfully under the adapter.
    pub fn with_examples(&self, examples: &[(String, String)]) -> Result<Self> {
        let mut text = String::new();
        for (s, t) in examples {
            if s.contains(SOURCE_SLOT) || t.contains(SOURCE_SLOT) {
                bail!("a worked example may not contain {SOURCE_SLOT}");
            }
            text.push_str(&Self::example(self, s, t));
        }
        text.push_str(&self.text);
        Self::new(&text)
    }

    /// One worked example as [`Template::with_examples`] writes it.
    pub fn example(&self, source: &str, target: &str) -> String {
        let mut text = self.prompt(&source.replace(['\r', '\n'], " "));
        text.push_str(&Self::target_text(target));
        text.push_str(Self::END);
        text
    }

    /// The worked examples in front of `base` in this template (what [`Template::with_examples`]
    /// put there), as (source, target); empty when this template is not `base` after examples.
    pub fn worked_examples(&self, base: &Template) -> Vec<(String, String)> {
        let Some(mut front) = self.text.strip_suffix(&base.text) else {
            return vec![];
        };
        let prefix = base.prefix();
        let suffix = &base.text[prefix.len() + SOURCE_SLOT.len()..];
        let mut out = vec![];
        while !front.is_empty() {
            let Some(rest) = front.strip_prefix(prefix) else {
                return vec![];
            };
            let Some(at) = rest.find(&format!("{suffix} ")) else {
                return vec![];
            };
            let source = &rest[..at];
            let rest = &rest[at + suffix.len() + 1..];
            let Some(end) = rest.find(Self::END) else {
                return vec![];
            };
            out.push((source.to_string(), rest[..end].to_string()));
            front = &rest[end + Self::END.len()..];
        }
        out
    }

    /// The text before the source: the same in every prompt (examples included).
    pub fn prefix(&self) -> &str {
        &self.text[..self.text.find(SOURCE_SLOT).expect("a template has a slot")]
    }

    /// The prompt for `source`: the template with its slot filled.
    pub fn prompt(&self, source: &str) -> String {
        self.text.replace(SOURCE_SLOT, source)
    }

    /// What follows the prompt before the target: one space, glued by the tokenizer to the
    /// target's first word. Newlines inside a target are folded to spaces, since a newline is
    /// where a rewrite ends.
    pub fn target_text(target: &str) -> String {
        let mut s = String::with_capacity(target.len() + 1);
        s.push(' ');
        s.push_str(&target.replace(['\r', '\n'], " "));
        s
    }

    /// Where a rewrite ends: the boundary token after every target in the memory.
    pub const END: &'static str = "\n";

    /// What identifies the template in a memory's header: blake3 of its text and the end
    /// marker. Two memories mix only if their digests agree.
    pub fn digest(&self) -> [u8; 32] {
        let mut h = blake3::Hasher::new();
        h.update(b"pema-template-v1\0");
        h.update(self.text.as_bytes());
        h.update(b"\0 \0");
        h.update(Self::END.as_bytes());
        *h.finalize().as_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worked_examples_are_read_back() {
        let base = Template::default();
        let ex = vec![
            ("Go now.".to_string(), "Go thou now.".to_string()),
            ("He said: yes.".to_string(), "And he said, Yea.".to_string()),
        ];
        let t = base.with_examples(&ex).unwrap();
        assert_eq!(t.worked_examples(&base), ex);
        assert!(base.worked_examples(&base).is_empty());
        assert!(t
            .worked_examples(&Template::from_arg("formal").unwrap())
            .is_empty());
    }

    #[test]
    fn presets_are_valid_and_distinct() {
        let digests: std::collections::HashSet<_> = PRESETS
            .iter()
            .map(|(n, _)| Template::from_arg(n).unwrap().digest())
            .collect();
        assert_eq!(digests.len(), PRESETS.len());
    }

    #[test]
    fn rejects_bad_templates() {
        assert!(Template::new("no slot").is_err());
        assert!(Template::new("{source} {source}").is_err());
        assert!(Template::new("Say {source}\nRewritten: ").is_err());
        assert!(Template::from_arg("nonsense").is_err());
        assert_eq!(
            Template::new("A {source} B:").unwrap().prompt("x"),
            "A x B:"
        );
    }

    #[test]
    fn examples_come_before_the_prompt() {
        let t = Template::new("Q: {source}\nA:").unwrap();
        let f = t
            .with_examples(&[("a".into(), "b".into()), ("c\nd".into(), "e".into())])
            .unwrap();
        assert_eq!(f.text(), "Q: a\nA: b\nQ: c d\nA: e\nQ: {source}\nA:");
        assert_eq!(f.prompt("x"), "Q: a\nA: b\nQ: c d\nA: e\nQ: x\nA:");
        assert_eq!(f.prefix(), "Q: a\nA: b\nQ: c d\nA: e\nQ: ");
        assert_ne!(f.digest(), t.digest());
        assert!(t.with_examples(&[("{source}".into(), "b".into())]).is_err());
    }

    #[test]
    fn target_text_has_leading_space_and_no_newline() {
        assert_eq!(Template::target_text("a\nb"), " a b");
    }
}
