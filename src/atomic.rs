//! Atomic file replacement: a crash or a concurrent reader never sees half a file.
//!
//! A deployment folder is shared between processes (a running `serve` and a `store renew` in
//! another terminal), so every write goes to a temporary file in the same folder, is flushed to
//! disk, and is renamed over the target; the folder is then flushed so the rename survives a
//! crash. Temporary files are named `.tmp-<pid>-<n>`, so a cleanup that finds one knows which
//! process left it ([`temp_owner`]) and removes it only once that process is gone.

use std::fs;
use std::io::{self, Write as _};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// The prefix of every temporary file [`atomic_write`] creates.
pub const TEMP_PREFIX: &str = ".tmp-";

/// The process id in a temporary file's name `.tmp-<pid>-<n>`, or `None` for any other name.
pub fn temp_owner(name: &str) -> Option<u32> {
    let (pid, n) = name.strip_prefix(TEMP_PREFIX)?.split_once('-')?;
    n.parse::<u64>().ok()?;
    pid.parse().ok()
}

/// Writes `bytes` to `path` atomically. `mode` sets Unix permissions (e.g. `0o600` for private
/// keys; default `0o644`) before any byte is written; it is ignored elsewhere. The temporary
/// file is removed if anything fails.
pub fn atomic_write(path: &Path, bytes: &[u8], mode: Option<u32>) -> io::Result<()> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let (tmp, mut file) = loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!("{TEMP_PREFIX}{}-{n}", std::process::id()));
        let mut open = fs::OpenOptions::new();
        open.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            open.mode(mode.unwrap_or(0o644));
        }
        #[cfg(not(unix))]
        let _ = mode;
        match open.open(&tmp) {
            Ok(f) => break (tmp, f),
            // Left by a dead process with our pid: take the next number.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    };
    let written = (|| {
        #[cfg(unix)]
        {
            // The umask may have narrowed the mode given at creation; set it exactly.
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(fs::Permissions::from_mode(mode.unwrap_or(0o644)))?;
        }
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    #[cfg(unix)]
    fs::File::open(dir)?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_carry_the_pid_and_nothing_is_left_behind() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("index.json");
        atomic_write(&target, b"one", None).unwrap();
        atomic_write(&target, b"two", Some(0o600)).unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["index.json"]);
        assert_eq!(temp_owner(".tmp-4242-7"), Some(4242));
        assert_eq!(temp_owner(".tmp-abc"), None);
        assert_eq!(temp_owner("index.json"), None);
    }

    #[test]
    fn a_failed_rename_removes_the_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("a-directory");
        fs::create_dir(&target).unwrap();
        fs::write(target.join("x"), b"").unwrap();
        assert!(atomic_write(&target, b"x", None).is_err());
        let left: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "only the directory stays: {left:?}");
    }
}
