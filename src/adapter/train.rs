//! Training an adapter on a memory (docs/method.md §3): phase 1 in closed form (PCA), phase 2 the joint
//! loss `κ · MSE(B_rct·A·h, h) + (1 − κ) · CE(W_C·B_pd·A·h, y)` with Adam, `B_rct` and `W` frozen,
//! early-stopped on held-out pairs.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{bail, Context as _, Result};
use candle_core::{Device, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use super::{candidate_rows, pca, Adapter, AdapterInfo};
use crate::memory::{Memory, DEFAULT_HELD_OUT_PERCENT};
use crate::model::{LmHead, ModelInfo};

/// Which tokens the adapter's softmax runs over.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum VocabMode {
    /// Every token that is a target in the memory, plus the model's own top-k predictions at a
    /// sample of entries (the tokens the adapter must learn to outrank).
    Candidates,
    /// The whole vocabulary: about 30× the cost, for comparison.
    Full,
}

impl std::str::FromStr for VocabMode {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "candidates" => Ok(Self::Candidates),
            "full" => Ok(Self::Full),
            _ => bail!("vocabulary mode is `candidates` or `full`, not {s:?}"),
        }
    }
}

/// How [`train`] trains an adapter; [`Default`] gives pema's settings (docs/method.md §7).
pub struct TrainOptions<'a> {
    /// Rank r of the bottleneck, 1 ≤ r ≤ d (default [`super::DEFAULT_RANK`]).
    pub rank: usize,
    /// κ, the weight of the reconstruction MSE in the joint loss (the cross-entropy gets 1 − κ).
    pub kappa: f64,
    /// Adam's learning rate.
    pub learning_rate: f64,
    /// Probability of zeroing each element of the adapter's input while training, the rest
    /// scaled by 1 / (1 − p) (0: none).
    pub dropout: f32,
    /// Memory rows per optimiser step.
    pub batch_size: usize,
    /// Epochs at most; training stops earlier once two held-out checks in a row
    /// are above the best so far.
    pub max_epochs: usize,
    /// Share of pairs, in percent, held out to validate (chosen by content hash).
    pub held_out_percent: u32,
    /// Which tokens the adapter's softmax runs over.
    pub vocab: VocabMode,
    /// Model top-k tokens added to the candidates, per sampled entry.
    pub top_k: usize,
    /// How many entries are sampled for the top-k.
    pub top_k_sample: usize,
    /// Where the tensors of training live (CPU, or a GPU where candle has one).
    pub device: Device,
    /// Seed of the shuffling and the dropout masks: the same seed gives the same adapter.
    pub seed: u64,
    /// Set to stop training between steps; it then fails with [`crate::Cancelled`].
    pub cancel: Option<&'a AtomicBool>,
    /// Called before every step and every chunk of an evaluation: it may block while something
    /// more urgent uses the cores (the daemon: a rewrite the user waits for).
    pub pause: Option<&'a (dyn Fn() + Sync)>,
    /// Warm start from this adapter (same model, template and rank).
    pub warm_start: Option<&'a Adapter>,
    /// The adapter's logits add to the model's own (`W·(h + B_pd·A·h)`): it learns a correction
    /// of the model's prediction instead of a whole prediction through a rank-r bottleneck.
    pub residual: bool,
    /// Stored with the chosen schedule: see [`super::decoding::ADAPTER_TOP_K`].
    pub adapter_top_k: usize,
}

impl Default for TrainOptions<'_> {
    fn default() -> Self {
        Self {
            rank: super::DEFAULT_RANK,
            kappa: 0.2,
            learning_rate: 1e-3,
            dropout: 0.2,
            batch_size: 512,
            max_epochs: 30,
            held_out_percent: DEFAULT_HELD_OUT_PERCENT,
            vocab: VocabMode::Candidates,
            top_k: 8,
            top_k_sample: 1024,
            device: Device::Cpu,
            seed: 0x9e3779b97f4a7c15,
            cancel: None,
            pause: None,
            warm_start: None,
            residual: true,
            adapter_top_k: super::decoding::ADAPTER_TOP_K,
        }
    }
}

/// Where training stands, passed to [`train`]'s progress callback after every step and after
/// every epoch's held-out check.
#[derive(Clone, Copy, Debug, Default)]
pub struct TrainProgress {
    /// The current epoch, from 1 (0 before the first step).
    pub epoch: usize,
    /// The most epochs this run may take ([`TrainOptions::max_epochs`]).
    pub max_epochs: usize,
    /// Steps done in the current epoch, from 1.
    pub step: usize,
    /// Optimiser steps in one epoch: training rows divided by the batch size, rounded up.
    pub steps_per_epoch: usize,
    /// Mean joint loss over the current epoch's steps so far.
    pub train_loss: f32,
    /// Held-out joint loss at the last check (before the first epoch ends: the untrained
    /// adapter's).
    pub held_out_loss: f32,
    /// Seconds since training started.
    pub elapsed_seconds: f64,
}

/// How a training run went; stored in the adapter's [`super::AdapterInfo`].
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainReport {
    /// Epochs run.
    pub epochs: usize,
    /// The epoch whose weights were kept: the lowest held-out loss (0: none beat the start).
    pub best_epoch: usize,
    /// Why training ended: `"max_epochs"` or `"early_stop"` (two checks above the best held-out loss).
    pub stopped_by: String,
    /// Memory rows trained on (one per target token of the training pairs).
    pub train_entries: usize,
    /// Memory rows of the held-out pairs, used to validate.
    pub held_out_entries: usize,
    /// Size |C| of the candidate vocabulary the adapter's softmax runs over.
    pub vocab_size: usize,
    /// Held-out cross-entropy of the adapter's prediction before training (the PCA start, which
    /// reproduces the model's own prediction through the rank-r bottleneck) and after.
    pub held_out_ce_start: f32,
    /// Held-out cross-entropy (nats per token) of the adapter that was kept.
    pub held_out_ce: f32,
    /// Held-out joint loss of the best epoch.
    pub held_out_loss: f32,
    /// Mean joint loss over the last epoch's training steps.
    pub train_loss: f32,
    /// Wall-clock seconds the training took.
    pub seconds: f64,
}

/// Fewest pairs a memory needs for training: one is held out to validate.
pub const MIN_PAIRS: usize = 2;

/// Training or held-out rows. Their keys are read from the memory's map a batch at a time and
/// widened to f32 there, so that training holds no copy of the keys and its RAM does not grow
/// with the memory (the map's pages are the page cache's, which the kernel can drop).
struct Data<'m> {
    memory: &'m Memory,
    /// The memory row of each row.
    rows: Vec<usize>,
    y: Tensor,
    device: Device,
}

impl Data<'_> {
    fn len(&self) -> usize {
        self.rows.len()
    }

    fn x_of(&self, rows: impl ExactSizeIterator<Item = usize>) -> Result<Tensor> {
        let (len, d) = (rows.len(), self.memory.hidden_size());
        let mut x = Vec::with_capacity(len * d);
        self.memory.gather_keys_f32(rows, &mut x);
        Ok(Tensor::from_vec(x, (len, d), &self.device)?)
    }

    /// Rows `start..start + len` as f32.
    fn x_rows(&self, start: usize, len: usize) -> Result<Tensor> {
        self.x_of(self.rows[start..start + len].iter().copied())
    }

    /// The rows `idx` as f32.
    fn x_select(&self, idx: &[u32]) -> Result<Tensor> {
        self.x_of(idx.iter().map(|&i| self.rows[i as usize]))
    }
}

/// When training stops: once the held-out loss is above its best at two checks in a row.
/// Counted from the best, not from the check before: a loss that wobbles above an early best
/// (the Bible memory's best epoch is the first) would otherwise train on for epochs that
/// cannot be kept.
struct EarlyStop {
    best: f32,
    above: usize,
}

impl EarlyStop {
    fn new(start: f32) -> Self {
        Self {
            best: start,
            above: 0,
        }
    }

    /// Records a check; true when it is the best so far.
    fn is_best(&mut self, loss: f32) -> bool {
        if loss < self.best {
            self.best = loss;
            self.above = 0;
            true
        } else {
            self.above += 1;
            false
        }
    }

    fn is_over(&self) -> bool {
        self.above >= 2
    }
}

fn rows_of(memory: &Memory, held: &[bool], want_held: bool) -> Vec<std::ops::Range<usize>> {
    memory
        .groups()
        .iter()
        .zip(held)
        .filter(|(_, &h)| h == want_held)
        .map(|(g, _)| g.first_row as usize..(g.first_row + g.rows as u64) as usize)
        .collect()
}

fn load_rows<'m>(
    memory: &'m Memory,
    ranges: &[std::ops::Range<usize>],
    slot: &[u32],
    device: &Device,
) -> Result<Data<'m>> {
    if let Some(r) = ranges.iter().find(|r| !memory.keys_finite((*r).clone())) {
        bail!(
            "the memory {} holds non-finite hidden states (rows {r:?}); rebuild it",
            memory.path().display()
        );
    }
    let rows: Vec<usize> = ranges.iter().flat_map(|r| r.clone()).collect();
    let y: Vec<u32> = rows
        .iter()
        .map(|&r| slot[memory.tokens()[r] as usize])
        .collect();
    Ok(Data {
        memory,
        y: Tensor::from_vec(y, rows.len(), device)?,
        rows,
        device: device.clone(),
    })
}

/// The model's top-k tokens at up to `sample` evenly spaced keys.
fn model_top_k(head: &LmHead, memory: &Memory, k: usize, sample: usize) -> Result<HashSet<u32>> {
    let mut out = HashSet::new();
    let k = k.min(head.n_vocab() - 1);
    if k == 0 || memory.is_empty() {
        return Ok(out);
    }
    let n = memory.len();
    let step = (n / sample.max(1)).max(1);
    let rows: Vec<usize> = (0..n).step_by(step).take(sample).collect();
    let d = memory.hidden_size();
    for chunk in rows.chunks(64) {
        let mut x = Vec::with_capacity(chunk.len() * d);
        for &r in chunk {
            x.extend(memory.keys_f32(r..r + 1));
        }
        let x = Tensor::from_vec(x, (chunk.len(), d), &Device::Cpu)?;
        let logits = head.logits(&x)?.to_vec2::<f32>()?;
        for row in logits {
            let mut idx: Vec<u32> = (0..row.len() as u32).collect();
            idx.select_nth_unstable_by(k, |&a, &b| row[b as usize].total_cmp(&row[a as usize]));
            out.extend(&idx[..k]);
        }
    }
    Ok(out)
}

/// Trains an adapter on `memory`. The adapter sees the memory's keys and the LM head, nothing
/// else of the model.
pub fn train(
    memory: &Memory,
    head: &LmHead,
    model: &ModelInfo,
    opts: &TrainOptions<'_>,
    mut progress: impl FnMut(&TrainProgress),
) -> Result<Adapter> {
    let started = Instant::now();
    if memory.is_empty() {
        bail!(
            "the memory {} is empty: add pairs and rebuild it before training",
            memory.path().display()
        );
    }
    if memory.groups().len() < MIN_PAIRS {
        bail!("training needs at least 2 pairs (one is held out to validate); the memory has 1");
    }
    if !model.answers_to(&memory.model_identity()) {
        bail!(
            "the memory {} was built with another model; rebuild it for {}",
            memory.path().display(),
            model.name
        );
    }
    // A crafted memory must not index past the LM head.
    memory.check_tokens(head.n_vocab())?;
    let d = memory.hidden_size();
    let r = opts.rank;
    if r == 0 || r > d {
        bail!("rank must be between 1 and the hidden size {d}, not {r}");
    }
    if let Some(w) = opts.warm_start {
        w.check_memory(memory)
            .context("cannot warm-start from that adapter")?;
        if w.info.rank != r {
            bail!(
                "cannot warm-start: the adapter has rank {}, training asks for {r}",
                w.info.rank
            );
        }
    }
    let dev = &opts.device;

    // The candidate vocabulary and each target's slot in it.
    let vocab: Vec<u32> = match opts.vocab {
        VocabMode::Full => (0..head.n_vocab() as u32).collect(),
        VocabMode::Candidates => {
            let mut set: HashSet<u32> = memory.tokens().iter().copied().collect();
            set.extend(model_top_k(head, memory, opts.top_k, opts.top_k_sample)?);
            let mut v: Vec<u32> = set.into_iter().collect();
            v.sort_unstable();
            v
        }
    };
    let mut slot = vec![u32::MAX; head.n_vocab()];
    for (i, &t) in vocab.iter().enumerate() {
        slot[t as usize] = i as u32;
    }
    let w_c = candidate_rows(head, &vocab, dev)?;

    let held = memory.held_out(opts.held_out_percent);
    let train = load_rows(memory, &rows_of(memory, &held, false), &slot, dev)?;
    let valid = load_rows(memory, &rows_of(memory, &held, true), &slot, dev)?;

    // Phase 1 (closed form) and the start of phase 2: A = Uᵀ, B_rct = B_pd = U, so the adapter
    // starts as the model's own prediction through the rank-r bottleneck.
    // A residual adapter starts as the model itself: B_pd = 0 (the reference's initialisation).
    let (a0, b_pd0, b_rct) = match opts.warm_start {
        Some(w) if w.info.residual == opts.residual => (
            w.a.to_device(dev)?,
            w.b_pd.to_device(dev)?,
            w.b_rct.to_device(dev)?,
        ),
        _ => {
            let u = pca::principal_directions(train.len(), d, |s, l| train.x_rows(s, l), r, dev)?;
            let b_pd = if opts.residual {
                u.zeros_like()?
            } else {
                u.clone()
            };
            (u.t()?.contiguous()?, b_pd, u)
        }
    };
    let w_c_t = w_c.t()?.contiguous()?;
    let a = Var::from_tensor(&a0)?;
    let b_pd = Var::from_tensor(&b_pd0)?;
    let mut opt = AdamW::new(
        vec![a.clone(), b_pd.clone()],
        ParamsAdamW {
            lr: opts.learning_rate,
            weight_decay: 0.0,
            ..Default::default()
        },
    )?;

    // Dropout on the adapter's input, with a mask drawn from the seeded generator so that a
    // training run is reproducible (candle's own dropout draws from an unseeded one on the CPU).
    let losses = |x: &Tensor, y: &Tensor, mask: Option<&Tensor>| -> Result<(Tensor, Tensor)> {
        let xin = match mask {
            Some(m) => x.mul(m)?,
            None => x.clone(),
        };
        let code = xin.matmul(&a.as_tensor().t()?)?;
        let rec = code.matmul(&b_rct.t()?)?;
        let mse = (rec - x)?.sqr()?.mean_all()?;
        // W_C · B_pd first: |C|×r, then the logits cost b×r×|C| instead of b×d×|C|.
        let m = w_c.matmul(b_pd.as_tensor())?;
        let mut logits = code.matmul(&m.t()?)?;
        if opts.residual {
            logits = (logits + x.matmul(&w_c_t)?)?;
        }
        let ce = candle_nn::loss::cross_entropy(&logits, y)?;
        Ok((mse, ce))
    };
    let joint = |mse: &Tensor, ce: &Tensor| -> Result<Tensor> {
        Ok(((mse * opts.kappa)? + (ce * (1.0 - opts.kappa))?)?)
    };
    let pause = || {
        if let Some(p) = opts.pause {
            p()
        }
    };
    // Rows per chunk of an evaluation: the chunk's logits (rows × |C|) and the copies the loss
    // makes of them stay a few tens of MiB however large the candidate vocabulary grows.
    let eval_rows = ((1usize << 21) / vocab.len().max(1)).clamp(64, 4096);
    let evaluate = |data: &Data| -> Result<(f32, f32)> {
        let (mut loss, mut ce) = (0f64, 0f64);
        for start in (0..data.len()).step_by(eval_rows) {
            pause();
            let len = (data.len() - start).min(eval_rows);
            let (m, c) = losses(
                &data.x_rows(start, len)?,
                &data.y.narrow(0, start, len)?,
                None,
            )?;
            loss += joint(&m, &c)?.to_scalar::<f32>()? as f64 * len as f64;
            ce += c.to_scalar::<f32>()? as f64 * len as f64;
        }
        Ok((
            (loss / data.len() as f64) as f32,
            (ce / data.len() as f64) as f32,
        ))
    };

    let mut report = TrainReport {
        train_entries: train.len(),
        held_out_entries: valid.len(),
        vocab_size: vocab.len(),
        ..Default::default()
    };
    let (start_loss, start_ce) = evaluate(&valid)?;
    report.held_out_ce_start = start_ce;
    let mut best = (start_loss, 0usize, a0.clone(), b_pd0.clone());
    let mut stop = EarlyStop::new(start_loss);
    let steps = train.len().div_ceil(opts.batch_size);
    let mut prog = TrainProgress {
        max_epochs: opts.max_epochs,
        steps_per_epoch: steps,
        held_out_loss: start_loss,
        ..Default::default()
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(opts.seed);
    let mut order: Vec<u32> = (0..train.len() as u32).collect();
    report.stopped_by = "max_epochs".into();
    for epoch in 1..=opts.max_epochs {
        order.shuffle(&mut rng);
        let mut sum = 0f64;
        for (s, idx) in order.chunks(opts.batch_size).enumerate() {
            pause();
            if opts.cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
                return Err(crate::Cancelled("training cancelled; no adapter was written").into());
            }
            let mask = (opts.dropout > 0.0)
                .then(|| {
                    let keep = 1.0 / (1.0 - opts.dropout);
                    let m: Vec<f32> = (0..idx.len() * d)
                        .map(|_| {
                            if rng.random::<f32>() < opts.dropout {
                                0.0
                            } else {
                                keep
                            }
                        })
                        .collect();
                    Tensor::from_vec(m, (idx.len(), d), dev)
                })
                .transpose()?;
            let x = train.x_select(idx)?;
            let idx = Tensor::from_slice(idx, idx.len(), dev)?;
            let (m, c) = losses(&x, &train.y.index_select(&idx, 0)?, mask.as_ref())?;
            let loss = joint(&m, &c)?;
            let v = loss.to_scalar::<f32>()?;
            if !v.is_finite() {
                bail!("training diverged (loss {v} at epoch {epoch}, step {}); no adapter was written", s + 1);
            }
            opt.backward_step(&loss)?;
            sum += v as f64;
            prog.epoch = epoch;
            prog.step = s + 1;
            prog.train_loss = (sum / (s + 1) as f64) as f32;
            prog.elapsed_seconds = started.elapsed().as_secs_f64();
            progress(&prog);
        }
        let (held_loss, _) = evaluate(&valid)?;
        if !held_loss.is_finite() {
            bail!("training diverged (held-out loss {held_loss} at epoch {epoch}); no adapter was written");
        }
        prog.held_out_loss = held_loss;
        progress(&prog);
        report.epochs = epoch;
        report.train_loss = prog.train_loss;
        if stop.is_best(held_loss) {
            best = (
                held_loss,
                epoch,
                a.as_tensor().copy()?,
                b_pd.as_tensor().copy()?,
            );
        }
        if stop.is_over() {
            report.stopped_by = "early_stop".into();
            break;
        }
    }
    let (best_loss, best_epoch, a_best, b_best) = best;
    report.best_epoch = best_epoch;
    report.held_out_loss = best_loss;
    a.set(&a_best)?;
    b_pd.set(&b_best)?;
    report.held_out_ce = evaluate(&valid)?.1;
    report.seconds = started.elapsed().as_secs_f64();

    let info = AdapterInfo {
        model_identity: model.identity.clone(),
        model_name: model.name.clone(),
        template: memory.template()?.text().to_string(),
        memory_digest: memory.digest(),
        hidden_size: d,
        rank: r,
        vocab_mode: opts.vocab,
        vocab_size: vocab.len(),
        training: report,
        decoding: None,
        residual: opts.residual,
        kept_names: None,
        kept_length: None,
        marked_words: Vec::new(),
    };
    let mut adapter = Adapter {
        a: a_best,
        b_pd: b_best,
        b_rct,
        vocab,
        info,
        proj: None,
        w_c: None,
        marked_tokens: Default::default(),
    };
    super::choose_decoding(
        &mut adapter,
        memory,
        head,
        &held,
        opts.adapter_top_k,
        &pause,
    )?;
    adapter.learn_fidelity(memory, opts.held_out_percent);
    Ok(adapter)
}

#[cfg(test)]
mod tests {
    use super::EarlyStop;

    #[test]
    fn stops_at_the_second_check_in_a_row_above_the_best() {
        // The loss falls, then wobbles above its best: up, down (still above), up. Counting
        // rises over the check before would go on; counting from the best stops at the wobble.
        let mut s = EarlyStop::new(3.0);
        let mut best = vec![];
        let mut stopped_at = None;
        for (epoch, loss) in [2.0, 2.3, 2.1, 2.4, 2.5].into_iter().enumerate() {
            best.push(s.is_best(loss));
            if s.is_over() {
                stopped_at = Some(epoch + 1);
                break;
            }
        }
        assert_eq!(best, [true, false, false]);
        assert_eq!(stopped_at, Some(3));
        // A new best in between starts the count again.
        let mut s = EarlyStop::new(3.0);
        for loss in [2.0, 2.1, 1.9, 2.0] {
            s.is_best(loss);
        }
        assert!(!s.is_over());
        assert!(!s.is_best(1.9) && s.is_over());
    }
}
