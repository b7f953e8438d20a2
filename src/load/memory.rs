//! The server's memory, read from `/proc/<pid>/status` (Linux), for the memory each held
//! connection costs it (register mode).
//!
//! The process is named with `--server-pid`, or found in the deployment's `serve.json`
//! (`{"pid", "admin", "started_at"}`, written by a running `lcs-sim serve`).

use std::path::Path;

use super::report::ServerMemory;

/// The resident set size of `pid`, KiB; `None` if it cannot be read (not Linux, no such process).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// The pid in a deployment's `serve.json`, if a server wrote one.
pub fn serve_pid(dir: &Path) -> Option<u32> {
    crate::server::admin::ServeFile::read(dir)
        .ok()
        .flatten()
        .map(|s| s.pid)
}

/// The memory per connection, from the RSS before the users connected and now.
pub fn measure(pid: Option<u32>, before: Option<u64>, connections: u64) -> Option<ServerMemory> {
    let pid = pid?;
    let (before, after) = (before?, rss_kib(pid)?);
    Some(ServerMemory {
        pid,
        connections,
        rss_before_kib: before,
        rss_after_kib: after,
        rss_per_connection_bytes: (after.saturating_sub(before) * 1024)
            .checked_div(connections)
            .unwrap_or(0),
    })
}
