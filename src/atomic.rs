//! Atomic file replacement: a crash or a concurrent reader never sees half a file.
//!
//! A deployment folder is shared between processes (a running `serve` and a `store renew` in
//! another terminal), so every write goes to a temporary file in the same folder, is flushed to
//! disk, and is renamed over the target; the folder is then flushed so the rename survives a
//! crash.

use std::fs;
use std::io::{self, Write as _};
use std::path::Path;

/// Writes `bytes` to `path` atomically. `mode` sets Unix permissions (e.g. `0o600` for private
/// keys; default `0o644`) before any byte is written; it is ignored elsewhere.
pub fn atomic_write(path: &Path, bytes: &[u8], mode: Option<u32>) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
    #[cfg(unix)]
    {
        // tempfile creates files 0600; public files (certificates, lcs.toml) must stay readable.
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(
            tmp.path(),
            fs::Permissions::from_mode(mode.unwrap_or(0o644)),
        )?;
    }
    #[cfg(not(unix))]
    let _ = mode;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    #[cfg(unix)]
    fs::File::open(dir)?.sync_all()?;
    Ok(())
}
