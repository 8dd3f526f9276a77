//! The user's folders that pema reads or writes outside a workspace, found once, by `etcetera`.
//!
//! pema's cache follows the XDG convention on Linux and macOS (`$XDG_CACHE_HOME`, else
//! `~/.cache`), as command-line tools there do and as the editor clients and the docs assume for
//! the token file, and `%LOCALAPPDATA%` on Windows.

use std::path::PathBuf;

use etcetera::BaseStrategy as _;

/// The user's home folder, if the platform knows one.
pub fn home() -> Option<PathBuf> {
    etcetera::home_dir().ok()
}

/// The user's cache folder: `$XDG_CACHE_HOME` (when absolute), else `~/.cache`; on Windows
/// `%LOCALAPPDATA%`. The temporary folder when there is no home at all.
pub fn cache_home() -> PathBuf {
    etcetera::choose_base_strategy()
        .map(|s| s.cache_dir())
        .unwrap_or_else(|_| std::env::temp_dir())
}

/// pema's own folder in the cache: `<cache>/pema`. Everything the daemon writes lives under it.
pub fn pema_cache() -> PathBuf {
    cache_home().join("pema")
}
