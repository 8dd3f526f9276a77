//! A copy of the model with its 4- and 5-bit blocks written as 8-bit ones, for the CPU.
//! llama.cpp multiplies Q8_0 weights faster on the CPU than Q5_0 ones, and a memory build or a
//! neutralisation is that multiplication (BENCHMARKS.md, "An exact 8-bit copy of the model").
//! The copy is exact: a Q5_0 block holds 32 integers from -16 to 15 and one scale, a Q4_0 block
//! integers from -8 to 7, and a Q8_0 block with the same scale holds the same integers. Every
//! other tensor is copied byte for byte, so the copy computes what the original does.
//!
//! Made when the copy is at most [`MAX_GROWTH`] of the original (Gemma 3 270M: 10% larger, its
//! 8-bit LM head being most of the file): generation, which reads the head for every token, is
//! then no slower. Made once (about a second), written atomically under pema's cache and named by
//! the original's identity; every command and the daemon then load it. It answers to that
//! identity too, so a memory or adapter made with the copy serves the file as it is and the
//! other way round. `PEMA_MODEL_AS_IS=1` loads the file as it is; a GPU build never copies.

use std::borrow::Cow;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use candle_core::quantized::{gguf_file, GgmlDType, QStorage, QTensor};
use candle_core::Device;

/// Largest copy, as a share of the original: past it the layers are most of the file and reading
/// them for every generated token would cost more than the builds gain.
const MAX_GROWTH: f64 = 1.25;

/// Changes when the way the copy is made changes, so that an older copy is not reused.
const VERSION: &str = "q8_0-exact-v1";

/// Where copies live: `$PEMA_MODEL_CACHE`, else `<cache>/pema/models`.
pub fn folder() -> PathBuf {
    std::env::var_os("PEMA_MODEL_CACHE")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::dirs::pema_cache().join("models"))
}

/// Whether `PEMA_MODEL_AS_IS` asks for the file as it is.
pub fn as_is() -> bool {
    std::env::var_os("PEMA_MODEL_AS_IS").is_some_and(|v| !v.is_empty() && v != "0")
}

/// Bytes a tensor takes in the file.
fn bytes_of(t: &gguf_file::TensorInfo) -> usize {
    t.shape.elem_count() / t.ggml_dtype.block_size() * t.ggml_dtype.type_size()
}

/// Whether a copy is worth making: some tensors are Q5_0 or Q4_0, and the copy stays within
/// [`MAX_GROWTH`] of the original.
pub fn worth_it(gguf: &gguf_file::Content) -> bool {
    let (mut now, mut copy, mut changes) = (0usize, 0usize, false);
    for t in gguf.tensor_infos.values() {
        let bytes = bytes_of(t);
        now += bytes;
        if matches!(t.ggml_dtype, GgmlDType::Q5_0 | GgmlDType::Q4_0) {
            copy += t.shape.elem_count() / 32 * 34;
            changes = true;
        } else {
            copy += bytes;
        }
    }
    changes && (copy as f64) <= MAX_GROWTH * now as f64
}

/// Q5_0 or Q4_0 blocks as Q8_0 blocks of the same values: the scale kept, the integers widened.
fn widen(dtype: GgmlDType, data: &[u8]) -> Vec<u8> {
    let (size, bits) = match dtype {
        GgmlDType::Q5_0 => (22, 5),
        _ => (18, 4),
    };
    let mut out = Vec::with_capacity(data.len() / size * 34);
    for b in data.chunks_exact(size) {
        out.extend_from_slice(&b[..2]);
        let (high, low) = if bits == 5 {
            (u32::from_le_bytes([b[2], b[3], b[4], b[5]]), &b[6..22])
        } else {
            (0, &b[2..18])
        };
        let offset = 1i16 << (bits - 1);
        let value = |j: usize| -> i8 {
            let nibble = if j < 16 {
                low[j] & 0x0F
            } else {
                low[j - 16] >> 4
            };
            let top = ((high >> j) & 1) as u8;
            ((nibble | (top << 4)) as i16 - offset) as i8
        };
        out.extend((0..32).map(|j| value(j) as u8));
    }
    out
}

/// The copy of the model at `path` (whose identity is `identity`), read, and where it is; made
/// now if it is not there or cannot be read.
pub fn ensure(path: &Path, identity: &str) -> Result<(gguf_file::Content, PathBuf)> {
    let dir = folder();
    let copy = dir.join(format!("{identity}-{VERSION}.gguf"));
    if copy.is_file() {
        match super::read_gguf(&copy) {
            Ok(g) => return Ok((g, copy)),
            Err(e) => {
                tracing::warn!("making the model's copy again: {e:#}");
                std::fs::remove_file(&copy)
                    .with_context(|| format!("cannot remove {}", copy.display()))?;
            }
        }
    }
    crate::fsutil::create_private_dir(&dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let name = copy.file_name().unwrap_or_default().to_string_lossy();
    crate::fsutil::remove_stale_temporaries(&dir, &name);
    let tmp = crate::fsutil::temp_path(&copy);
    if let Err(e) = write_copy(path, &tmp) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e.context(format!("cannot write {}", copy.display())));
    }
    crate::fsutil::commit(&tmp, &copy)?;
    Ok((super::read_gguf(&copy)?, copy))
}

fn write_copy(path: &Path, tmp: &Path) -> Result<()> {
    let mut file = std::fs::File::open(path)?;
    let gguf = gguf_file::Content::read(&mut file)?;
    let mut names: Vec<&String> = gguf.tensor_infos.keys().collect();
    names.sort_by_key(|n| gguf.tensor_infos[*n].offset);
    let mut tensors = Vec::with_capacity(names.len());
    for name in &names {
        let t = &gguf.tensor_infos[*name];
        let mut data = vec![0u8; bytes_of(t)];
        file.seek(SeekFrom::Start(gguf.tensor_data_offset + t.offset))?;
        file.read_exact(&mut data)?;
        let (dtype, data) = match t.ggml_dtype {
            d @ (GgmlDType::Q5_0 | GgmlDType::Q4_0) => (GgmlDType::Q8_0, widen(d, &data)),
            d => (d, data),
        };
        let storage = QStorage::from_data(Cow::Owned(data), &Device::Cpu, dtype)?;
        tensors.push(QTensor::new(storage, t.shape.clone())?);
    }
    // Written with the default alignment, whatever the original said.
    let metadata: Vec<(&str, &gguf_file::Value)> = gguf
        .metadata
        .iter()
        .filter(|(k, _)| k.as_str() != "general.alignment")
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    let named: Vec<(&str, &QTensor)> = names.iter().map(|n| n.as_str()).zip(&tensors).collect();
    let mut out = std::io::BufWriter::new(crate::fsutil::create_temp(tmp)?);
    gguf_file::write(&mut out, &metadata, &named)?;
    let out = out.into_inner().map_err(|e| e.into_error())?;
    out.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widened_blocks_hold_the_same_values() {
        // One Q5_0 block: scale 0.5, values -16..=15 in order.
        let mut b = vec![0u8; 22];
        b[..2].copy_from_slice(&half::f16::from_f32(0.5).to_le_bytes());
        let q: Vec<u8> = (0..32).map(|j| j as u8).collect(); // stored value + 16
        let mut high = 0u32;
        for (j, v) in q.iter().enumerate() {
            high |= ((v >> 4) as u32 & 1) << j;
        }
        b[2..6].copy_from_slice(&high.to_le_bytes());
        for j in 0..16 {
            b[6 + j] = (q[j] & 0x0F) | ((q[j + 16] & 0x0F) << 4);
        }
        let w = widen(GgmlDType::Q5_0, &b);
        assert_eq!(w.len(), 34);
        assert_eq!(&w[..2], &b[..2]);
        let values: Vec<i8> = w[2..].iter().map(|&x| x as i8).collect();
        assert_eq!(values, (-16..16).collect::<Vec<i8>>());

        // One Q4_0 block: values -8..=7 twice.
        let mut b = vec![0u8; 18];
        for j in 0..16 {
            b[2 + j] = (j as u8) | ((15 - j as u8) << 4);
        }
        let values: Vec<i8> = widen(GgmlDType::Q4_0, &b)[2..]
            .iter()
            .map(|&x| x as i8)
            .collect();
        let want: Vec<i8> = (-8..8).chain((-8..8).rev()).collect();
        assert_eq!(values, want);
    }

    #[test]
    fn copies_only_where_the_copy_stays_small() {
        use candle_core::quantized::gguf_file::TensorInfo;
        let model = |tensors: &[(&str, Vec<usize>, GgmlDType)]| gguf_file::Content {
            magic: gguf_file::VersionedMagic::GgufV3,
            metadata: Default::default(),
            tensor_infos: tensors
                .iter()
                .map(|(n, dims, t)| {
                    let info = TensorInfo {
                        ggml_dtype: *t,
                        shape: candle_core::Shape::from(dims.clone()),
                        offset: 0,
                    };
                    (n.to_string(), info)
                })
                .collect(),
            tensor_data_offset: 0,
        };
        let head = ("token_embd.weight", vec![262_144, 640], GgmlDType::Q8_0);
        let norm = ("norm.weight", vec![640], GgmlDType::F32);
        let layer = |t| ("blk.0.ffn_up.weight", vec![2048, 640], t);
        // Gemma 3 270M's shape: a big 8-bit head, small 5-bit layers.
        assert!(worth_it(&model(&[
            head.clone(),
            norm.clone(),
            layer(GgmlDType::Q5_0)
        ])));
        // Nothing 4- or 5-bit to widen.
        assert!(!worth_it(&model(&[
            head.clone(),
            norm.clone(),
            layer(GgmlDType::Q4K)
        ])));
        // Layers most of the file: the copy would be far larger.
        let big = ("blk.0.ffn_up.weight", vec![65_536, 4096], GgmlDType::Q5_0);
        assert!(!worth_it(&model(&[head, norm, big])));
    }
}
