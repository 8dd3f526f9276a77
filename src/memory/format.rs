//! The memory file, `memory.pema`. Little-endian, versioned, read by memory map without copying.
//!
//! ```text
//! offset  size  field
//!      0     8  magic "PEMAMEM\0"
//!      8     4  format version (1)
//!     12     4  key type: 1 = f16, 2 = f32
//!     16     4  hidden size d
//!     20     4  reserved (0)
//!     24     8  entries N
//!     32     8  pairs P
//!     40     8  offset of the pair index
//!     48     8  offset of the keys
//!     56     8  offset of the tokens
//!     64     8  file length, trailer included
//!     72    32  template digest (blake3)
//!    104    32  model identity (blake3 of the GGUF's metadata and tensor table)
//!    136     4  model name length m
//!    140     4  template length t
//!    144     m  model name, UTF-8
//!  144+m     t  template, UTF-8
//!   (pad to 64)
//!  index  P×32  per pair: content hash [16], first row u64, rows u32, prompt tokens u32
//!   (pad to 64)
//!  keys   N×d   f16 or f32, row-major: key i = hidden state before target token i
//!   (pad to 64)
//!  tokens N×4   u32: target token i
//!  trailer  32  blake3 of every byte before it
//! ```
//! Rows are grouped by pair, in the order of the pair index, so a pair's entries are one slice.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use half::f16;
use memmap2::Mmap;

/// The first 8 bytes of every memory file.
pub const MAGIC: &[u8; 8] = b"PEMAMEM\0";
/// The format version this pema writes and reads; a file of another version must be rebuilt.
pub const FORMAT_VERSION: u32 = 1;
/// The memory file's name inside its directory.
pub const FILE_NAME: &str = "memory.pema";
const FIXED_HEADER: usize = 144;
const INDEX_ROW: usize = 32;
const ALIGN: u64 = 64;

/// How the keys (hidden states) are stored in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyType {
    /// IEEE half precision, 2 bytes per element (the default).
    F16,
    /// IEEE single precision, 4 bytes per element.
    F32,
}

impl KeyType {
    /// Bytes per key element: 2 or 4.
    pub fn size(self) -> usize {
        match self {
            KeyType::F16 => 2,
            KeyType::F32 => 4,
        }
    }
    fn code(self) -> u32 {
        match self {
            KeyType::F16 => 1,
            KeyType::F32 => 2,
        }
    }
}

/// What a memory was built from; two memories mix only if these agree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// How the keys are stored.
    pub key_type: KeyType,
    /// Hidden size d: floats per key.
    pub hidden: usize,
    /// The model's identity digest (the bytes of [`crate::model::ModelInfo::identity`]).
    pub model_identity: [u8; 32],
    /// The model's name, for messages.
    pub model_name: String,
    /// The template text the prompts were made with, worked examples included.
    pub template: String,
    /// The template's digest ([`super::Template::digest`]: blake3 of its text and the end marker).
    pub template_digest: [u8; 32],
}

/// One pair's rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Group {
    /// The pair's content hash ([`super::Pair::hash`]).
    pub hash: [u8; 16],
    /// Index of the pair's first row in the memory.
    pub first_row: u64,
    /// The pair's rows: one per target token, the end marker included.
    pub rows: u32,
    /// Tokens before the target: BOS and the prompt, worked examples included.
    pub prompt_tokens: u32,
}

/// A group to write, with its keys already in the file's key type.
pub struct GroupData<'a> {
    /// The pair's content hash ([`super::Pair::hash`]).
    pub hash: [u8; 16],
    /// Tokens before the target: BOS and the prompt, worked examples included.
    pub prompt_tokens: u32,
    /// The pair's keys, row-major (rows × d), as little-endian bytes of the header's key type.
    pub keys: &'a [u8],
    /// The target token of each row (the memory's values), the end marker last.
    pub tokens: &'a [u32],
}

fn align(x: u64) -> u64 {
    x.div_ceil(ALIGN) * ALIGN
}

/// A writer that hashes what it writes, for the trailer.
struct Hashing<W: Write> {
    inner: W,
    hasher: blake3::Hasher,
    written: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl<W: Write> Hashing<W> {
    fn pad_to(&mut self, off: u64) -> std::io::Result<()> {
        let n = off - self.written;
        self.write_all(&vec![0u8; n as usize])
    }
}

/// Writes a memory atomically: to a temporary file in `dir`, synced, then renamed over
/// `dir/memory.pema`. A crash at any point leaves the previous file whole.
pub fn write(dir: &Path, header: &Header, groups: &[GroupData<'_>]) -> Result<PathBuf> {
    let row_bytes = header.hidden * header.key_type.size();
    if groups
        .iter()
        .any(|g| g.keys.len() != g.tokens.len() * row_bytes)
    {
        bail!("internal error: group keys and tokens disagree");
    }
    let index: Vec<IndexEntry> = groups
        .iter()
        .map(|g| IndexEntry {
            hash: g.hash,
            rows: g.tokens.len() as u32,
            prompt_tokens: g.prompt_tokens,
        })
        .collect();
    let mut w = Writer::create(dir, header, &index)?;
    for g in groups {
        w.keys(g.keys)?;
    }
    w.finish(groups.iter().map(|g| g.tokens))
}

/// A pair's entry in the index of a memory being written: the layout is fixed before any key is.
#[derive(Clone, Copy, Debug)]
pub struct IndexEntry {
    /// The pair's content hash ([`super::Pair::hash`]).
    pub hash: [u8; 16],
    /// The pair's rows: one per target token, the end marker included.
    pub rows: u32,
    /// Tokens before the target: BOS and the prompt, worked examples included.
    pub prompt_tokens: u32,
}

/// A memory written front to back while its keys are computed, so that a build holds a batch
/// of keys in RAM and never the whole memory. Written to a temporary file that
/// [`Writer::finish`] syncs and renames over `dir/memory.pema`; dropped unfinished (an error, a
/// cancelled build), it removes the temporary file and the previous memory stays as it was.
pub struct Writer {
    w: Hashing<BufWriter<File>>,
    dir: PathBuf,
    tmp: PathBuf,
    row_bytes: usize,
    /// Key bytes still to come, and the index's rows, which [`Writer::finish`] checks the
    /// tokens against.
    keys_left: u64,
    rows: Vec<u32>,
    tokens_off: u64,
    finished: bool,
}

impl Writer {
    /// Starts a memory of the pairs in `index`, in that order: writes the header and the index.
    pub fn create(dir: &Path, header: &Header, index: &[IndexEntry]) -> Result<Self> {
        crate::fsutil::create_private_dir(dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let row_bytes = header.hidden * header.key_type.size();
        let n_entries: u64 = index.iter().map(|g| g.rows as u64).sum();
        let name = header.model_name.as_bytes();
        let template = header.template.as_bytes();
        let index_off = align((FIXED_HEADER + name.len() + template.len()) as u64);
        let keys_off = align(index_off + (index.len() * INDEX_ROW) as u64);
        let tokens_off = align(keys_off + n_entries * row_bytes as u64);
        let file_len = tokens_off + n_entries * 4 + 32;

        crate::fsutil::remove_stale_temporaries(dir, FILE_NAME);
        let tmp = crate::fsutil::temp_path(&dir.join(FILE_NAME));
        let file = crate::fsutil::create_temp(&tmp)
            .with_context(|| format!("writing memory in {}", dir.display()))?;
        let mut me = Self {
            w: Hashing {
                inner: BufWriter::with_capacity(1 << 20, file),
                hasher: blake3::Hasher::new(),
                written: 0,
            },
            dir: dir.to_path_buf(),
            tmp,
            row_bytes,
            keys_left: n_entries * row_bytes as u64,
            rows: index.iter().map(|g| g.rows).collect(),
            tokens_off,
            finished: false,
        };
        let w = &mut me.w;
        let head = (|| -> std::io::Result<()> {
            w.write_all(MAGIC)?;
            w.write_all(&FORMAT_VERSION.to_le_bytes())?;
            w.write_all(&header.key_type.code().to_le_bytes())?;
            w.write_all(&(header.hidden as u32).to_le_bytes())?;
            w.write_all(&0u32.to_le_bytes())?;
            for v in [
                n_entries,
                index.len() as u64,
                index_off,
                keys_off,
                tokens_off,
                file_len,
            ] {
                w.write_all(&v.to_le_bytes())?;
            }
            w.write_all(&header.template_digest)?;
            w.write_all(&header.model_identity)?;
            w.write_all(&(name.len() as u32).to_le_bytes())?;
            w.write_all(&(template.len() as u32).to_le_bytes())?;
            w.write_all(name)?;
            w.write_all(template)?;
            w.pad_to(index_off)?;
            let mut row = 0u64;
            for g in index {
                w.write_all(&g.hash)?;
                w.write_all(&row.to_le_bytes())?;
                w.write_all(&g.rows.to_le_bytes())?;
                w.write_all(&g.prompt_tokens.to_le_bytes())?;
                row += g.rows as u64;
            }
            w.pad_to(keys_off)
        })();
        head.with_context(|| format!("writing memory in {}", dir.display()))?;
        Ok(me)
    }

    /// Appends keys (whole rows, in the header's key type), continuing the previous ones: the
    /// rows of the index's pairs in its order.
    pub fn keys(&mut self, bytes: &[u8]) -> Result<()> {
        if !bytes.len().is_multiple_of(self.row_bytes) || bytes.len() as u64 > self.keys_left {
            bail!("internal error: more keys than the memory's index has rows");
        }
        self.keys_left -= bytes.len() as u64;
        self.w
            .write_all(bytes)
            .with_context(|| format!("writing memory in {}", self.dir.display()))
    }

    /// Writes the target tokens (one slice per pair, in the index's order) and the checksum,
    /// syncs the file and renames it over `dir/memory.pema`.
    pub fn finish<'t>(mut self, tokens: impl IntoIterator<Item = &'t [u32]>) -> Result<PathBuf> {
        if self.keys_left != 0 {
            bail!("internal error: a memory was finished before all its keys were written");
        }
        let mut pairs = 0;
        let tail = (|| -> Result<()> {
            self.w.pad_to(self.tokens_off)?;
            for t in tokens {
                if self.rows.get(pairs) != Some(&(t.len() as u32)) {
                    bail!("internal error: group keys and tokens disagree");
                }
                pairs += 1;
                self.w.write_all(bytemuck::cast_slice(t))?;
            }
            if pairs != self.rows.len() {
                bail!("internal error: group keys and tokens disagree");
            }
            let digest = self.w.hasher.finalize();
            self.w.flush()?;
            let file = self.w.inner.get_mut();
            file.write_all(digest.as_bytes())?;
            file.sync_all()?;
            Ok(())
        })();
        tail.with_context(|| format!("writing memory in {}", self.dir.display()))?;
        self.finished = true;
        let dest = self.dir.join(FILE_NAME);
        crate::fsutil::commit(&self.tmp, &dest)?;
        Ok(dest)
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if !self.finished {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// An open memory: the file, mapped, checked and indexed.
pub struct MappedMemory {
    /// The file that was opened.
    pub path: PathBuf,
    /// What the memory was built from.
    pub header: Header,
    /// The pair index: one group per pair, in file order.
    pub groups: Vec<Group>,
    /// Rows N in the memory: one per target token.
    pub n_entries: usize,
    map: Mmap,
    keys_off: usize,
    tokens_off: usize,
}

impl MappedMemory {
    /// Maps the file at `path` and checks it: magic, version, layout and trailer checksum.
    pub fn open(path: &Path) -> Result<Self> {
        let file =
            File::open(path).with_context(|| format!("cannot open memory {}", path.display()))?;
        // SAFETY: the daemon only ever replaces memory files by rename, never in place.
        let map = unsafe { Mmap::map(&file) }
            .with_context(|| format!("cannot map {}", path.display()))?;
        let bad = |why: String| anyhow::anyhow!("{} is not a usable memory: {why}", path.display());
        let len = map.len() as u64;
        if len < FIXED_HEADER as u64 || &map[..8] != MAGIC {
            return Err(bad("not a pema memory file (bad magic)".into()));
        }
        let u32_at = |o: usize| u32::from_le_bytes(map[o..o + 4].try_into().unwrap());
        let u64_at = |o: usize| u64::from_le_bytes(map[o..o + 8].try_into().unwrap());
        let version = u32_at(8);
        if version != FORMAT_VERSION {
            return Err(bad(format!(
                "format version {version}, this pema reads version {FORMAT_VERSION}; rebuild it"
            )));
        }
        let key_type = match u32_at(12) {
            1 => KeyType::F16,
            2 => KeyType::F32,
            k => return Err(bad(format!("unknown key type {k}"))),
        };
        let hidden = u32_at(16) as usize;
        let (n_entries, n_pairs) = (u64_at(24), u64_at(32));
        let (index_off, keys_off, tokens_off, file_len) =
            (u64_at(40), u64_at(48), u64_at(56), u64_at(64));
        if file_len != len {
            return Err(bad(format!(
                "truncated or extended: the header says {file_len} bytes, the file has {len}"
            )));
        }
        let body = &map[..map.len() - 32];
        if blake3::hash(body).as_bytes() != &map[map.len() - 32..] {
            return Err(bad("checksum mismatch: the file is corrupted".into()));
        }
        if hidden == 0 || hidden > 1 << 16 {
            return Err(bad(format!("implausible hidden size {hidden}")));
        }
        let row_bytes = hidden as u64 * key_type.size() as u64;
        // Every size is checked against the file's length, without overflow, before anything
        // is allocated or sliced.
        let end = |start: u64, count: u64, size: u64| {
            count
                .checked_mul(size)
                .and_then(|n| start.checked_add(n))
                .filter(|&e| e <= len)
        };
        let consistent = index_off >= FIXED_HEADER as u64
            && end(index_off, n_pairs, INDEX_ROW as u64).is_some_and(|e| keys_off >= e)
            && end(keys_off, n_entries, row_bytes).is_some_and(|e| tokens_off >= e)
            && end(tokens_off, n_entries, 4).and_then(|e| e.checked_add(32)) == Some(file_len)
            && keys_off % ALIGN == 0
            && tokens_off % 4 == 0;
        if !consistent {
            return Err(bad("inconsistent section offsets".into()));
        }
        let name_len = u32_at(136) as u64;
        let tpl_len = u32_at(140) as u64;
        if FIXED_HEADER as u64 + name_len + tpl_len > index_off {
            return Err(bad("header strings overrun the index".into()));
        }
        let (name_len, tpl_len) = (name_len as usize, tpl_len as usize);
        let text = |a: usize, b: usize| {
            String::from_utf8(map[a..b].to_vec()).map_err(|_| bad("header is not UTF-8".into()))
        };
        let header = Header {
            key_type,
            hidden,
            template_digest: map[72..104].try_into().unwrap(),
            model_identity: map[104..136].try_into().unwrap(),
            model_name: text(FIXED_HEADER, FIXED_HEADER + name_len)?,
            template: text(FIXED_HEADER + name_len, FIXED_HEADER + name_len + tpl_len)?,
        };
        let mut groups = Vec::with_capacity(n_pairs as usize);
        let mut next_row = 0u64;
        for i in 0..n_pairs as usize {
            let o = index_off as usize + i * INDEX_ROW;
            let g = Group {
                hash: map[o..o + 16].try_into().unwrap(),
                first_row: u64_at(o + 16),
                rows: u32_at(o + 24),
                prompt_tokens: u32_at(o + 28),
            };
            if g.first_row != next_row {
                return Err(bad(format!(
                    "pair {i} does not start where the previous one ends"
                )));
            }
            next_row += g.rows as u64;
            groups.push(g);
        }
        if next_row != n_entries {
            return Err(bad("the pair index does not cover the entries".into()));
        }
        Ok(Self {
            path: path.to_path_buf(),
            header,
            groups,
            n_entries: n_entries as usize,
            map,
            keys_off: keys_off as usize,
            tokens_off: tokens_off as usize,
        })
    }

    /// The trailer checksum, which identifies this exact memory.
    pub fn checksum(&self) -> [u8; 32] {
        self.map[self.map.len() - 32..].try_into().unwrap()
    }

    /// The file's size in bytes.
    pub fn file_bytes(&self) -> usize {
        self.map.len()
    }

    /// Raw key bytes of rows `rows`, in the file's key type.
    pub fn key_bytes(&self, rows: std::ops::Range<usize>) -> &[u8] {
        let rb = self.header.hidden * self.header.key_type.size();
        &self.map[self.keys_off + rows.start * rb..self.keys_off + rows.end * rb]
    }

    /// Keys as f16, when that is the file's key type.
    pub fn keys_f16(&self) -> Option<&[f16]> {
        (self.header.key_type == KeyType::F16)
            .then(|| bytemuck::cast_slice(self.key_bytes(0..self.n_entries)))
    }

    /// Keys as f32, when that is the file's key type.
    pub fn keys_f32(&self) -> Option<&[f32]> {
        (self.header.key_type == KeyType::F32)
            .then(|| bytemuck::cast_slice(self.key_bytes(0..self.n_entries)))
    }

    /// The target token of every row (the memory's values), N token ids.
    pub fn tokens(&self) -> &[u32] {
        bytemuck::cast_slice(&self.map[self.tokens_off..self.tokens_off + self.n_entries * 4])
    }

    /// Refuses a memory holding a token id outside a vocabulary of `n_vocab` tokens (a damaged
    /// or foreign file whose checksum was made to match): training would index out of bounds.
    pub fn check_tokens(&self, n_vocab: usize) -> Result<()> {
        if let Some((i, &t)) = self
            .tokens()
            .iter()
            .enumerate()
            .find(|(_, &t)| t as usize >= n_vocab)
        {
            bail!(
                "{} is not a usable memory: entry {i} holds token {t}, outside the model's \
                 vocabulary of {n_vocab}",
                self.path.display()
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header {
            key_type: KeyType::F16,
            hidden: 4,
            model_identity: [7; 32],
            model_name: "m".into(),
            template: "T {source}:".into(),
            template_digest: [9; 32],
        }
    }

    fn keys(v: &[f32]) -> Vec<u8> {
        let h: Vec<f16> = v.iter().map(|&x| f16::from_f32(x)).collect();
        bytemuck::cast_slice(&h).to_vec()
    }

    fn write_sample(dir: &Path) -> PathBuf {
        let k1 = keys(&[1., 2., 3., 4., 5., 6., 7., 8.]);
        let k2 = keys(&[-1., -2., -3., -4.]);
        let groups = [
            GroupData {
                hash: [1; 16],
                prompt_tokens: 5,
                keys: &k1,
                tokens: &[10, 11],
            },
            GroupData {
                hash: [2; 16],
                prompt_tokens: 6,
                keys: &k2,
                tokens: &[12],
            },
        ];
        write(dir, &header(), &groups).unwrap()
    }

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_sample(dir.path());
        let m = MappedMemory::open(&path).unwrap();
        assert_eq!(m.header, header());
        assert_eq!(m.n_entries, 3);
        assert_eq!(m.tokens(), &[10, 11, 12]);
        assert_eq!(
            m.groups[1],
            Group {
                hash: [2; 16],
                first_row: 2,
                rows: 1,
                prompt_tokens: 6
            }
        );
        let k = m.keys_f16().unwrap();
        assert_eq!(k[8].to_f32(), -1.0);
        assert_eq!(k.as_ptr() as usize % 64, 0);
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn truncation_and_corruption_are_detected() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_sample(dir.path());
        let bytes = std::fs::read(&path).unwrap();

        std::fs::write(&path, &bytes[..bytes.len() - 10]).unwrap();
        let e = MappedMemory::open(&path).err().unwrap().to_string();
        assert!(e.contains("truncated"), "{e}");

        let mut flipped = bytes.clone();
        let i = flipped.len() - 40;
        flipped[i] ^= 0x40;
        std::fs::write(&path, &flipped).unwrap();
        let e = MappedMemory::open(&path).err().unwrap().to_string();
        assert!(e.contains("checksum"), "{e}");

        std::fs::write(
            &path,
            b"hello, this is not a memory file at all, no no no. ".repeat(4),
        )
        .unwrap();
        let e = MappedMemory::open(&path).err().unwrap().to_string();
        assert!(e.contains("magic"), "{e}");

        let mut newer = bytes.clone();
        newer[8] = 99;
        std::fs::write(&path, &newer).unwrap();
        let e = MappedMemory::open(&path).err().unwrap().to_string();
        assert!(e.contains("version 99"), "{e}");
    }

    /// Thousands of damaged files (byte flips, truncations, size fields set to edge values, with
    /// and without a recomputed checksum): never a panic, always a clear error or a memory
    /// whose every slice is in bounds.
    #[test]
    fn mutated_files_never_panic() {
        use rand::{Rng, SeedableRng};
        let dir = tempfile::tempdir().unwrap();
        let path = write_sample(dir.path());
        let good = std::fs::read(&path).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let edges = [
            0u64,
            1,
            31,
            32,
            63,
            64,
            144,
            u32::MAX as u64,
            u64::MAX,
            u64::MAX / 2,
        ];
        let mut refused = 0;
        for round in 0..4000 {
            let mut b = good.clone();
            match round % 4 {
                0 => {
                    for _ in 0..rng.random_range(1..4) {
                        let i = rng.random_range(0..b.len());
                        b[i] ^= 1 << rng.random_range(0..8);
                    }
                }
                1 => b.truncate(rng.random_range(0..b.len())),
                _ => {
                    // A size or offset field (or a name length, or an index row) set to an
                    // edge value or a random one.
                    let fields = [
                        16usize,
                        24,
                        32,
                        40,
                        48,
                        56,
                        64,
                        136,
                        140,
                        192 + 16,
                        192 + 24,
                    ];
                    let f = fields[rng.random_range(0..fields.len())];
                    let v = if rng.random_bool(0.5) {
                        edges[rng.random_range(0..edges.len())]
                    } else {
                        rng.random()
                    };
                    let w = if matches!(f, 16 | 136 | 140) || f == 192 + 24 {
                        4
                    } else {
                        8
                    };
                    b[f..f + w].copy_from_slice(&v.to_le_bytes()[..w]);
                }
            }
            if round % 2 == 0 && b.len() >= 32 {
                // Make the checksum match, so the structural checks are what stands.
                let n = b.len() - 32;
                let h = blake3::hash(&b[..n]);
                b[n..].copy_from_slice(h.as_bytes());
            }
            std::fs::write(&path, &b).unwrap();
            match MappedMemory::open(&path) {
                Ok(m) => {
                    // Whatever opens is usable to the end.
                    let _ = m.tokens().len();
                    let _ = m.key_bytes(0..m.n_entries).len();
                    let _ = m.check_tokens(16);
                }
                Err(e) => {
                    let e = format!("{e:#}");
                    assert!(e.contains("is not a usable memory"), "{e}");
                    refused += 1;
                }
            }
        }
        assert!(refused > 3000, "{refused}");
    }

    /// A build streams its keys into the file: a writer dropped before it finishes (an error, a
    /// cancelled build) leaves the previous memory as it was and no temporary file; one given
    /// more keys than its index has rows, or finished short of them, refuses.
    #[test]
    fn an_unfinished_writer_leaves_the_previous_memory() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_sample(dir.path());
        let before = std::fs::read(&path).unwrap();
        let index = [IndexEntry {
            hash: [3; 16],
            rows: 1,
            prompt_tokens: 2,
        }];
        let row = keys(&[0.5, 0.5, 0.5, 0.5]);

        let mut w = Writer::create(dir.path(), &header(), &index).unwrap();
        w.keys(&row).unwrap();
        assert!(w.keys(&row).is_err(), "a second row for a one-row index");
        drop(w);
        assert_eq!(std::fs::read(&path).unwrap(), before);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

        let w = Writer::create(dir.path(), &header(), &index).unwrap();
        assert!(w.finish([&[7u32][..]]).is_err(), "finished before its keys");
        assert_eq!(std::fs::read(&path).unwrap(), before);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

        let mut w = Writer::create(dir.path(), &header(), &index).unwrap();
        w.keys(&row).unwrap();
        w.finish([&[7u32][..]]).unwrap();
        let m = MappedMemory::open(&path).unwrap();
        assert_eq!((m.n_entries, m.tokens()), (1, &[7u32][..]));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn tokens_outside_the_vocabulary_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let m = MappedMemory::open(&write_sample(dir.path())).unwrap();
        m.check_tokens(13).unwrap();
        let e = m.check_tokens(12).unwrap_err().to_string();
        assert!(e.contains("token 12") && e.contains("vocabulary"), "{e}");
    }
}
