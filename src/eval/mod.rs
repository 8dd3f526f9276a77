//! `pema eval`: how well rewrites match reference targets, for the plain model, a few-shot prompt,
//! fixed λ and Gradual Unrolling, side by side, in one run.

mod degenerate;
mod metrics;
mod style;
pub mod tune;

use std::time::Instant;

use anyhow::Result;

pub use degenerate::is_degenerate;
pub use metrics::{corpus_bleu, corpus_chrf, tokenize_13a};
pub use style::StyleClassifier;
pub use tune::{
    choose_schedule, choose_style_gate, GiveWay, ScheduleScore, StyleGateChoice, TuneProgress,
};

use crate::adapter::Adapter;
use crate::decode::{self, Mode, RewriteOptions};
use crate::memory::{Pair, Template};
use crate::model::Session;

/// One system being evaluated.
#[derive(Clone, Debug, PartialEq, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum System {
    /// The output is the source, unchanged (what a do-nothing system scores).
    CopySource,
    /// The plain model (no adapter), same prompt as `fixed` and `gu`.
    Plain,
    /// The plain model with worked examples in its prompt.
    FewShot,
    /// The model with the adapter at a fixed λ (the options' `lambda_fixed`).
    Fixed,
    /// The model with the adapter under Gradual Unrolling (λ rising to the options'
    /// `lambda_max`).
    Gu,
    /// Exactly what `pema rewrite` and the daemon produce for the adapter with no options.
    Default,
}

/// How one system did on the evaluation pairs.
#[derive(Clone, Debug, serde::Serialize)]
pub struct SystemScore {
    /// The system scored.
    pub system: System,
    /// Corpus BLEU (0–100) of the outputs against the pairs' targets.
    pub bleu: f64,
    /// Corpus chrF (0–100) of the outputs against the pairs' targets.
    pub chrf: f64,
    /// chrF against the sources: how much of the source's content is kept.
    pub chrf_source: f64,
    /// Share of outputs the style classifier puts on the target side (None without training
    /// pairs for it).
    pub style_accuracy: Option<f64>,
    /// Outputs that loop or run far past the source.
    pub degenerate: usize,
    /// Tokens generated, all pairs together (0 for `copy-source`).
    pub tokens: usize,
    /// Wall-clock seconds the system took over all pairs, reading prompts included.
    pub seconds: f64,
    /// `tokens` / `seconds`.
    pub tokens_per_second: f64,
    /// Every output, in the order of the pairs.
    pub outputs: Vec<String>,
}

/// What [`evaluate`] runs and with which settings.
pub struct EvalOptions {
    /// The systems to run, in this order.
    pub systems: Vec<System>,
    /// Worked examples for the few-shot system.
    pub shots: Vec<Pair>,
    /// The few-shot system's template (the examples are written with it).
    pub few_shot_template: Option<Template>,
    /// Options of the plain, fixed and GU systems.
    pub rewrite: RewriteOptions,
    /// Options of the default system: the adapter's own.
    pub default_rewrite: RewriteOptions,
    /// Trains the style classifier.
    pub style: Option<StyleClassifier>,
}

/// Where [`evaluate`] is: sent before each pair of each system.
#[derive(Clone, Copy, Debug)]
pub struct EvalProgress {
    /// Index (from 0) of the system running, in `EvalOptions::systems`.
    pub system: usize,
    /// Systems in all.
    pub systems: usize,
    /// Index (from 0) of the pair about to be rewritten.
    pub pair: usize,
    /// Pairs in all.
    pub pairs: usize,
}

/// Rewrites the sources of `pairs` with each system of `opts` (with `adapter`, under
/// `template`, greedy unless the options say otherwise) and scores the outputs against the
/// targets, one [`SystemScore`] per system in the order asked.
pub fn evaluate(
    session: &mut Session,
    adapter: &Adapter,
    template: &Template,
    pairs: &[Pair],
    opts: &EvalOptions,
    mut progress: impl FnMut(EvalProgress),
) -> Result<Vec<SystemScore>> {
    let refs: Vec<String> = pairs.iter().map(|p| p.target.clone()).collect();
    let sources: Vec<String> = pairs.iter().map(|p| p.source.clone()).collect();
    let shots: Vec<(String, String)> = opts
        .shots
        .iter()
        .map(|p| (p.source.clone(), p.target.clone()))
        .collect();
    let few_shot = if opts.systems.contains(&System::FewShot) {
        Some(
            opts.few_shot_template
                .as_ref()
                .unwrap_or(template)
                .with_examples(&shots)?,
        )
    } else {
        None
    };
    let mut out = Vec::new();
    for (si, system) in opts.systems.iter().enumerate() {
        let started = Instant::now();
        let (mut hyps, mut tokens) = (Vec::with_capacity(pairs.len()), 0);
        for (pi, p) in pairs.iter().enumerate() {
            progress(EvalProgress {
                system: si,
                systems: opts.systems.len(),
                pair: pi,
                pairs: pairs.len(),
            });
            let options = match system {
                System::CopySource => {
                    hyps.push(p.source.clone());
                    continue;
                }
                System::Plain | System::FewShot => RewriteOptions {
                    mode: Mode::Plain,
                    ..opts.rewrite
                },
                System::Fixed => RewriteOptions {
                    mode: Mode::Fixed,
                    ..opts.rewrite
                },
                System::Gu => RewriteOptions {
                    mode: Mode::Gu,
                    ..opts.rewrite
                },
                System::Default => opts.default_rewrite,
            };
            let template = match &few_shot {
                Some(t) if *system == System::FewShot => t,
                _ => template,
            };
            let r = decode::rewrite_text(
                session,
                Some(adapter),
                template,
                &p.source,
                &options,
                |_| {},
                None,
            )?;
            tokens += r.tokens;
            hyps.push(r.text);
        }
        let seconds = started.elapsed().as_secs_f64();
        out.push(SystemScore {
            system: system.clone(),
            bleu: corpus_bleu(&hyps, &refs),
            chrf: corpus_chrf(&hyps, &refs),
            chrf_source: corpus_chrf(&hyps, &sources),
            style_accuracy: opts.style.as_ref().map(|c| c.accuracy(&hyps)),
            degenerate: hyps
                .iter()
                .zip(&sources)
                .filter(|(h, s)| is_degenerate(h, s))
                .count(),
            tokens,
            seconds,
            tokens_per_second: tokens as f64 / seconds.max(1e-9),
            outputs: hyps,
        });
    }
    Ok(out)
}
