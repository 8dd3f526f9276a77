//! Writing files so that a crash never leaves a half-written one: a temporary file in the same
//! folder (a name unique to its writer: process id and a counter), created 0600, synced, then
//! renamed over the destination. A failed write or rename removes its temporary file; temporary
//! files of writers that died are removed by the next writer in the folder. Folders pema makes
//! for its state are 0700.

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context as _, Result};

/// Creates `dir` and any missing parents, each new one readable by the user only (0700).
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// A temporary path next to `path`, unique to this writer: `.<name>.<pid>.<n>.tmp`.
pub fn temp_path(path: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = parent(path);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    dir.join(format!(
        ".{}.{}.{n}.tmp",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default(),
        std::process::id()
    ))
}

/// Creates a new file at `tmp` for writing, 0600, refusing to follow or reuse anything there.
pub fn create_temp(tmp: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(tmp)
}

fn parent(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Removes temporary files of `file_name` in `dir` left by writers that died (kill -9, power
/// loss). A live writer's file is left alone: its name carries its process id.
pub fn remove_stale_temporaries(dir: &Path, file_name: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let prefix = format!(".{file_name}.");
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name
            .strip_prefix(&prefix)
            .and_then(|r| r.strip_suffix(".tmp"))
        else {
            continue;
        };
        let pid = rest.split('.').next().unwrap_or("");
        if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let alive = pid == std::process::id().to_string() || Path::new("/proc").join(pid).exists();
        if !alive && cfg!(target_os = "linux") {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Renames `tmp` over `path` and syncs the folder; on failure `tmp` is removed.
pub fn commit(tmp: &Path, path: &Path) -> Result<()> {
    if let Err(e) = std::fs::rename(tmp, path) {
        let _ = std::fs::remove_file(tmp);
        return Err(e).with_context(|| format!("cannot write {}", path.display()));
    }
    if let Ok(d) = std::fs::File::open(parent(path)) {
        let _ = d.sync_all();
    }
    Ok(())
}

pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = parent(path);
    create_private_dir(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    if let Some(name) = path.file_name() {
        remove_stale_temporaries(dir, &name.to_string_lossy());
    }
    let tmp = temp_path(path);
    let write = || -> std::io::Result<()> {
        let mut f = create_temp(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("cannot write {}", path.display()));
    }
    commit(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn private_files_unique_temporaries_and_cleanup() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("sub").join("f.json");
        // A temporary file of a dead writer (no such pid) is removed; a live one's stays.
        create_private_dir(p.parent().unwrap()).unwrap();
        let dead = p.parent().unwrap().join(".f.json.999999999.0.tmp");
        let live = p
            .parent()
            .unwrap()
            .join(format!(".f.json.{}.77.tmp", std::process::id()));
        std::fs::write(&dead, "x").unwrap();
        std::fs::write(&live, "x").unwrap();
        write_atomic(&p, b"one").unwrap();
        assert!(!dead.exists() && live.exists());
        std::fs::remove_file(&live).unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&p), 0o600);
        assert_eq!(mode(p.parent().unwrap()), 0o700);
        // Two temporaries for the same file never share a name.
        assert_ne!(temp_path(&p), temp_path(&p));
        // A failed rename (the destination is a non-empty folder) leaves no temporary behind.
        let q = d.path().join("dir");
        std::fs::create_dir(&q).unwrap();
        std::fs::write(q.join("x"), "x").unwrap();
        assert!(write_atomic(&q, b"z").is_err());
        let left: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }
}
