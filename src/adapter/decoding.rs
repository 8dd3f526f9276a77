//! How an adapter rewrites by default: the mixing schedule (fixed λ, or Gradual Unrolling with
//! a floor) that gives its held-out pairs the highest likelihood, teacher-forced. Chosen at
//! training time from the memory alone (hidden states and the LM head: the offsite property
//! holds), never from evaluation data.

use anyhow::Result;
use candle_core::{Device, Tensor};

use super::Adapter;
use crate::decode::{log_add_exp, log_softmax, Mode, RewriteOptions, Schedule};
use crate::memory::Memory;
use crate::model::LmHead;

/// A stored choice of schedule.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Decoding {
    pub mode: Mode,
    /// λ of the fixed mode.
    pub lambda: f32,
    pub lambda_max: f32,
    pub lambda_floor: f32,
    /// Mean negative log-likelihood of the held-out targets under this schedule.
    pub held_out_nll: f64,
    /// The plain model's, for comparison.
    pub plain_nll: f64,
}

impl Decoding {
    pub fn apply(&self, o: &mut RewriteOptions) {
        o.mode = self.mode;
        o.lambda_fixed = self.lambda;
        o.lambda_max = self.lambda_max;
        o.lambda_floor = self.lambda_floor;
    }
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct DecodingScore {
    pub decoding: Decoding,
    pub nll: f64,
}

/// The schedules tried.
fn candidates() -> Vec<Decoding> {
    let base = Decoding {
        mode: Mode::Gu,
        lambda: 0.5,
        lambda_max: 0.9,
        lambda_floor: 0.0,
        held_out_nll: 0.0,
        plain_nll: 0.0,
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

/// Most held-out rows looked at (whole pairs): W·h over the full vocabulary is the cost.
const MAX_ROWS: usize = 1024;

/// Scores every candidate schedule on the memory's held-out pairs and stores the best in the
/// adapter. Returns every score (best first).
pub fn choose_decoding(
    adapter: &mut Adapter,
    memory: &Memory,
    head: &LmHead,
    held_out: &[bool],
) -> Result<Vec<DecodingScore>> {
    adapter.prepare(head)?;
    let vocab_pos: std::collections::HashMap<u32, usize> = adapter
        .vocab()
        .iter()
        .enumerate()
        .map(|(i, &t)| (t, i))
        .collect();
    // (position in its pair, the pair's target length, log P_LM(y), log P_PEMA(y)).
    let mut rows: Vec<(usize, usize, f32, f32)> = Vec::new();
    let tokens = memory.tokens();
    for (g, _) in memory.groups().iter().zip(held_out).filter(|(_, &h)| h) {
        if rows.len() >= MAX_ROWS {
            break;
        }
        let (first, n) = (g.first_row as usize, g.rows as usize);
        let keys = memory.keys_f32(first..first + n);
        let d = memory.hidden_size();
        let x = Tensor::from_slice(&keys, (n, d), &Device::Cpu)?;
        let logits = head.logits(&x)?.to_vec2::<f32>()?;
        for (t, mut lm) in logits.into_iter().enumerate() {
            let y = tokens[first + t];
            log_softmax(&mut lm);
            let h = &keys[t * d..(t + 1) * d];
            let pema = match vocab_pos.get(&y) {
                Some(&i) => adapter.log_probs(h)?[i],
                None => f32::NEG_INFINITY,
            };
            rows.push((t, n.saturating_sub(1).max(1), lm[y as usize], pema));
        }
    }
    let nll = |d: &Decoding| -> f64 {
        let mut sum = 0f64;
        for &(t, len, lm, pema) in &rows {
            let lambda = match d.mode {
                Mode::Plain => 0.0,
                Mode::Fixed => d.lambda,
                Mode::Gu => Schedule::Gu {
                    lambda_max: d.lambda_max,
                    expected_len: len,
                    floor: d.lambda_floor,
                }
                .lambdas()
                .nth(t)
                .unwrap_or(0.0),
            };
            let p = if lambda <= 0.0 {
                lm
            } else {
                log_add_exp(lambda.ln() + pema, (1.0 - lambda).max(1e-9).ln() + lm)
            };
            sum -= p.max(-30.0) as f64;
        }
        sum / rows.len().max(1) as f64
    };
    let plain_nll = nll(&Decoding {
        mode: Mode::Plain,
        ..candidates()[0]
    });
    let mut scores: Vec<DecodingScore> = candidates()
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
