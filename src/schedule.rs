//! How much the adapter's distribution weighs at each generated token (docs/method.md §4): the
//! mode a rewrite draws with and its λ at every step. A leaf: the adapter stores its chosen
//! schedule, the decoder follows it, and neither imports the other for it.

use anyhow::{bail, Result};

/// Which distribution a rewrite draws from.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The plain model (λ = 0), same prompt.
    Plain,
    /// A fixed λ at every token.
    Fixed,
    /// Gradual Unrolling.
    Gu,
}

impl std::str::FromStr for Mode {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "plain" => Ok(Self::Plain),
            "fixed" => Ok(Self::Fixed),
            "gu" => Ok(Self::Gu),
            _ => bail!("mode is gu, fixed or plain, not {s:?}"),
        }
    }
}

/// λ_max of the reference Gradual Unrolling: a rewrite's default, and the schedules an adapter
/// tries start from it.
pub const REFERENCE_LAMBDA_MAX: f32 = 0.9;
/// λ of the reference fixed mode.
pub const REFERENCE_LAMBDA_FIXED: f32 = 0.5;
/// The lowest λ the reference Gradual Unrolling decays to.
pub const REFERENCE_LAMBDA_FLOOR: f32 = 0.0;

/// λ at every step of a generation.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
#[serde(tag = "mode", rename_all = "lowercase")]
pub enum Schedule {
    /// λ = 0: the plain model, same prompt.
    Plain,
    /// The same λ at every step.
    Fixed {
        /// The adapter's weight λ, 0 to 1.
        lambda: f32,
    },
    /// Gradual Unrolling: λ starts at `lambda_max` and decays quadratically to near 0 over about
    /// `expected_len` tokens, then stays at its last value; never below `floor` (0: the
    /// reference schedule).
    Gu {
        /// λ at the first generated token.
        lambda_max: f32,
        /// L, the expected output length in tokens (a rewrite takes the source's token count).
        expected_len: usize,
        /// The lowest λ may go.
        floor: f32,
    },
}

impl Schedule {
    /// The λ of each step, as an iterator (endless).
    pub fn lambdas(self) -> impl Iterator<Item = f32> {
        (0usize..).map(move |t| match self {
            Schedule::Plain => 0.0,
            Schedule::Fixed { lambda } => lambda,
            Schedule::Gu {
                lambda_max,
                expected_len,
                floor,
            } => {
                // Reference code: λ_0 = λ_max; then u (from λ_max) shrinks by λ_max / L while it
                // stays positive, and λ = u². In exact arithmetic u stops at λ_max / L after L − 1
                // steps; computing u from the step count keeps float error from taking it to 0.
                if t == 0 {
                    return lambda_max;
                }
                let l = expected_len.max(1);
                let k = t.min(l - 1);
                let u = lambda_max * (l - k) as f32 / l as f32;
                (u * u).max(floor)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: &[f32], b: &[f32]) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() < 1e-6, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn gu_matches_the_reference_schedule() {
        // λ_max = 0.9, L = 3: step 0.3; u: 0.9 → 0.6 → 0.3 → (0.3-0.3 = 0, not > 0) stays 0.3.
        let got: Vec<f32> = Schedule::Gu {
            lambda_max: 0.9,
            expected_len: 3,
            floor: 0.0,
        }
        .lambdas()
        .take(6)
        .collect();
        close(&got, &[0.9, 0.36, 0.09, 0.09, 0.09, 0.09]);
        // L = 4: step 0.225; u: 0.675, 0.45, 0.225, then 0.225 - 0.225 = 0 → stays.
        let got: Vec<f32> = Schedule::Gu {
            lambda_max: 0.9,
            expected_len: 4,
            floor: 0.0,
        }
        .lambdas()
        .take(5)
        .collect();
        close(&got, &[0.9, 0.455625, 0.2025, 0.050625, 0.050625]);
    }

    #[test]
    fn gu_decays_monotonically_and_ends_small() {
        let l: Vec<f32> = Schedule::Gu {
            lambda_max: 0.9,
            expected_len: 40,
            floor: 0.0,
        }
        .lambdas()
        .take(60)
        .collect();
        assert!(l.windows(2).all(|w| w[1] <= w[0]));
        assert!(l[45] < 0.001 && l[45] > 0.0);
        let f: Vec<f32> = Schedule::Gu {
            lambda_max: 0.9,
            expected_len: 40,
            floor: 0.3,
        }
        .lambdas()
        .take(60)
        .collect();
        assert_eq!(f[0], 0.9);
        assert!(f.iter().all(|&x| x >= 0.3) && f[45] == 0.3);
    }

    #[test]
    fn plain_and_fixed() {
        close(
            &Schedule::Plain.lambdas().take(3).collect::<Vec<_>>(),
            &[0.0; 3],
        );
        close(
            &Schedule::Fixed { lambda: 0.4 }
                .lambdas()
                .take(2)
                .collect::<Vec<_>>(),
            &[0.4; 2],
        );
    }
}
