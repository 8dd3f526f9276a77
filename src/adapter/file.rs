//! Adapter files: safetensors (`A`, `B_pd`, `B_rct` as f32, the candidate vocabulary as u32) with
//! string metadata saying what the adapter was made from. Written atomically.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{anyhow, bail, Context as _, Result};
use candle_core::{Device, Tensor};
use safetensors::SafeTensors;

use super::{Adapter, AdapterInfo, TrainReport};

pub const FORMAT: &str = "pema-adapter";
pub const FORMAT_VERSION: u32 = 1;

pub fn save(adapter: &Adapter, path: &Path) -> Result<()> {
    let i = &adapter.info;
    let t = &i.training;
    let mut meta: HashMap<String, String> = HashMap::new();
    let mut put = |k: &str, v: String| {
        meta.insert(k.to_string(), v);
    };
    put("format", FORMAT.into());
    put("format_version", FORMAT_VERSION.to_string());
    put("model_identity", i.model_identity.clone());
    put("model_name", i.model_name.clone());
    put("template", i.template.clone());
    put("memory_digest", i.memory_digest.clone());
    put("hidden_size", i.hidden_size.to_string());
    put("rank", i.rank.to_string());
    put("vocab_mode", format!("{:?}", i.vocab_mode).to_lowercase());
    put("train.epochs", t.epochs.to_string());
    put("train.best_epoch", t.best_epoch.to_string());
    put("train.stopped_by", t.stopped_by.clone());
    put("train.train_entries", t.train_entries.to_string());
    put("train.held_out_entries", t.held_out_entries.to_string());
    put("train.held_out_ce_start", t.held_out_ce_start.to_string());
    put("train.held_out_ce", t.held_out_ce.to_string());
    put("train.held_out_loss", t.held_out_loss.to_string());
    put("train.train_loss", t.train_loss.to_string());
    put("train.seconds", t.seconds.to_string());
    put("residual", i.residual.to_string());
    if let Some(d) = &i.decoding {
        put("decoding", serde_json::to_string(d)?);
    }

    let cpu = Device::Cpu;
    let vocab = Tensor::from_slice(&adapter.vocab, adapter.vocab.len(), &cpu)?;
    let tensors = [
        ("A", adapter.a.to_device(&cpu)?),
        ("B_pd", adapter.b_pd.to_device(&cpu)?),
        ("B_rct", adapter.b_rct.to_device(&cpu)?),
        ("vocab", vocab),
    ];
    let bytes = safetensors::serialize(tensors.iter().map(|(n, t)| (*n, t)), Some(meta))?;

    crate::fsutil::write_atomic(path, &bytes).context("writing adapter")
}

pub fn load(path: &Path) -> Result<Adapter> {
    let bytes =
        std::fs::read(path).with_context(|| format!("cannot read adapter {}", path.display()))?;
    let bad = |why: String| anyhow!("{} is not a usable pema adapter: {why}", path.display());
    let (_, header) = SafeTensors::read_metadata(&bytes)
        .map_err(|e| bad(format!("not a safetensors file ({e})")))?;
    let meta = header.metadata().clone().unwrap_or_default();
    let get = |k: &str| {
        meta.get(k)
            .cloned()
            .ok_or_else(|| bad(format!("metadata has no `{k}`")))
    };
    if get("format")? != FORMAT {
        return Err(bad("not written by pema".into()));
    }
    let version: u32 = get("format_version")?
        .parse()
        .map_err(|_| bad("bad format_version".into()))?;
    if version != FORMAT_VERSION {
        bail!("{} is adapter format version {version}; this pema reads version {FORMAT_VERSION}: retrain it", path.display());
    }
    let num = |k: &str| -> Result<f64> {
        get(k)?
            .parse::<f64>()
            .map_err(|_| bad(format!("`{k}` is not a number")))
    };
    let info = AdapterInfo {
        model_identity: get("model_identity")?,
        model_name: get("model_name")?,
        template: get("template")?,
        memory_digest: get("memory_digest")?,
        hidden_size: num("hidden_size")? as usize,
        rank: num("rank")? as usize,
        vocab_mode: get("vocab_mode")?.parse()?,
        vocab_size: 0,
        training: TrainReport {
            epochs: num("train.epochs")? as usize,
            best_epoch: num("train.best_epoch")? as usize,
            stopped_by: get("train.stopped_by")?,
            train_entries: num("train.train_entries")? as usize,
            held_out_entries: num("train.held_out_entries")? as usize,
            vocab_size: 0,
            held_out_ce_start: num("train.held_out_ce_start")? as f32,
            held_out_ce: num("train.held_out_ce")? as f32,
            held_out_loss: num("train.held_out_loss")? as f32,
            train_loss: num("train.train_loss")? as f32,
            seconds: num("train.seconds")?,
        },
        // Adapters from before this key are the reference form.
        residual: meta.get("residual").is_some_and(|v| v == "true"),
        // Adapters from before the choice was stored decode with the reference GU.
        decoding: match meta.get("decoding") {
            Some(j) => Some(
                serde_json::from_str(j)
                    .map_err(|e| bad(format!("`decoding` is not readable ({e})")))?,
            ),
            None => None,
        },
    };
    let tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)
        .map_err(|e| bad(format!("{e}")))?;
    let take = |k: &str| {
        tensors
            .get(k)
            .cloned()
            .ok_or_else(|| bad(format!("no tensor `{k}`")))
    };
    let (a, b_pd, b_rct) = (take("A")?, take("B_pd")?, take("B_rct")?);
    let vocab: Vec<u32> = take("vocab")?.to_vec1()?;
    let (d, r) = (info.hidden_size, info.rank);
    if a.dims() != [r, d] || b_pd.dims() != [d, r] || b_rct.dims() != [d, r] {
        return Err(bad(
            "tensor shapes do not match its rank and hidden size".into()
        ));
    }
    if vocab.is_empty() || vocab.windows(2).any(|w| w[0] >= w[1]) {
        return Err(bad("the candidate vocabulary is empty or unsorted".into()));
    }
    for t in [&a, &b_pd] {
        if t.flatten_all()?
            .to_vec1::<f32>()?
            .iter()
            .any(|x| !x.is_finite())
        {
            return Err(bad("weights contain NaN or infinity".into()));
        }
    }
    let mut info = info;
    info.vocab_size = vocab.len();
    info.training.vocab_size = vocab.len();
    Ok(Adapter {
        a,
        b_pd,
        b_rct,
        vocab,
        info,
        proj: None,
        w_c: None,
    })
}
