//! Style accuracy: a logistic-regression classifier over hashed word and character n-grams,
//! trained on a workspace's pairs (sources = 0, targets = 1). The share of rewrites it puts on
//! the target side is one number that works for any style, not only for the shipped sets.
//!
//! Hand-written rather than linfa-logistic: the features are 2^18 sparse hashed n-grams, and a
//! dense design matrix of that width would not fit; sparse SGD is a few lines.

use rand::seq::SliceRandom;
use rand::SeedableRng;

const BITS: u32 = 18;
const DIM: usize = 1 << BITS;

/// Hashed n-gram features of a text, each with weight 1/sqrt(count) so long texts do not
/// dominate.
pub fn features(text: &str) -> Vec<(usize, f32)> {
    let lower = text.to_lowercase();
    let words: Vec<&str> = lower
        .split(|c: char| !c.is_alphanumeric() && c != '\'')
        .filter(|w| !w.is_empty())
        .collect();
    let mut ids: Vec<usize> = Vec::new();
    let h = |kind: u8, s: &str| -> usize {
        let mut hasher = blake3::Hasher::new();
        hasher.update(&[kind]);
        hasher.update(s.as_bytes());
        let b = hasher.finalize();
        (u64::from_le_bytes(b.as_bytes()[..8].try_into().unwrap()) as usize) & (DIM - 1)
    };
    for (i, w) in words.iter().enumerate() {
        ids.push(h(1, w));
        if let Some(next) = words.get(i + 1) {
            ids.push(h(2, &format!("{w} {next}")));
        }
        let chars: Vec<char> = format!("<{w}>").chars().collect();
        for n in 3..=5 {
            for win in chars.windows(n) {
                ids.push(h(3, &win.iter().collect::<String>()));
            }
        }
    }
    // Punctuation and capitalisation carry style too.
    for c in text.chars().filter(|c| c.is_ascii_punctuation()) {
        ids.push(h(4, &c.to_string()));
    }
    ids.sort_unstable();
    let mut out: Vec<(usize, f32)> = Vec::new();
    for id in ids {
        match out.last_mut() {
            Some((last, v)) if *last == id => *v += 1.0,
            _ => out.push((id, 1.0)),
        }
    }
    let norm = out.iter().map(|(_, v)| v * v).sum::<f32>().sqrt().max(1e-6);
    for (_, v) in &mut out {
        *v /= norm;
    }
    out
}

/// Tells text in the target style from text in the source style: logistic regression over
/// hashed word and character n-grams, trained on a workspace's pairs.
pub struct StyleClassifier {
    w: Vec<f32>,
    b: f32,
}

impl StyleClassifier {
    /// Trains on `(text, is_target_style)` examples: SGD on the logistic loss with L2, a fixed
    /// seed and a fixed number of epochs (deterministic).
    pub fn train(examples: &[(&str, bool)]) -> Self {
        let data: Vec<(Vec<(usize, f32)>, f32)> = examples
            .iter()
            .map(|(t, y)| (features(t), if *y { 1.0 } else { 0.0 }))
            .collect();
        let mut w = vec![0f32; DIM];
        let mut b = 0f32;
        let mut order: Vec<usize> = (0..data.len()).collect();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let l2 = 1e-5f32;
        for epoch in 0..10 {
            let lr = 0.5 / (1.0 + epoch as f32);
            order.shuffle(&mut rng);
            for &i in &order {
                let (x, y) = &data[i];
                let z = b + x.iter().map(|&(j, v)| w[j] * v).sum::<f32>();
                let g = 1.0 / (1.0 + (-z).exp()) - y;
                for &(j, v) in x {
                    w[j] -= lr * (g * v + l2 * w[j]);
                }
                b -= lr * g;
            }
        }
        Self { w, b }
    }

    /// P(target style | text).
    pub fn probability(&self, text: &str) -> f32 {
        let z = self.b
            + features(text)
                .iter()
                .map(|&(j, v)| self.w[j] * v)
                .sum::<f32>();
        1.0 / (1.0 + (-z).exp())
    }

    /// Whether the classifier puts `text` on the target side (probability above 0.5).
    pub fn is_target_style(&self, text: &str) -> bool {
        self.probability(text) > 0.5
    }

    /// Share of `texts` classified as the target style.
    pub fn accuracy(&self, texts: &[String]) -> f64 {
        if texts.is_empty() {
            return 0.0;
        }
        texts.iter().filter(|t| self.is_target_style(t)).count() as f64 / texts.len() as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learns_a_register_and_generalises_to_unseen_sentences() {
        let plain = [
            "You have heard the voice of the Lord and you will go.",
            "He said to them, go into the town and get food.",
            "Do not be afraid, for I am with you.",
            "And you will give him your money.",
            "They went up to the mountain and said to him.",
            "You are the light of the world.",
            "Your father has sent you to us.",
            "Why do you say these things to me?",
        ];
        let archaic = [
            "Thou hast heard the voice of the Lord and thou shalt go.",
            "He said unto them, Go ye into the city and buy food.",
            "Fear not, for I am with thee.",
            "And thou shalt give him thy money.",
            "They went up into the mountain and said unto him.",
            "Ye are the light of the world.",
            "Thy father hath sent thee unto us.",
            "Wherefore sayest thou these things unto me?",
        ];
        let mut ex: Vec<(&str, bool)> = plain.iter().map(|t| (*t, false)).collect();
        ex.extend(archaic.iter().map(|t| (*t, true)));
        let c = StyleClassifier::train(&ex);
        assert!(c.is_target_style("And thou shalt say unto thy brother, Go ye hence."));
        assert!(!c.is_target_style("And you will say to your brother, go from here."));
        let all: Vec<String> = archaic.iter().map(|s| s.to_string()).collect();
        assert_eq!(c.accuracy(&all), 1.0);
    }

    #[test]
    fn features_are_normalised_and_deterministic() {
        let f = features("Thou art, thou art.");
        assert_eq!(f, features("Thou art, thou art."));
        let n: f32 = f.iter().map(|(_, v)| v * v).sum();
        assert!((n - 1.0).abs() < 1e-4);
        assert!(features("").is_empty());
    }
}
