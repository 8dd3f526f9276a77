//! `pema paraphrase`: back-paraphrased pseudo-pairs from the targets of a pairs file.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use pema::memory;
use pema::workspace::{neutralise, paraphrase, style_words};

use super::{load_model, progress_bar, read_pairs, ModelChoice};

#[derive(Args)]
pub(super) struct ParaphraseArgs {
    /// Pairs file whose targets are the units (sources are ignored).
    #[arg(long, value_name = "FILE")]
    pairs: PathBuf,
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    #[arg(long)]
    limit: Option<usize>,
    /// Write identity pairs (unit → unit) instead of running the model.
    #[arg(long)]
    identity: bool,
    /// Neutralise each unit by the model's own expectations instead of paraphrasing it.
    #[arg(long)]
    neutralise: bool,
    /// Neutralisation: the model's top word needs at least this probability.
    #[arg(long, default_value_t = neutralise::Settings::default().confidence)]
    confidence: f32,
    /// Neutralisation: the user's word at most this share of the top word's probability.
    #[arg(long, default_value_t = neutralise::Settings::default().ratio)]
    ratio: f32,
    /// Neutralisation: the user's word among the model's this many likeliest tokens.
    #[arg(long, default_value_t = neutralise::Settings::default().max_rank)]
    max_rank: usize,
    /// Neutralisation: text the model reads before each unit.
    #[arg(long, default_value = "")]
    context: String,
    /// Neutralisation passes.
    #[arg(long, default_value_t = neutralise::Settings::default().passes)]
    passes: usize,
    /// Neutralisation: replace only the units' style words (what the daemon does by default:
    /// `pseudo_sources = "style-words"`).
    #[arg(long)]
    style_words: bool,
    /// With `--style-words`: the units' language (`auto`, `en`, `de`, `fr`, `es`).
    #[arg(long, default_value = "auto")]
    language: String,
}

pub(super) fn run(model: &ModelChoice, a: ParaphraseArgs) -> Result<()> {
    let units: Vec<String> = read_pairs(&a.pairs, a.limit)?
        .into_iter()
        .map(|p| p.target)
        .collect();
    let mut out = Vec::with_capacity(units.len());
    if a.identity {
        out.extend(units.iter().map(|u| paraphrase::pseudo_pair(u, u)));
    } else {
        let model = load_model(model)?;
        let mut session = model.session(Default::default())?;
        let bar = progress_bar(
            true,
            units.len() as u64,
            "paraphrasing {pos}/{len} [{bar:20}] ETA {eta}",
        )?;
        let style_words = if a.style_words {
            let s = style_words::StyleWords::make(units.iter().map(String::as_str), &a.language)?;
            eprintln!(
                "{} style words ({}): {}",
                s.words.len(),
                s.language.as_deref().unwrap_or("no reference fits"),
                s.words.join(" ")
            );
            Some(s.set())
        } else {
            None
        };
        let s = neutralise::Settings {
            confidence: a.confidence,
            ratio: a.ratio,
            passes: a.passes,
            max_rank: a.max_rank,
            context: a.context.clone(),
            style_words,
        };
        for u in &units {
            let p = if a.neutralise || a.style_words {
                neutralise::neutralise(&mut session, u, &s)?
            } else {
                paraphrase::paraphrase(&mut session, u, None)?
            };
            out.push(paraphrase::pseudo_pair(u, &p));
            bar.inc(1);
        }
        bar.finish_and_clear();
    }
    memory::write_pairs_file(&a.out, &out)?;
    eprintln!("{} pseudo-pairs written to {}", out.len(), a.out.display());
    Ok(())
}
