//! The LM head `W` (V × d) and the final norm, read straight from the GGUF.
//!
//! This is all of the model the adapter ever sees (PEMA's offsite property): hidden states come
//! from the host, and logits are `W · v`. The head stays in its quantised GGUF form (Q8_0 for
//! Gemma's tied embeddings) and is multiplied through candle's quantised kernels, which quantise
//! `v` to 8 bits the same way llama.cpp does.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use anyhow::{bail, Context as _, Result};
use candle_core::quantized::{gguf_file, QMatMul, QTensor};
use candle_core::{Device, Module, Tensor};

/// The model's LM head `W` (V × d), read from the GGUF (`output.weight`, or the tied
/// `token_embd.weight`) and kept quantised: it turns a final hidden state into next-token
/// logits, with the model's final logit soft-capping where it has one. With the hidden states,
/// it is all of the model that memories and adapters see.
pub struct LmHead {
    weight: std::sync::Arc<QTensor>,
    matmul: QMatMul,
    final_norm: Vec<f32>,
    softcap: Option<f32>,
    n_vocab: usize,
    n_embd: usize,
}

/// The name of the head's tensor: models with tied embeddings (Gemma) have no separate output
/// matrix.
fn tensor_name(gguf: &gguf_file::Content) -> &'static str {
    if gguf.tensor_infos.contains_key("output.weight") {
        "output.weight"
    } else {
        "token_embd.weight"
    }
}

impl LmHead {
    /// The head's shape (V, d) from the GGUF's tensor table, without reading it.
    pub(crate) fn shape_in(gguf: &gguf_file::Content) -> Result<(usize, usize)> {
        let name = tensor_name(gguf);
        let info = gguf
            .tensor_infos
            .get(name)
            .with_context(|| format!("the model has no {name} tensor"))?;
        Ok(info.shape.dims2()?)
    }

    pub(crate) fn read(path: &Path, gguf: &gguf_file::Content) -> Result<Self> {
        let arch = match gguf.metadata.get("general.architecture") {
            Some(v) => v.to_string()?.clone(),
            None => bail!("GGUF has no general.architecture"),
        };
        let mut reader = BufReader::new(File::open(path)?);
        let name = tensor_name(gguf);
        let weight = gguf
            .tensor(&mut reader, name, &Device::Cpu)
            .with_context(|| format!("reading the LM head ({name}) from {}", path.display()))?;
        let (n_vocab, n_embd) = weight.shape().dims2()?;
        let final_norm = gguf
            .tensor(&mut reader, "output_norm.weight", &Device::Cpu)
            .context("reading the final norm (output_norm.weight)")?
            .dequantize(&Device::Cpu)?
            .to_vec1::<f32>()?;
        let softcap = gguf
            .metadata
            .get(&format!("{arch}.final_logit_softcapping"))
            .and_then(|v| v.to_f32().ok())
            .filter(|&c| c > 0.0);
        let weight = std::sync::Arc::new(weight);
        let matmul = QMatMul::from_arc(weight.clone())?;
        Ok(Self {
            weight,
            matmul,
            final_norm,
            softcap,
            n_vocab,
            n_embd,
        })
    }

    /// Vocabulary size V: the head's rows.
    pub fn n_vocab(&self) -> usize {
        self.n_vocab
    }

    /// Hidden size d: the length of the vectors the head consumes.
    pub fn n_embd(&self) -> usize {
        self.n_embd
    }

    /// The final norm's weights (the hidden states the host returns are already normed).
    pub fn final_norm(&self) -> &[f32] {
        &self.final_norm
    }

    /// The quantised weight, for callers that need it in another form (e.g. dequantised).
    pub fn weight(&self) -> &QTensor {
        &self.weight
    }

    /// Logits for a batch of vectors: `xs` is (n × d), the result (n × V), soft-capping
    /// applied where the model has it.
    pub fn logits(&self, xs: &Tensor) -> Result<Tensor> {
        let z = self.matmul.forward(xs)?;
        Ok(match self.softcap {
            Some(c) => ((z / c as f64)?.tanh()? * c as f64)?,
            None => z,
        })
    }

    /// `W · v` for one vector.
    pub fn apply(&self, v: &[f32]) -> Result<Vec<f32>> {
        if v.len() != self.n_embd {
            bail!(
                "vector has {} elements, the head expects {}",
                v.len(),
                self.n_embd
            );
        }
        let x = Tensor::from_slice(v, (1, self.n_embd), &Device::Cpu)?;
        Ok(self.logits(&x)?.flatten_all()?.to_vec1::<f32>()?)
    }
}
