//! Arithmetic on log-probabilities, shared by the adapter (its held-out likelihoods) and the
//! decoder (the mixture): a leaf, so that neither has to import the other for it.

/// log-softmax of `logits`, in place.
#[inline]
pub fn log_softmax(logits: &mut [f32]) {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = logits.iter().map(|&x| (x - max).exp()).sum();
    let lse = max + sum.ln();
    for x in logits.iter_mut() {
        *x -= lse;
    }
}

/// log(e^a + e^b) without overflow.
#[inline]
pub fn log_add_exp(a: f32, b: f32) -> f32 {
    if a == f32::NEG_INFINITY {
        return b;
    }
    if b == f32::NEG_INFINITY {
        return a;
    }
    let m = a.max(b);
    m + ((a - m).exp() + (b - m).exp()).ln()
}

/// The index of the largest value (the first, on ties).
#[inline]
pub fn argmax(v: &[f32]) -> usize {
    let mut best = (0, f32::NEG_INFINITY);
    for (i, &x) in v.iter().enumerate() {
        if x > best.1 {
            best = (i, x);
        }
    }
    best.0
}
