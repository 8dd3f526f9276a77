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
    if let Some(k) = &i.kept_names {
        put("kept_names", serde_json::to_string(k)?);
    }
    if let Some(k) = &i.kept_length {
        put("kept_length", serde_json::to_string(k)?);
    }
    if !i.marked_words.is_empty() {
        put("marked_words", serde_json::to_string(&i.marked_words)?);
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
        vocab_mode: get("vocab_mode")?
            .parse()
            .map_err(|e| bad(format!("{e:#}")))?,
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
        decoding: optional(&meta, "decoding", &bad)?,
        // Adapters from before this key rewrite without the check.
        kept_names: optional(&meta, "kept_names", &bad)?,
        // Adapters from before this key rewrite without the length check.
        kept_length: optional(&meta, "kept_length", &bad)?,
        // Adapters from before this key mix alike at every token.
        marked_words: optional(&meta, "marked_words", &bad)?.unwrap_or_default(),
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
    let vocab: Vec<u32> = take("vocab")?
        .to_vec1()
        .map_err(|e| bad(format!("tensor `vocab`: {e}")))?;
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
        let values = t
            .flatten_all()
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(|e| bad(format!("weights: {e}")))?;
        if values.iter().any(|x| !x.is_finite()) {
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
        marked_tokens: Default::default(),
    })
}

/// A metadata key holding JSON that adapters from before it lack: None without it.
fn optional<T: serde::de::DeserializeOwned>(
    meta: &std::collections::HashMap<String, String>,
    key: &str,
    bad: &dyn Fn(String) -> anyhow::Error,
) -> Result<Option<T>> {
    meta.get(key)
        .map(|j| serde_json::from_str(j).map_err(|e| bad(format!("`{key}` is not readable ({e})"))))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small adapter file written directly (not through `Adapter`, whose fields change with
    /// the method): d = 4, r = 2, vocabulary [1, 5, 9].
    fn write_sample(path: &Path) {
        let (d, r) = (4usize, 2usize);
        let t = |rows, cols, s: f32| {
            let v: Vec<f32> = (0..rows * cols).map(|i| s * i as f32).collect();
            Tensor::from_vec(v, (rows, cols), &Device::Cpu).unwrap()
        };
        let mut meta: HashMap<String, String> = HashMap::new();
        for (k, v) in [
            ("format", FORMAT.to_string()),
            ("format_version", FORMAT_VERSION.to_string()),
            ("model_identity", "m".into()),
            ("model_name", "model".into()),
            ("template", "T {source}:".into()),
            ("memory_digest", "x".into()),
            ("hidden_size", d.to_string()),
            ("rank", r.to_string()),
            ("vocab_mode", "candidates".into()),
            ("train.epochs", "1".into()),
            ("train.best_epoch", "1".into()),
            ("train.stopped_by", "max_epochs".into()),
            ("train.train_entries", "10".into()),
            ("train.held_out_entries", "2".into()),
            ("train.held_out_ce_start", "2".into()),
            ("train.held_out_ce", "1".into()),
            ("train.held_out_loss", "1".into()),
            ("train.train_loss", "1".into()),
            ("train.seconds", "0.1".into()),
        ] {
            meta.insert(k.into(), v);
        }
        let vocab = Tensor::from_slice(&[1u32, 5, 9], 3, &Device::Cpu).unwrap();
        let tensors = [
            ("A", t(r, d, 0.1)),
            ("B_pd", t(d, r, 0.2)),
            ("B_rct", t(d, r, 0.3)),
            ("vocab", vocab),
        ];
        let bytes =
            safetensors::serialize(tensors.iter().map(|(n, t)| (*n, t)), Some(meta)).unwrap();
        std::fs::write(path, bytes).unwrap();
    }

    /// Thousands of damaged adapter files (byte flips, truncations, a header length set to edge
    /// values): never a panic, always an error naming the file, or an adapter that loads whole.
    #[test]
    fn mutated_files_never_panic() {
        use rand::{Rng, SeedableRng};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.safetensors");
        write_sample(&path);
        let good = std::fs::read(&path).unwrap();
        let loaded = load(&path).unwrap();
        assert_eq!(loaded.vocab, vec![1, 5, 9]);
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let mut refused = 0;
        for round in 0..3000 {
            let mut b = good.clone();
            match round % 3 {
                0 => {
                    for _ in 0..rng.random_range(1..4) {
                        let i = rng.random_range(0..b.len());
                        b[i] ^= 1 << rng.random_range(0..8);
                    }
                }
                1 => b.truncate(rng.random_range(0..b.len())),
                _ => {
                    let edges = [0u64, 1, 8, b.len() as u64, u32::MAX as u64, u64::MAX];
                    let v = if rng.random_bool(0.5) {
                        edges[rng.random_range(0..edges.len())]
                    } else {
                        rng.random_range(0..b.len() as u64 * 2)
                    };
                    b[..8].copy_from_slice(&v.to_le_bytes());
                }
            }
            std::fs::write(&path, &b).unwrap();
            let r = std::panic::catch_unwind(|| load(&path));
            match r {
                Err(_) => panic!("round {round}: loading a damaged adapter panicked"),
                Ok(Ok(a)) => assert_eq!(a.a.dims(), [a.info.rank, a.info.hidden_size]),
                Ok(Err(e)) => {
                    let e = format!("{e:#}");
                    assert!(e.contains("a.safetensors"), "{e}");
                    refused += 1;
                }
            }
        }
        assert!(refused > 1500, "{refused}");
    }
}
