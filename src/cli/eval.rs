//! `pema eval`: BLEU, chrF, style accuracy and speed of each system on pairs with reference
//! targets.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use pema::adapter::Adapter;
use pema::decode::{Mode, RewriteOptions};
use pema::eval::{self, System};
use pema::memory::{self, Template};

use super::{load_model, print_json, progress_bar, read_pairs, GenerationArgs, ModelChoice};

#[derive(Args)]
pub(super) struct EvalArgs {
    #[arg(long, value_name = "FILE")]
    adapter: PathBuf,
    #[arg(long, value_name = "FILE")]
    pairs: PathBuf,
    /// Evaluate only the first N pairs.
    #[arg(long)]
    limit: Option<usize>,
    /// Pairs whose first 3 are the worked examples of the 3-shot system (without it, no 3-shot).
    #[arg(long, value_name = "FILE")]
    shots: Option<PathBuf>,
    /// The 3-shot system's template (default: the adapter's).
    #[arg(long)]
    few_shot_template: Option<String>,
    /// Pairs to train the style classifier on (sources: not the style; targets: the style).
    /// Default: the --shots file.
    #[arg(long, value_name = "FILE")]
    style_pairs: Option<PathBuf>,
    /// Score only the held-out pairs of this memory's split among --pairs (to choose settings
    /// on the adapter's own held-out data, never on the evaluation set).
    #[arg(long)]
    held_out_only: bool,
    /// Score only these systems (comma-separated) [default: all].
    #[arg(long, value_enum, value_delimiter = ',')]
    systems: Vec<System>,
    #[command(flatten)]
    gen: GenerationArgs,
    /// With --json, include every output of every system.
    #[arg(long)]
    outputs: bool,
    #[arg(long)]
    json: bool,
}

pub(super) fn run(model: &ModelChoice, a: EvalArgs) -> Result<()> {
    let model = load_model(model)?;
    let adapter = Adapter::load_for(&a.adapter, model.info(), &*model.head()?)?;
    let template = adapter.template()?;
    let mut pairs = read_pairs(&a.pairs, None)?;
    if a.held_out_only {
        pairs.retain(|p| memory::split::is_held_out(&p.hash(), memory::DEFAULT_HELD_OUT_PERCENT));
    }
    if let Some(n) = a.limit {
        pairs.truncate(n);
    }
    let mut systems = vec![System::CopySource, System::Plain];
    let shots = match &a.shots {
        Some(p) => {
            systems.push(System::FewShot);
            read_pairs(p, Some(3))?
        }
        None => vec![],
    };
    systems.extend([System::Fixed, System::Gu, System::Default]);
    if !a.systems.is_empty() {
        systems.retain(|s| a.systems.contains(s));
    }
    let style = match a.style_pairs.as_ref().or(a.shots.as_ref()) {
        Some(p) => {
            let train = read_pairs(p, None)?;
            let mut ex: Vec<(&str, bool)> = Vec::with_capacity(2 * train.len());
            for t in &train {
                ex.push((&t.source, false));
                ex.push((&t.target, true));
            }
            Some(eval::StyleClassifier::train(&ex))
        }
        None => None,
    };
    let few_shot_template = match &a.few_shot_template {
        Some(t) => Some(Template::from_arg(t)?),
        None => None,
    };
    let mut session = model.session(Default::default())?;
    let bar = progress_bar(
        !a.json,
        (systems.len() * pairs.len()) as u64,
        "{pos}/{len} rewrites [{bar:20}] ETA {eta}",
    )?;
    let scores = eval::evaluate(
        &mut session,
        &adapter,
        &template,
        &pairs,
        &eval::EvalOptions {
            systems,
            shots,
            few_shot_template,
            rewrite: a.gen.options(Mode::Gu),
            default_rewrite: RewriteOptions {
                drafts: !a.gen.no_drafts,
                ..adapter.default_rewrite()
            },
            style,
        },
        |p| bar.set_position((p.system * p.pairs + p.pair) as u64),
    );
    bar.finish_and_clear();
    let mut scores = scores?;
    if a.json {
        if !a.outputs {
            for s in &mut scores {
                s.outputs.truncate(3);
            }
        }
        return print_json(&serde_json::json!({"pairs": pairs.len(), "systems": scores}));
    }
    println!("{} pairs from {} (BLEU: sacreBLEU-compatible, 13a tokenisation; chrF: char 6-grams, beta 2)", pairs.len(), a.pairs.display());
    println!(
        "{:<12} {:>7} {:>7} {:>9} {:>7} {:>6} {:>9}",
        "system", "BLEU", "chrF", "chrF-src", "style", "degen", "tok/s"
    );
    for s in &scores {
        let name = serde_json::to_value(&s.system)?
            .as_str()
            .unwrap_or("")
            .to_string();
        let style = s
            .style_accuracy
            .map_or("-".to_string(), |v| format!("{v:.2}"));
        println!(
            "{:<12} {:>7.2} {:>7.2} {:>9.2} {:>7} {:>6} {:>9.1}",
            name, s.bleu, s.chrf, s.chrf_source, style, s.degenerate, s.tokens_per_second
        );
    }
    Ok(())
}
