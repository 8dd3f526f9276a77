//! Corpus BLEU and chrF, computed as sacreBLEU 2.x computes them by default: BLEU with the 13a
//! tokenizer, 4-grams, exponential smoothing and one reference; chrF with character 6-grams,
//! β = 2, whitespace removed. The unit tests pin values produced by sacreBLEU 2.6.0.

use std::collections::HashMap;
use std::sync::OnceLock;

use regex::Regex;

/// sacreBLEU's `13a` tokenizer (mteval-v13a).
pub fn tokenize_13a(line: &str) -> String {
    static RULES: OnceLock<[(Regex, &str); 4]> = OnceLock::new();
    let rules = RULES.get_or_init(|| {
        [
            (
                Regex::new(r"([\{-\~\[-\` -\&\(-\+\:-\@/])").unwrap(),
                " $1 ",
            ),
            (Regex::new(r"([^0-9])([\.,])").unwrap(), "$1 $2 "),
            (Regex::new(r"([\.,])([^0-9])").unwrap(), " $1 $2"),
            (Regex::new(r"([0-9])(-)").unwrap(), "$1 $2 "),
        ]
    });
    let mut s = line
        .replace("<skipped>", "")
        .replace("-\n", "")
        .replace('\n', " ");
    if s.contains('&') {
        s = s
            .replace("&quot;", "\"")
            .replace("&amp;", "&")
            .replace("&lt;", "<")
            .replace("&gt;", ">");
    }
    let mut s = format!(" {s} ");
    for (re, rep) in rules.iter() {
        s = re.replace_all(&s, *rep).into_owned();
    }
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn ngrams<T: std::hash::Hash + Eq + Clone>(items: &[T], n: usize) -> HashMap<&[T], usize> {
    let mut m = HashMap::new();
    if items.len() >= n {
        for w in items.windows(n) {
            *m.entry(w).or_insert(0) += 1;
        }
    }
    m
}

/// Corpus BLEU (0–100) of `hyps` against one reference each.
pub fn corpus_bleu(hyps: &[String], refs: &[String]) -> f64 {
    assert_eq!(hyps.len(), refs.len());
    let (mut correct, mut total) = ([0usize; 4], [0usize; 4]);
    let (mut sys_len, mut ref_len) = (0usize, 0usize);
    for (h, r) in hyps.iter().zip(refs) {
        let ht = tokenize_13a(h);
        let rt = tokenize_13a(r);
        let hw: Vec<&str> = ht.split(' ').filter(|w| !w.is_empty()).collect();
        let rw: Vec<&str> = rt.split(' ').filter(|w| !w.is_empty()).collect();
        sys_len += hw.len();
        ref_len += rw.len();
        for n in 1..=4 {
            let hc = ngrams(&hw, n);
            let rc = ngrams(&rw, n);
            for (g, c) in &hc {
                correct[n - 1] += (*c).min(rc.get(g).copied().unwrap_or(0));
            }
            total[n - 1] += hw.len().saturating_sub(n - 1);
        }
    }
    if sys_len == 0 {
        return 0.0;
    }
    let mut precisions = [0f64; 4];
    let mut smooth = 1f64;
    for n in 0..4 {
        if total[n] == 0 {
            break;
        }
        precisions[n] = if correct[n] == 0 {
            smooth *= 2.0;
            100.0 / (smooth * total[n] as f64)
        } else {
            100.0 * correct[n] as f64 / total[n] as f64
        };
    }
    let bp = if sys_len < ref_len {
        (1.0 - ref_len as f64 / sys_len as f64).exp()
    } else {
        1.0
    };
    let log = |p: f64| if p == 0.0 { -9_999_999_999.0 } else { p.ln() };
    bp * (precisions.iter().map(|&p| log(p)).sum::<f64>() / 4.0).exp()
}

/// Corpus chrF (0–100) of `hyps` against one reference each.
pub fn corpus_chrf(hyps: &[String], refs: &[String]) -> f64 {
    const ORDER: usize = 6;
    const BETA: f64 = 2.0;
    assert_eq!(hyps.len(), refs.len());
    let mut stats = [[0usize; 3]; ORDER]; // hyp n-grams, ref n-grams, matches
    for (h, r) in hyps.iter().zip(refs) {
        let hc: Vec<char> = h.chars().filter(|c| !c.is_whitespace()).collect();
        let rc: Vec<char> = r.chars().filter(|c| !c.is_whitespace()).collect();
        for n in 1..=ORDER {
            let hg = ngrams(&hc, n);
            let rg = ngrams(&rc, n);
            stats[n - 1][0] += hg.values().sum::<usize>();
            stats[n - 1][1] += rg.values().sum::<usize>();
            stats[n - 1][2] += hg
                .iter()
                .map(|(g, c)| (*c).min(rg.get(g).copied().unwrap_or(0)))
                .sum::<usize>();
        }
    }
    let factor = BETA * BETA;
    let (mut avg_p, mut avg_r, mut eff) = (0f64, 0f64, 0usize);
    for [nh, nr, nm] in stats {
        if nh > 0 && nr > 0 {
            avg_p += nm as f64 / nh as f64;
            avg_r += nm as f64 / nr as f64;
            eff += 1;
        }
    }
    if eff == 0 {
        return 0.0;
    }
    avg_p /= eff as f64;
    avg_r /= eff as f64;
    if avg_p + avg_r == 0.0 {
        return 0.0;
    }
    100.0 * (1.0 + factor) * avg_p * avg_r / (factor * avg_p + avg_r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    // Expected values from sacreBLEU 2.6.0 (corpus_bleu / corpus_chrf / Tokenizer13a, defaults).
    #[test]
    fn tokenizer_13a_matches_sacrebleu() {
        assert_eq!(
            tokenize_13a("The cat sat on the mat."),
            "The cat sat on the mat ."
        );
        assert_eq!(
            tokenize_13a("It costs $3.50 (about 3-4 euros), isn't it?"),
            "It costs $ 3.50 ( about 3 - 4 euros ) , isn't it ?"
        );
        assert_eq!(
            tokenize_13a("a.. b,c 1,000.5 x-y 3-4 &amp; &quot;q&quot; {brace}~ é."),
            "a . . b , c 1,000.5 x-y 3 - 4 & \" q \" { brace } ~ é ."
        );
    }

    #[test]
    fn corpus_scores_match_sacrebleu() {
        let hyps = v(&[
            "The cat sat on the mat.",
            "Thou shalt not go up and down, as a talebearer among thy people!",
            "It costs $3.50 (about 3-4 euros), isn't it?",
            "Sie haben das, oder?",
            "",
        ]);
        let refs = v(&[
            "The cat is on the mat.",
            "Thou shalt not go up and down as a talebearer among thy people: I am Jehovah.",
            "It costs 3.50 dollars (3-4 euros); doesn't it?",
            "Sie haben das.",
            "Nothing here.",
        ]);
        assert!((corpus_bleu(&hyps, &refs) - 46.643694641065856).abs() < 1e-9);
        assert!((corpus_chrf(&hyps, &refs) - 63.89041668803499).abs() < 1e-9);
        assert_eq!(corpus_bleu(&v(&["the the the"]), &v(&["the cat"])), 0.0);
        assert_eq!(corpus_chrf(&v(&["abc"]), &v(&["xyz"])), 0.0);
        assert!((corpus_bleu(&refs, &refs) - 100.0).abs() < 1e-9);
    }
}
