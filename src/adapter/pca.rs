//! Phase 1 of PEMA training in closed form: the optimum of a rank-r linear auto-encoder spans the
//! top-r eigenvectors of the keys' second-moment matrix (docs/method.md §3).

use anyhow::{Context as _, Result};
use candle_core::{DType, Device, Tensor};
use linfa_linalg::eigh::{EigSort, EighInto};
use ndarray::Array2;

/// The top-`r` principal directions of the rows of `x` (n × d), as a d × r tensor.
pub fn principal_directions(x: &Tensor, r: usize, device: &Device) -> Result<Tensor> {
    let (n, d) = x.dims2()?;
    let gram = (x.t()?.matmul(x)? / n as f64)?
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
        let u = principal_directions(&x, 1, &Device::Cpu)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let cos = (u[0] * 0.6 + u[1] * 0.8).abs();
        assert!(cos > 0.9999, "{u:?}");
    }
}
