//! `pema train`: an adapter from a memory, and optionally the choice of its default schedule by
//! rewriting the memory's held-out pairs.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, ValueEnum};

use pema::adapter::{self, Adapter, TrainOptions, VocabMode};
use pema::decode::Mode;
use pema::eval;
use pema::memory::Memory;
use pema::model::Model;

use super::{load_model, print_json, progress_bar, ModelChoice};

/// Where training runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(super) enum DeviceArg {
    Cpu,
    Cuda,
    Metal,
}

impl DeviceArg {
    /// The candle device, or why this build cannot use it.
    pub(super) fn device(self) -> Result<candle_core::Device> {
        let (name, d) = match self {
            DeviceArg::Cpu => return Ok(candle_core::Device::Cpu),
            DeviceArg::Cuda => ("cuda", candle_core::Device::new_cuda(0)),
            DeviceArg::Metal => ("metal", candle_core::Device::new_metal(0)),
        };
        d.map_err(|e| {
            anyhow::anyhow!(
                "cannot use {name}: {e}. GPU training needs a build with `cargo build --release --features {name}`"
            )
        })
    }
}

/// The defaults the flags show and start from.
fn defaults() -> TrainOptions<'static> {
    TrainOptions::default()
}

#[derive(Args)]
pub(super) struct TrainArgs {
    #[arg(long, value_name = "DIR")]
    memory: PathBuf,
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// cpu, cuda or metal (the GPU ones need a build with --features cuda / metal).
    #[arg(long, value_enum, hide_possible_values = true, default_value_t = DeviceArg::Cpu)]
    device: DeviceArg,
    #[arg(long, default_value_t = defaults().rank)]
    rank: usize,
    /// candidates (targets in the memory plus the model's top-k) or full (whole vocabulary).
    #[arg(long, value_enum, hide_possible_values = true, default_value_t = defaults().vocab)]
    vocab: VocabMode,
    #[arg(long, default_value_t = defaults().max_epochs)]
    max_epochs: usize,
    /// Adam's learning rate.
    #[arg(long, default_value_t = defaults().learning_rate)]
    learning_rate: f64,
    /// Start from this adapter instead of from PCA.
    #[arg(long, value_name = "FILE")]
    warm_start: Option<PathBuf>,
    /// The reference adapter, softmax(W·B_pd·A·h), instead of the residual softmax(W·(h + B_pd·A·h)).
    #[arg(long)]
    bottleneck: bool,
    /// The adapter may lift only the model's K most likely tokens in rewrites (0: any token);
    /// stored in the adapter with the schedule chosen for it.
    #[arg(long, default_value_t = defaults().adapter_top_k)]
    adapter_top_k: usize,
    /// Refine the default schedule by rewriting the memory's held-out pairs with each candidate
    /// (BLEU against their targets) instead of keeping the held-out likelihood's choice. Slower;
    /// measured and not the default: BENCHMARKS.md, "Style quality".
    #[arg(long)]
    choose_by_rewriting: bool,
    /// Do not train: for the adapter already at --out, learn again which names its style keeps
    /// and its marked words, try the style gate again (and with --choose-by-rewriting, choose
    /// its schedule again).
    #[arg(long)]
    choose_only: bool,
    #[arg(long)]
    json: bool,
}

pub(super) fn run(model: &ModelChoice, a: TrainArgs) -> Result<()> {
    let device = a.device.device()?;
    let model = load_model(model)?;
    let memory = Memory::open(&a.memory)?;
    let warm = match &a.warm_start {
        Some(p) => Some(Adapter::load(p)?),
        None => None,
    };
    let opts = TrainOptions {
        rank: a.rank,
        vocab: a.vocab,
        max_epochs: a.max_epochs,
        learning_rate: a.learning_rate,
        device,
        warm_start: warm.as_ref(),
        residual: !a.bottleneck,
        adapter_top_k: a.adapter_top_k,
        ..Default::default()
    };
    let mut adapter = if a.choose_only {
        let mut adapter = Adapter::load_for(&a.out, model.info(), &*model.head()?)?;
        adapter.check_memory(&memory)?;
        adapter.learn_fidelity(&memory, opts.held_out_percent);
        adapter
    } else {
        train_adapter(&model, &memory, &opts, a.json)?
    };
    let held_out = memory.held_out_pairs(opts.held_out_percent);
    let choose_schedule = a.choose_by_rewriting && held_out.len() >= eval::tune::MIN_PAIRS;
    // Rewriting held-out pairs needs a session and a prepared adapter: made only when some
    // choice will rewrite (the style gate is tried once the schedule is chosen).
    let rewriting = if choose_schedule || eval::tune::can_try_style_gate(&adapter, &held_out) {
        adapter.prepare(&*model.head()?)?;
        Some((adapter.template()?, model.session(Default::default())?))
    } else {
        None
    };
    let (mut schedules, mut gate) = (vec![], None);
    if let Some((template, mut session)) = rewriting {
        if choose_schedule {
            let bar = rewrites_bar(a.json, "choosing the schedule")?;
            schedules = eval::choose_schedule(
                &mut session,
                &mut adapter,
                &template,
                &held_out,
                None,
                show_on(&bar),
            )?;
            bar.finish_and_clear();
        }
        let bar = rewrites_bar(a.json, "trying the style gate")?;
        gate = eval::choose_style_gate(
            &mut session,
            &mut adapter,
            &template,
            &held_out,
            None,
            None,
            show_on(&bar),
        )?;
        bar.finish_and_clear();
    }
    adapter.save(&a.out)?;
    let t = &adapter.info().training;
    if a.json {
        // The adapter's figures as before, with the schedules tried beside them.
        let mut v = serde_json::to_value(adapter.info())?;
        v["schedules"] = serde_json::to_value(&schedules)?;
        v["style_gate"] = serde_json::to_value(&gate)?;
        return print_json(&v);
    }
    println!("adapter     {}", a.out.display());
    println!(
        "trained     {} epochs ({}), best epoch {}, {:.1} s",
        t.epochs, t.stopped_by, t.best_epoch, t.seconds
    );
    println!(
        "entries     {} training, {} held out",
        t.train_entries, t.held_out_entries
    );
    println!(
        "held-out CE {:.3} before, {:.3} after (vocabulary {})",
        t.held_out_ce_start, t.held_out_ce, t.vocab_size
    );
    for s in &schedules {
        println!(
            "schedule    {:<24} BLEU {:5.2} on {} held-out pairs (chrF vs source {:.1}, {} degenerate)",
            describe(&s.decoding),
            s.bleu,
            s.pairs,
            s.chrf_source,
            s.degenerate
        );
    }
    if let Some(d) = &adapter.info().decoding {
        println!("default     {}", describe(d));
    }
    match &gate {
        Some(g) => println!(
            "style gate  {}: held-out BLEU {:.2} with λ × {} away from the {} marked words, {:.2} without ({} pairs)",
            if g.gated { "on" } else { "off" },
            g.bleu_with,
            eval::tune::STYLE_GATE,
            adapter.info().marked_words.len(),
            g.bleu_without,
            g.pairs
        ),
        None => println!(
            "style gate  off: {}",
            if adapter.info().marked_words.is_empty() {
                "the memory's targets write no words of their own"
            } else {
                "too few held-out pairs to try it on"
            }
        ),
    }
    match &adapter.info().kept_names {
        Some(k) => println!(
            "names       kept by {:.0}% of {} held-out pairs with names: a rewrite that drops one is made again with less style ({} names the style changes)",
            100.0 * k.share_kept,
            k.pairs_with_names,
            k.changed.len()
        ),
        None => println!("names       not checked (the held-out pairs rename things, or too few hold names)"),
    }
    match &adapter.info().kept_length {
        Some(k) => println!(
            "length      a rewrite under {:.2}× its source's words (the shortest 5% of {} held-out pairs) is made again with less style",
            k.min_ratio, k.pairs
        ),
        None => println!("length      not checked (too few held-out pairs)"),
    }
    Ok(())
}

fn train_adapter(
    model: &Model,
    memory: &Memory,
    opts: &TrainOptions,
    json: bool,
) -> Result<Adapter> {
    let bar = progress_bar(
        !json,
        opts.max_epochs as u64,
        "{spinner} epoch {pos}/{len} [{bar:20}] {msg}",
    )?;
    let adapter = adapter::train(memory, &*model.head()?, model.info(), opts, |p| {
        bar.set_position(p.epoch.saturating_sub(1) as u64);
        let per_step =
            p.elapsed_seconds / ((p.epoch - 1) * p.steps_per_epoch + p.step).max(1) as f64;
        let left = (p.steps_per_epoch - p.step) as f64 * per_step;
        bar.set_message(format!(
            "step {}/{}  train loss {:.3}  held-out loss {:.3}  epoch ETA {:.0}s",
            p.step, p.steps_per_epoch, p.train_loss, p.held_out_loss, left
        ));
    });
    bar.finish_and_clear();
    adapter
}

/// A bar for rewrites of held-out pairs, with `what` before it.
fn rewrites_bar(json: bool, what: &str) -> Result<indicatif::ProgressBar> {
    progress_bar(
        !json,
        0,
        &format!("{what}: {{pos}}/{{len}} rewrites [{{bar:20}}]"),
    )
}

/// Shows a choice's progress on `bar`.
fn show_on(bar: &indicatif::ProgressBar) -> impl FnMut(eval::TuneProgress) + '_ {
    |p| {
        bar.set_length(p.total as u64);
        bar.set_position(p.done as u64);
    }
}

fn describe(d: &adapter::Decoding) -> String {
    let schedule = match d.mode {
        Mode::Fixed => format!("fixed λ {:.1}", d.lambda),
        Mode::Gu => format!("GU λmax {:.1} floor {:.1}", d.lambda_max, d.lambda_floor),
        Mode::Plain => "plain".into(),
    };
    match d.style_gate {
        Some(g) => format!("{schedule}, λ × {g} away from marked words"),
        None => schedule,
    }
}
