//! Choosing an adapter's default schedule by rewriting its own held-out pairs.
//!
//! The teacher-forced choice (`adapter::choose_decoding`) scores each schedule on the held-out
//! targets' likelihood; that favours a strong adapter, which then drifts from the source once it
//! generates freely (measured: BENCHMARKS.md, "Style quality"). Here each candidate rewrites the
//! held-out sources, greedy, exactly as a user's rewrite would run, and the one whose rewrites
//! match their targets best (corpus BLEU) becomes the default. These pairs are the user's own
//! training data, split off by hash: never evaluation data.

use std::sync::atomic::AtomicBool;

use anyhow::Result;

use super::{corpus_bleu, corpus_chrf, is_degenerate};
use crate::adapter::{Adapter, Decoding};
use crate::decode::{self, Mode, RewriteOptions};
use crate::memory::{Pair, Template};
use crate::model::Session;

/// Pairs every candidate rewrites, then the pairs the best few rewrite on top (successive
/// halving: most of the time goes to the candidates that can win).
const FIRST_ROUND: usize = 12;
const SECOND_ROUND: usize = 36;
const FINALISTS: usize = 2;
/// Below this many held-out pairs the choice would be noise: the teacher-forced one stays.
pub const MIN_PAIRS: usize = 6;

/// How one candidate schedule did on the held-out pairs.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ScheduleScore {
    /// The schedule (mode and λ values).
    pub decoding: Decoding,
    /// Held-out pairs it rewrote: the finalists rewrite more than the others.
    pub pairs: usize,
    /// Corpus BLEU (0–100) of its rewrites against the targets.
    pub bleu: f64,
    /// chrF against the sources: how much of them the rewrites keep.
    pub chrf_source: f64,
    /// Rewrites that loop or run far past the source ([`super::is_degenerate`]).
    pub degenerate: usize,
}

/// How far [`choose_schedule`] is, in rewrites of one held-out pair by one candidate.
#[derive(Clone, Copy, Debug)]
pub struct TuneProgress {
    /// Rewrites done.
    pub done: usize,
    /// Rewrites to do in all.
    pub total: usize,
}

/// The schedules tried: fixed λ from faithful to strong, Gradual Unrolling with a floor, and
/// the teacher-forced choice when it is none of these.
fn candidates(adapter: &Adapter) -> Vec<Decoding> {
    let reference = RewriteOptions::default();
    let base = adapter.info().decoding.unwrap_or(Decoding {
        mode: Mode::Fixed,
        lambda: reference.lambda_fixed,
        lambda_max: reference.lambda_max,
        lambda_floor: reference.lambda_floor,
        adapter_top_k: crate::adapter::ADAPTER_TOP_K,
        held_out_nll: f64::NAN,
        plain_nll: f64::NAN,
        held_out_bleu: None,
    });
    let mut out: Vec<Decoding> = [0.3, 0.5, 0.7, 0.9]
        .into_iter()
        .map(|lambda| Decoding {
            mode: Mode::Fixed,
            lambda,
            ..base
        })
        .collect();
    out.push(Decoding {
        mode: Mode::Gu,
        lambda_max: reference.lambda_max,
        lambda_floor: 0.3,
        ..base
    });
    let same = |a: &Decoding, b: &Decoding| {
        a.mode == b.mode
            && match a.mode {
                Mode::Fixed => a.lambda == b.lambda,
                Mode::Gu => a.lambda_max == b.lambda_max && a.lambda_floor == b.lambda_floor,
                Mode::Plain => true,
            }
    };
    if !out.iter().any(|c| same(c, &base)) {
        out.push(base);
    }
    out
}

/// Rewrites the held-out `pairs` with each candidate schedule, stores the best in the adapter
/// and returns every score (best first). With fewer than [`MIN_PAIRS`] pairs it changes nothing
/// and returns no scores.
pub fn choose_schedule(
    session: &mut Session,
    adapter: &mut Adapter,
    template: &Template,
    pairs: &[Pair],
    cancel: Option<&AtomicBool>,
    mut progress: impl FnMut(TuneProgress),
) -> Result<Vec<ScheduleScore>> {
    if pairs.len() < MIN_PAIRS {
        return Ok(vec![]);
    }
    let cands = candidates(adapter);
    let first = pairs.len().min(FIRST_ROUND);
    let all = pairs.len().min(SECOND_ROUND);
    let finalists = FINALISTS.min(cands.len());
    let mut p = TuneProgress {
        done: 0,
        total: cands.len() * first + finalists * (all - first),
    };
    progress(p);
    // Each candidate's outputs so far, in pair order.
    let mut outputs: Vec<Vec<String>> = vec![Vec::new(); cands.len()];
    let mut alive: Vec<usize> = (0..cands.len()).collect();
    for (round, upto) in [first, all].into_iter().enumerate() {
        for &c in &alive {
            let opts = RewriteOptions::default().with_decoding(&cands[c]);
            for pair in &pairs[outputs[c].len()..upto] {
                let r = decode::rewrite_text(
                    session,
                    Some(adapter),
                    template,
                    &pair.source,
                    &opts,
                    |_| {},
                    cancel,
                )?;
                outputs[c].push(r.text);
                p.done += 1;
                progress(p);
            }
        }
        if round == 0 {
            let score = |c: &usize| bleu_of(&outputs[*c], &pairs[..first]);
            alive.sort_by(|a, b| score(b).total_cmp(&score(a)).then(a.cmp(b)));
            alive.truncate(finalists);
        }
    }
    let mut scores: Vec<ScheduleScore> = (0..cands.len())
        .map(|c| {
            let n = outputs[c].len();
            let sources: Vec<String> = pairs[..n].iter().map(|p| p.source.clone()).collect();
            ScheduleScore {
                decoding: cands[c],
                pairs: n,
                bleu: bleu_of(&outputs[c], &pairs[..n]),
                chrf_source: corpus_chrf(&outputs[c], &sources),
                degenerate: outputs[c]
                    .iter()
                    .zip(&sources)
                    .filter(|(o, s)| is_degenerate(o, s))
                    .count(),
            }
        })
        .collect();
    // The finalists first (scored on more pairs), best BLEU first; the sort is stable, so ties
    // go to the earlier, more faithful candidate.
    scores.sort_by(|a, b| b.pairs.cmp(&a.pairs).then(b.bleu.total_cmp(&a.bleu)));
    let best = &scores[0];
    adapter.set_decoding(Decoding {
        held_out_bleu: Some(best.bleu),
        ..best.decoding
    });
    Ok(scores)
}

fn bleu_of(outputs: &[String], pairs: &[Pair]) -> f64 {
    let refs: Vec<String> = pairs[..outputs.len()]
        .iter()
        .map(|p| p.target.clone())
        .collect();
    corpus_bleu(outputs, &refs)
}
