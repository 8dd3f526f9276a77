//! Pseudo-pairs: how a folder of prose with no parallel text becomes a memory. Each unit of the
//! user's own writing gets a plain pseudo-source, and the pair (pseudo-source → unit) teaches the
//! adapter the way back. Three ways to make the source: the unit with its style words taken out
//! ([`super::style_words`], [`super::neutralise`]; the default, the only one measured to teach a
//! style), back-paraphrase (the base model rewrites the unit into plain, neutral wording) or
//! neutralisation by the model's own expectations alone.

use std::sync::atomic::AtomicBool;

use anyhow::Result;

use crate::decode::{self, Mode, Prompt, RewriteOptions};
use crate::memory::{Pair, Template};
use crate::model::Session;
use crate::workspace::{neutralise, style_words, PseudoSources};

/// The instruction for the plain rewrite. Not a memory template: it is only ever used to make
/// sources, never stored beside targets.
const TEMPLATE: &str = "Rewrite the text in plain, simple, neutral words:\n{source}\nPlain:";

/// Worked examples, written for pema, in several registers so that the model learns to strip a
/// style rather than to imitate one.
const EXAMPLES: &[(&str, &str)] = &[
    (
        "And he spake unto them, saying, Go ye into the city, and there shall meet you a man bearing a pitcher of water.",
        "He told them to go into the city, where they would meet a man carrying a jug of water.",
    ),
    (
        "We are delighted to inform you that your application has been approved by our committee.",
        "Your application was approved.",
    ),
    (
        "Honestly, that gig last night was totally amazing, I can't stop thinking about it!",
        "The concert last night was very good.",
    ),
];

/// Changes when the prompt or decoding changes, so that cached paraphrases made another way are
/// not reused.
pub const VERSION: &str = "paraphrase-v1";

/// What made a pseudo-source, for the cache: a pseudo-source made another way is not reused.
pub fn version(how: PseudoSources) -> &'static str {
    match how {
        PseudoSources::Neutralise => neutralise::VERSION,
        PseudoSources::Paraphrase => VERSION,
        PseudoSources::StyleWords => style_words::VERSION,
    }
}

/// The pseudo-source of one unit, made the way the workspace's settings say (`style_words`:
/// the workspace's, for [`PseudoSources::StyleWords`]; with none, the unit comes back as it is).
/// `cancel` stops a paraphrase between tokens (a neutralisation is two forward passes and is not
/// stopped).
pub fn pseudo_source(
    session: &mut Session,
    unit: &str,
    how: PseudoSources,
    style_words: &std::collections::HashSet<String>,
    cancel: Option<&AtomicBool>,
) -> Result<String> {
    match how {
        PseudoSources::Neutralise => {
            neutralise::neutralise(session, unit, &neutralise::Settings::default())
        }
        PseudoSources::Paraphrase => paraphrase(session, unit, cancel),
        PseudoSources::StyleWords => neutralise::neutralise(
            session,
            unit,
            &neutralise::Settings {
                style_words: Some(style_words.clone()),
                ..Default::default()
            },
        ),
    }
}

/// The plain rewrite of one unit (greedy, plain model). `cancel` stops it between tokens.
pub fn paraphrase(
    session: &mut Session,
    unit: &str,
    cancel: Option<&AtomicBool>,
) -> Result<String> {
    let template = Template::new(TEMPLATE)?;
    let examples: Vec<(String, String)> = EXAMPLES
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    let prompt = Prompt::with_examples(session, &template, &examples, unit)?;
    let opts = RewriteOptions {
        mode: Mode::Plain,
        ..Default::default()
    };
    let r = decode::generate(session, None, &prompt, &opts, |_| {}, cancel)?;
    Ok(r.text)
}

/// The pseudo-pair of a unit: its paraphrase as source, the unit itself as target.
pub fn pseudo_pair(unit: &str, paraphrase: &str) -> Pair {
    Pair {
        source: paraphrase.to_string(),
        target: unit.to_string(),
    }
}
