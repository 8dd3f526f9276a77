//! Phase 1 of PEMA training in closed form: the optimum of a rank-r linear auto-encoder spans the
//! top-r eigenvectors of the keys' second-moment matrix (docs/method.md §3).

use anyhow::{Context as _, Result};
use candle_core::{DType, Device, Tensor};
use linfa_linalg::eigh::{EigSort, EighInto};
use ndarray::Array2;

/// Rows of the keys per step of the covariance sum.
const PCA_CHUNK: usize = 4096;

/// The top-`r` principal directions of `n` rows of `d` keys, as a d × r tensor. `rows(start,
/// len)` gives rows `start..start + len` as f32: the keys are summed a chunk at a time, never
/// held whole (or transposed whole) here.
pub fn principal_directions(
    n: usize,
    d: usize,
    rows: impl Fn(usize, usize) -> Result<Tensor>,
    r: usize,
    device: &Device,
) -> Result<Tensor> {
    let mut gram = Tensor::zeros((d, d), DType::F32, device)?;
    for start in (0..n).step_by(PCA_CHUNK) {
        let c = rows(start, PCA_CHUNK.min(n - start))?.to_dtype(DType::F32)?;
        gram = (gram + c.t()?.matmul(&c)?)?;
    }
    let gram = (gram / n as f64)?
        .to_device(&Device::Cpu)?
        .to_dtype(DType::F64)?;
    let g: Vec<f64> = gram.flatten_all()?.to_vec1()?;
    let g = Array2::from_shape_vec((d, d), g)?;
    let (_vals, vecs) = g
        .eigh_into()
        .context("eigendecomposition of the keys' covariance")?
        .sort_eig_desc();
    let top: Vec<f32> = (0..d)
        .flat_map(|i| (0..r).map(move |j| (i, j)))
        .map(|(i, j)| vecs[[i, j]] as f32)
        .collect();
    Ok(Tensor::from_vec(top, (d, r), device)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn directions(x: &Tensor, r: usize) -> Result<Tensor> {
        let (n, d) = x.dims2()?;
        principal_directions(n, d, |s, l| Ok(x.narrow(0, s, l)?), r, &Device::Cpu)
    }

    #[test]
    fn recovers_the_dominant_direction() {
        // Points along (3, 4)/5 with a little noise in the orthogonal direction.
        let mut v = vec![];
        for i in 0..200 {
            let t = (i as f32 - 100.0) / 10.0;
            let e = if i % 2 == 0 { 0.1 } else { -0.1 };
            v.extend([0.6 * t - 0.8 * e, 0.8 * t + 0.6 * e]);
        }
        let x = Tensor::from_vec(v, (200, 2), &Device::Cpu).unwrap();
        let u = directions(&x, 1)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let cos = (u[0] * 0.6 + u[1] * 0.8).abs();
        assert!(cos > 0.9999, "{u:?}");
    }

    /// f16 keys (widened a chunk at a time, over several chunks) give the directions of the same
    /// keys in f32.
    #[test]
    fn f16_keys_in_chunks_match_f32_keys() {
        let (n, d) = (2 * PCA_CHUNK + 123, 4);
        let v: Vec<f32> = (0..n * d)
            .map(|i| ((i * 7919 % 1000) as f32 / 500.0 - 1.0) * (1 + i % d) as f32)
            .collect();
        let x16: Vec<half::f16> = v.iter().map(|&x| half::f16::from_f32(x)).collect();
        let exact: Vec<f32> = x16.iter().map(|x| x.to_f32()).collect();
        let dirs = |x: Tensor| -> Vec<f32> {
            directions(&x, 2)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap()
        };
        let a = dirs(Tensor::from_vec(x16, (n, d), &Device::Cpu).unwrap());
        let b = dirs(Tensor::from_vec(exact, (n, d), &Device::Cpu).unwrap());
        for j in 0..2 {
            let cos: f32 = (0..d).map(|i| a[i * 2 + j] * b[i * 2 + j]).sum();
            assert!(cos.abs() > 0.99999, "direction {j}: {a:?} vs {b:?}");
        }
    }
}
