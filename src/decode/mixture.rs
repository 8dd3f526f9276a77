//! P_t(w) = λ · P_PEMA(w) + (1 − λ) · P_LM(w), in log space (docs/method.md §4).

use crate::logspace::log_add_exp;

/// Mixes the model's log-probabilities `lm` (over the whole vocabulary, in place) with the
/// adapter's, which are given only over its candidate tokens `ids` (zero probability elsewhere).
pub fn mix_into(lm: &mut [f32], lambda: f32, ids: &[u32], adapter: &[f32]) {
    if lambda <= 0.0 {
        return;
    }
    let (la, lb) = (lambda.ln(), (1.0 - lambda).max(0.0).ln());
    let touched: Vec<f32> = ids.iter().map(|&i| lm[i as usize]).collect();
    for x in lm.iter_mut() {
        *x += lb;
    }
    for ((&i, &p), &orig) in ids.iter().zip(adapter).zip(&touched) {
        lm[i as usize] = log_add_exp(la + p, lb + orig);
    }
}

/// The `k` largest entries of `v`, by index (unordered). One pass, no allocation of `v`'s size.
pub fn top_k_indices(v: &[f32], k: usize) -> Vec<u32> {
    let mut top: Vec<(f32, u32)> = Vec::with_capacity(k + 1);
    let mut floor = f32::NEG_INFINITY;
    for (i, &x) in v.iter().enumerate() {
        if top.len() < k || x > floor {
            let at = top.partition_point(|&(y, _)| y >= x);
            top.insert(at, (x, i as u32));
            top.truncate(k);
            floor = top.last().map_or(f32::NEG_INFINITY, |t| t.0);
        }
    }
    top.into_iter().map(|(_, i)| i).collect()
}

/// The mixture of [`mix_into`] with two guards against the adapter taking over the content:
/// with `top_k > 0` the adapter's mass goes only to the model's `top_k` most likely tokens (it
/// re-ranks what the model finds plausible, it does not bring in words of its own), and the
/// ending tokens keep the model's own probability (the model, which sees the source, decides
/// where the rewrite ends; an adapter alone would end a sentence early and drop its last clause).
/// `ending` is sorted.
pub fn mix_guided(
    lm: &mut [f32],
    lambda: f32,
    ids: &[u32],
    adapter: &[f32],
    top_k: usize,
    ending: &[crate::model::Token],
) {
    if lambda <= 0.0 {
        return;
    }
    let allowed = (top_k > 0).then(|| {
        let mut t = top_k_indices(lm, top_k);
        t.sort_unstable();
        t
    });
    let ends: Vec<f32> = ending.iter().map(|&e| lm[e as usize]).collect();
    let (la, lb) = (lambda.ln(), (1.0 - lambda).max(0.0).ln());
    let touched: Vec<f32> = ids.iter().map(|&i| lm[i as usize]).collect();
    for x in lm.iter_mut() {
        *x += lb;
    }
    for ((&i, &p), &orig) in ids.iter().zip(adapter).zip(&touched) {
        if allowed.as_ref().is_none_or(|a| a.binary_search(&i).is_ok()) {
            lm[i as usize] = log_add_exp(la + p, lb + orig);
        }
    }
    for (&e, &orig) in ending.iter().zip(&ends) {
        lm[e as usize] = orig;
    }
}

/// λ at one step under a style gate (docs/method.md §8.8): the whole λ where the adapter's
/// likeliest token (`ids`, `adapter`: its distribution) is a marked word (`marked`,
/// ascending), `λ · gate` elsewhere; λ itself with no gate or no marked words.
pub fn gated_lambda(
    lambda: f32,
    gate: Option<f32>,
    marked: &[u32],
    ids: &[u32],
    adapter: &[f32],
) -> f32 {
    match gate {
        Some(g) if !marked.is_empty() && !adapter.is_empty() => {
            let top = ids[crate::logspace::argmax(adapter)];
            if marked.binary_search(&top).is_ok() {
                lambda
            } else {
                lambda * g
            }
        }
        _ => lambda,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logspace::log_softmax;

    #[test]
    fn log_softmax_normalises() {
        let mut v = vec![1.0, 2.0, 3.0];
        log_softmax(&mut v);
        let s: f32 = v.iter().map(|x| x.exp()).sum();
        assert!((s - 1.0).abs() < 1e-6);
        // softmax(1,2,3) = (0.0900306, 0.2447285, 0.6652410)
        assert!((v[2].exp() - 0.665241).abs() < 1e-6);
    }

    #[test]
    fn mixture_against_hand_computed_values() {
        // P_LM = (0.5, 0.25, 0.25); adapter over tokens {2, 0} with P = (0.8, 0.2); λ = 0.25.
        // P = 0.25·P_A + 0.75·P_LM = (0.25·0.2 + 0.375, 0.1875, 0.25·0.8 + 0.1875)
        //   = (0.425, 0.1875, 0.3875)
        let mut lm: Vec<f32> = [0.5f32, 0.25, 0.25].iter().map(|p| p.ln()).collect();
        let adapter: Vec<f32> = [0.8f32, 0.2].iter().map(|p| p.ln()).collect();
        mix_into(&mut lm, 0.25, &[2, 0], &adapter);
        let p: Vec<f32> = lm.iter().map(|x| x.exp()).collect();
        for (got, want) in p.iter().zip([0.425, 0.1875, 0.3875]) {
            assert!((got - want).abs() < 1e-6, "{p:?}");
        }
    }

    #[test]
    fn top_k_and_guided_mixture() {
        let v = [0.1f32, 5.0, -2.0, 3.0, 3.5, f32::NEG_INFINITY];
        let mut t = top_k_indices(&v, 3);
        t.sort_unstable();
        assert_eq!(t, vec![1, 3, 4]);
        assert_eq!(top_k_indices(&v, 0), Vec::<u32>::new());
        // P_LM = (0.5, 0.3, 0.15, 0.05); token 3 ends. Adapter: token 2 → 0.9, token 3 → 0.1.
        let lm0: Vec<f32> = [0.5f32, 0.3, 0.15, 0.05].iter().map(|p| p.ln()).collect();
        let ad: Vec<f32> = [0.9f32, 0.1].iter().map(|p| p.ln()).collect();
        // Unrestricted: token 2 gets 0.5·0.9 + 0.5·0.15; the ending token keeps 0.05.
        let mut lm = lm0.clone();
        mix_guided(&mut lm, 0.5, &[2, 3], &ad, 0, &[3]);
        assert!((lm[2].exp() - 0.525).abs() < 1e-6);
        assert!((lm[3].exp() - 0.05).abs() < 1e-6);
        assert!((lm[0].exp() - 0.25).abs() < 1e-6);
        // Top-2 of the model is {0, 1}: token 2 is not the model's, so the adapter cannot lift it.
        let mut lm = lm0.clone();
        mix_guided(&mut lm, 0.5, &[2, 3], &ad, 2, &[3]);
        assert!((lm[2].exp() - 0.075).abs() < 1e-6);
    }

    #[test]
    fn gate_gives_the_whole_lambda_only_to_a_marked_word() {
        let ids = [3u32, 7, 9];
        let to_7 = [0.1f32.ln(), 0.7f32.ln(), 0.2f32.ln()];
        let to_9 = [0.1f32.ln(), 0.2f32.ln(), 0.7f32.ln()];
        assert_eq!(gated_lambda(0.9, Some(0.5), &[7], &ids, &to_7), 0.9);
        assert!((gated_lambda(0.9, Some(0.5), &[7], &ids, &to_9) - 0.45).abs() < 1e-6);
        assert_eq!(gated_lambda(0.9, Some(0.0), &[7], &ids, &to_9), 0.0);
        // No gate, or nothing marked: the schedule's λ.
        assert_eq!(gated_lambda(0.9, None, &[7], &ids, &to_9), 0.9);
        assert_eq!(gated_lambda(0.9, Some(0.5), &[], &ids, &to_9), 0.9);
    }

    #[test]
    fn extreme_lambdas_and_large_logits() {
        let mut lm = vec![(0.6f32).ln(), (0.4f32).ln()];
        mix_into(&mut lm, 0.0, &[0], &[0.0]);
        assert!((lm[0].exp() - 0.6).abs() < 1e-6);
        mix_into(&mut lm, 1.0, &[1], &[0.0]);
        assert_eq!(lm[0], f32::NEG_INFINITY);
        assert!((lm[1]).abs() < 1e-6);
        assert!((log_add_exp(-1000.0, -1000.0) - (-1000.0 + 2f32.ln())).abs() < 1e-3);
    }
}
