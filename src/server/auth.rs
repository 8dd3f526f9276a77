//! The token TCP clients of `pema serve` present as `initializationOptions.token`.
//!
//! Where it comes from, first match wins: `--token-file PATH`, `$PEMA_TOKEN` (or the discouraged
//! `--token`, which other users can read in `ps`), else the daemon's own token file
//! `$XDG_CACHE_HOME/pema/serve.token` (see [`token_file`]): created once with 32 random bytes
//! from the operating system (hex), 0600 inside a 0700 folder, written atomically, and reused
//! by later daemons of the same user, so local clients read it from there. Delete it to make a
//! new one.

use std::io::Read as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};

/// Shortest token pema accepts from the user.
pub const MIN_TOKEN_CHARS: usize = 16;
/// Failed `initialize` attempts after which a connection is closed.
pub const MAX_FAILED_INITIALIZE: usize = 3;

/// The daemon's own token file.
pub fn token_file() -> PathBuf {
    crate::dirs::pema_cache().join("serve.token")
}

/// Reads a token file: a regular file (not a link), small, one line.
pub fn read_token_file(path: &Path) -> Result<String> {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .with_context(|| format!("cannot read the token file {}", path.display()))?;
    let meta = f.metadata()?;
    if !meta.is_file() || meta.len() > 4096 {
        bail!(
            "the token file {} is not a small regular file",
            path.display()
        );
    }
    let mut s = String::new();
    f.read_to_string(&mut s)
        .with_context(|| format!("cannot read the token file {}", path.display()))?;
    check_token(s.trim()).with_context(|| format!("in {}", path.display()))
}

/// A token given by the user: long enough, one line of printable text.
pub fn check_token(t: &str) -> Result<String> {
    if t.chars().count() < MIN_TOKEN_CHARS {
        bail!("a token must be at least {MIN_TOKEN_CHARS} characters long");
    }
    if t.chars().any(|c| c.is_control()) {
        bail!("a token is one line of printable characters");
    }
    Ok(t.to_string())
}

/// The daemon's own token: the one in [`token_file`] when it is ours and private, else a new
/// one written there.
pub fn own_token() -> Result<(String, PathBuf)> {
    let path = token_file();
    if let Ok(meta) = std::fs::symlink_metadata(&path) {
        // Ours: a plain file only we can read (a link or a readable file is replaced).
        let ours = meta.is_file() && meta.permissions().mode() & 0o077 == 0;
        if ours {
            if let Ok(t) = read_token_file(&path) {
                return Ok((t, path));
            }
        }
    }
    let mut bytes = [0u8; 32];
    use rand::TryRngCore as _;
    rand::rngs::OsRng
        .try_fill_bytes(&mut bytes)
        .map_err(|e| anyhow::anyhow!("no randomness from the operating system: {e}"))?;
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    crate::fsutil::write_atomic(&path, format!("{token}\n").as_bytes())
        .context("writing the daemon's token file")?;
    Ok((token, path))
}

/// Compares a presented token with the expected one in time that does not depend on where they
/// differ (blake3's `Hash` equality is constant-time).
pub fn token_matches(expected: &str, presented: Option<&str>) -> bool {
    let presented = presented.unwrap_or("");
    blake3::hash(expected.as_bytes()) == blake3::hash(presented.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_and_read() {
        assert!(token_matches("abcdefghijklmnop", Some("abcdefghijklmnop")));
        assert!(!token_matches("abcdefghijklmnop", Some("abcdefghijklmnoq")));
        assert!(!token_matches("abcdefghijklmnop", None));
        assert!(check_token("short").is_err());
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("t");
        std::fs::write(&p, "0123456789abcdef0123\n").unwrap();
        assert_eq!(read_token_file(&p).unwrap(), "0123456789abcdef0123");
        let l = d.path().join("link");
        std::os::unix::fs::symlink(&p, &l).unwrap();
        assert!(read_token_file(&l).is_err(), "a link is not followed");
    }
}
