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
        style_gate: None,
        style_gate_bleu: None,
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
                let text = rewrite_held_out(
                    session,
                    adapter,
                    template,
                    &pair.source,
                    &opts,
                    cancel,
                    None,
                )?;
                outputs[c].push(text);
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

/// The gate tried ([`choose_style_gate`]): half of λ where the adapter reaches for no marked
/// word.
pub const STYLE_GATE: f32 = 0.5;
/// Held-out pairs the gate is tried on, with and without it.
pub const STYLE_GATE_PAIRS: usize = 24;

/// How [`choose_style_gate`] shares its session with rewrites a user waits for (the daemon's
/// worker): when `interrupt` turns true the held-out rewrite stops, `serve` runs the waiting
/// ones, and the pair is rewritten again.
pub struct GiveWay<'a> {
    /// True while a user's rewrite waits.
    pub interrupt: &'a AtomicBool,
    /// Serves the waiting rewrites with the session.
    pub serve: &'a dyn Fn(&mut Session),
}

/// How the adapter's default rewrote its held-out pairs with and without the style gate.
#[derive(Clone, Debug, serde::Serialize)]
pub struct StyleGateChoice {
    /// Held-out pairs rewritten by each.
    pub pairs: usize,
    /// Corpus BLEU against their targets without the gate…
    pub bleu_without: f64,
    /// …and with it.
    pub bleu_with: f64,
    /// Whether the gate became the adapter's default (it scored higher).
    pub gated: bool,
}

/// Rewrites up to [`STYLE_GATE_PAIRS`] held-out `pairs` with the adapter's default, with and
/// without the style gate (docs/method.md §8.8), and keeps the gate in its default when it
/// scores the higher BLEU. A gate helps where the adapter drifts from the source (the Bible
/// pairs) and hurts where the style reaches beyond its marked words (German verbs that
/// follow a formal "Sie"), so each workspace's own pairs decide. Nothing is tried for an
/// adapter without marked words or a stored schedule, or with fewer than [`MIN_PAIRS`] pairs.
/// `cancel` stops it (an error); `progress` is called after every rewrite.
pub fn choose_style_gate(
    session: &mut Session,
    adapter: &mut Adapter,
    template: &Template,
    pairs: &[Pair],
    cancel: Option<&AtomicBool>,
    give_way: Option<GiveWay<'_>>,
    mut progress: impl FnMut(TuneProgress),
) -> Result<Option<StyleGateChoice>> {
    let Some(decoding) = adapter
        .info()
        .decoding
        .filter(|_| can_try_style_gate(adapter, pairs))
    else {
        return Ok(None);
    };
    let pairs = &pairs[..pairs.len().min(STYLE_GATE_PAIRS)];
    let mut p = TuneProgress {
        done: 0,
        total: 2 * pairs.len(),
    };
    progress(p);
    let mut bleu = [0.0; 2];
    for (b, gate) in bleu.iter_mut().zip([None, Some(STYLE_GATE)]) {
        let opts = RewriteOptions {
            style_gate: gate,
            ..adapter.default_rewrite()
        };
        let mut outputs = Vec::with_capacity(pairs.len());
        for pair in pairs {
            outputs.push(rewrite_held_out(
                session,
                adapter,
                template,
                &pair.source,
                &opts,
                cancel,
                give_way.as_ref(),
            )?);
            p.done += 1;
            progress(p);
        }
        *b = bleu_of(&outputs, pairs);
    }
    let gated = bleu[1] > bleu[0];
    adapter.set_decoding(Decoding {
        style_gate: gated.then_some(STYLE_GATE),
        style_gate_bleu: Some(bleu),
        ..decoding
    });
    Ok(Some(StyleGateChoice {
        pairs: pairs.len(),
        bleu_without: bleu[0],
        bleu_with: bleu[1],
        gated,
    }))
}

/// Whether [`choose_style_gate`] has anything to try: a stored schedule, marked words and at
/// least [`MIN_PAIRS`] held-out pairs (so that a caller need not set up rewrites for nothing).
pub fn can_try_style_gate(adapter: &Adapter, pairs: &[Pair]) -> bool {
    adapter.info().decoding.is_some()
        && !adapter.info().marked_words.is_empty()
        && pairs.len() >= MIN_PAIRS
}

/// One held-out source rewritten as a user's rewrite runs. With `give_way`, a user's rewrite
/// that comes to wait stops it, is served, and the source is rewritten again.
fn rewrite_held_out(
    session: &mut Session,
    adapter: &Adapter,
    template: &Template,
    source: &str,
    opts: &RewriteOptions,
    cancel: Option<&AtomicBool>,
    give_way: Option<&GiveWay<'_>>,
) -> Result<String> {
    loop {
        if cancel.is_some_and(|c| c.load(std::sync::atomic::Ordering::Relaxed)) {
            return Err(crate::Cancelled("rewriting held-out pairs cancelled").into());
        }
        let stop = give_way.map(|g| g.interrupt).or(cancel);
        match decode::rewrite_text(session, Some(adapter), template, source, opts, |_| {}, stop) {
            Ok(r) => return Ok(r.text),
            Err(e) if crate::is_cancelled(&e) && give_way.is_some() => {
                (give_way.unwrap().serve)(session)
            }
            Err(e) => return Err(e),
        }
    }
}

fn bleu_of(outputs: &[String], pairs: &[Pair]) -> f64 {
    let refs: Vec<String> = pairs[..outputs.len()]
        .iter()
        .map(|p| p.target.clone())
        .collect();
    corpus_bleu(outputs, &refs)
}
