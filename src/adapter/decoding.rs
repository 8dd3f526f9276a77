//! How an adapter rewrites by default: the mixing schedule (fixed λ, or Gradual Unrolling with
//! a floor) that gives its held-out pairs the highest likelihood, teacher-forced. Chosen at
//! training time from the memory alone (hidden states and the LM head: the offsite property
//! holds), never from evaluation data.

use anyhow::Result;
use candle_core::{Device, Tensor};

use super::Adapter;
use crate::logspace::log_softmax;
use crate::memory::Memory;
use crate::model::LmHead;
use crate::schedule::{self, Mode, Schedule};

/// A stored choice of schedule.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Decoding {
    /// Which schedule: plain model, fixed λ or Gradual Unrolling.
    pub mode: Mode,
    /// λ of the fixed mode.
    pub lambda: f32,
    /// λ_max of the GU mode: the adapter's weight at the first generated token.
    pub lambda_max: f32,
    /// The GU mode's floor: λ_t never falls below it.
    pub lambda_floor: f32,
    /// The adapter lifts only the model's this many most likely tokens (0: any).
    #[serde(default)]
    pub adapter_top_k: usize,
    /// Mean negative log-likelihood of the held-out targets under this schedule.
    pub held_out_nll: f64,
    /// The plain model's, for comparison.
    pub plain_nll: f64,
    /// BLEU of this schedule's rewrites of the held-out pairs, when it was chosen by rewriting
    /// them (`eval::choose_schedule`) rather than by likelihood alone.
    #[serde(default)]
    pub held_out_bleu: Option<f64>,
    /// λ is multiplied by this wherever the adapter's likeliest token is no marked word
    /// (`AdapterInfo::marked_words`): chosen by rewriting held-out pairs
    /// (`eval::choose_style_gate`); None mixes alike at every token.
    #[serde(default)]
    pub style_gate: Option<f32>,
    /// BLEU of the held-out rewrites without and with the style gate, when it was tried.
    #[serde(default)]
    pub style_gate_bleu: Option<[f64; 2]>,
}

/// One candidate schedule and how it scored on the held-out pairs.
#[derive(Clone, Debug, serde::Serialize)]
pub struct DecodingScore {
    /// The schedule, with its `held_out_nll` and `plain_nll` filled in.
    pub decoding: Decoding,
    /// Mean negative log-likelihood (nats per target token) of the held-out targets under it.
    pub nll: f64,
}

/// The schedules tried.
fn candidates(adapter_top_k: usize) -> Vec<Decoding> {
    let base = Decoding {
        mode: Mode::Gu,
        lambda: schedule::REFERENCE_LAMBDA_FIXED,
        lambda_max: schedule::REFERENCE_LAMBDA_MAX,
        lambda_floor: schedule::REFERENCE_LAMBDA_FLOOR,
        adapter_top_k,
        held_out_nll: 0.0,
        plain_nll: 0.0,
        held_out_bleu: None,
        style_gate: None,
        style_gate_bleu: None,
    };
    let mut out = Vec::new();
    for l in [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0] {
        out.push(Decoding {
            mode: Mode::Fixed,
            lambda: l,
            ..base
        });
    }
    for f in [0.0, 0.1, 0.2, 0.3, 0.4, 0.5] {
        out.push(Decoding {
            lambda_floor: f,
            ..base
        });
    }
    out
}

/// How many of the model's most likely tokens the adapter may lift by default: 0, any token.
/// Restricting it to the model's top 10 (with the model deciding where a rewrite ends) was
/// measured and not kept: on the Bible adapter's held-out pairs it kept no more of the source
/// (chrF against the source 70.7 at λ 0.9), and it stops an adapter from writing a word the
/// model would not (the invented-word test: 0.21 of rewrites against 0.5 required). It stays
/// available as `--adapter-top-k`. λ is chosen on the reference mixture either way.
pub const ADAPTER_TOP_K: usize = 0;

/// Most held-out rows looked at (whole pairs): W·h over the full vocabulary is the cost.
const MAX_ROWS: usize = 1024;

/// One held-out entry: its place in its pair and the two probabilities of its target.
struct Row {
    t: usize,
    len: usize,
    lm_y: f64,
    pema_y: f64,
}

/// Scores every candidate schedule on the memory's held-out pairs (the reference mixture;
/// `adapter_top_k` is only stored with the choice) and stores the best in the adapter. `pause`
/// runs before each pair (see [`super::TrainOptions::pause`]).
/// Returns every score (best first).
pub fn choose_decoding(
    adapter: &mut Adapter,
    memory: &Memory,
    head: &LmHead,
    held_out: &[bool],
    adapter_top_k: usize,
    pause: &dyn Fn(),
) -> Result<Vec<DecodingScore>> {
    adapter.prepare(head)?;
    let vocab_pos: std::collections::HashMap<u32, usize> = adapter
        .vocab()
        .iter()
        .enumerate()
        .map(|(i, &t)| (t, i))
        .collect();
    let tokens = memory.tokens();
    let d = memory.hidden_size();
    let mut rows: Vec<Row> = Vec::new();
    for (g, _) in memory.groups().iter().zip(held_out).filter(|(_, &h)| h) {
        if rows.len() >= MAX_ROWS {
            break;
        }
        pause();
        let (first, n) = (g.first_row as usize, g.rows as usize);
        let keys = memory.keys_f32(first..first + n);
        let x = Tensor::from_slice(&keys, (n, d), &Device::Cpu)?;
        let logits = head.logits(&x)?.to_vec2::<f32>()?;
        for (t, mut lm) in logits.into_iter().enumerate() {
            let y = tokens[first + t];
            log_softmax(&mut lm);
            let pema_y = match vocab_pos.get(&y) {
                Some(&i) => (adapter.log_probs(&keys[t * d..(t + 1) * d])?[i] as f64).exp(),
                None => 0.0,
            };
            rows.push(Row {
                t,
                len: n.saturating_sub(1).max(1),
                lm_y: (lm[y as usize] as f64).exp(),
                pema_y,
            });
        }
    }
    let nll = |d: &Decoding| -> f64 {
        let mut sum = 0f64;
        for r in &rows {
            let lambda = match d.mode {
                Mode::Plain => 0.0,
                Mode::Fixed => d.lambda,
                Mode::Gu => Schedule::Gu {
                    lambda_max: d.lambda_max,
                    expected_len: r.len,
                    floor: d.lambda_floor,
                }
                .lambdas()
                .nth(r.t)
                .unwrap_or(0.0),
            } as f64;
            let p = lambda * r.pema_y + (1.0 - lambda) * r.lm_y;
            sum -= p.max(1e-13).ln();
        }
        sum / rows.len().max(1) as f64
    };
    let plain_nll = nll(&Decoding {
        mode: Mode::Plain,
        ..candidates(adapter_top_k)[0]
    });
    let mut scores: Vec<DecodingScore> = candidates(adapter_top_k)
        .into_iter()
        .map(|d| {
            let v = nll(&d);
            DecodingScore {
                decoding: Decoding {
                    held_out_nll: v,
                    plain_nll,
                    ..d
                },
                nll: v,
            }
        })
        .collect();
    scores.sort_by(|a, b| a.nll.total_cmp(&b.nll));
    if !rows.is_empty() {
        adapter.info.decoding = Some(scores[0].decoding);
    }
    Ok(scores)
}
