//! A deployment folder's service on real sockets, as `lcs-sim serve` runs it.
//!
//! The configuration and the store come from the folder; the store is kept in memory and
//! reloaded when `store/index.json` changes (a renewal by another process); events go to the
//! folder's `events.jsonl`. Tests and benches start the service the same way.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio::task::JoinHandle;

use super::{LiveStore, Running, ServiceContext, ServiceOptions, TokioNet, start, tls, watch_disk};
use crate::clock::Clock;
use crate::deployment::{Deployment, DeploymentError};
use crate::pki::PkiError;

/// A running deployment.
#[derive(Debug)]
pub struct LiveDeployment {
    /// The service.
    pub running: Running,
    /// The store it uses (reloaded from disk on change).
    pub store: Arc<LiveStore>,
    watcher: JoinHandle<()>,
}

impl LiveDeployment {
    /// Stops watching the store and shuts the service down (see [`Running::shutdown`]).
    pub async fn stop(self) {
        self.watcher.abort();
        self.running.shutdown().await;
    }
}

/// Starts `d`'s service on loopback sockets, polling the store every `store_poll`.
pub async fn serve(
    d: &Deployment,
    clock: Arc<dyn Clock>,
    options: ServiceOptions,
    store_poll: Duration,
) -> Result<LiveDeployment, DeploymentError> {
    let config = d.config()?;
    let disk = d.store();
    let loaded = disk.stamp().ok();
    let store = disk.load()?;
    let ca_path = d.ca_path();
    let ca = std::fs::read(&ca_path).map_err(|source| DeploymentError::Io {
        path: ca_path.clone(),
        source,
    })?;
    let bad_ca = |reason: String| DeploymentError::Ca {
        path: ca_path.clone(),
        source: PkiError::NotACertificate { reason },
    };
    let roots = tls::roots_from_pem(&ca).map_err(|e| bad_ca(e.to_string()))?;
    // ca.pem is the issuing CA followed by the root: the issuing CA completes each chain.
    let intermediates: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&ca)
        .take(1)
        .collect::<Result<_, _>>()
        .map_err(|e| bad_ca(e.to_string()))?;
    let listeners = config.connections.len();
    let auto = options.auto_rebind || config.auto_rebind;
    let live = LiveStore::new(store, intermediates);
    let watcher = tokio::spawn(watch_disk(live.clone(), disk, loaded, store_poll));
    let ctx = ServiceContext {
        config,
        store: live.clone(),
        roots: Arc::new(roots),
        clock,
        events: Arc::new(Tee {
            log: d.event_log(),
            also: options.on_event.clone(),
        }),
    };
    let on_auto_rebind = match (&options.on_auto_rebind, auto) {
        (None, true) => Some(record_in_config(d.clone())),
        (other, _) => other.clone(),
    };
    let options = ServiceOptions {
        default_max_connections: fd_budget(listeners),
        on_auto_rebind,
        deployment: options
            .deployment
            .clone()
            .or_else(|| Some(d.root().to_path_buf())),
        ..options
    };
    let running = start(TokioNet, ctx, options).await;
    Ok(LiveDeployment {
        running,
        store: live,
        watcher,
    })
}

/// Auto-rebind's record of what it swapped: the new references go into lcs.toml, edited in
/// place (comments and layout kept) and written atomically under the store's lock, so a
/// restart binds the same certificates and a concurrent `fix` cannot lose the change. The
/// callback runs on the auto-rebind task; the file work (a lock that may wait on a `fix`)
/// runs on one writer thread of its own, in order, so the async workers never block on it.
fn record_in_config(d: Deployment) -> super::service::OnRebound {
    let (to_writer, writes) = std::sync::mpsc::channel::<Vec<(String, crate::config::CertRef)>>();
    std::thread::spawn(move || {
        for done in writes {
            let path = d.config_path();
            let changes: Vec<(&str, &crate::config::CertRef)> =
                done.iter().map(|(id, r)| (id.as_str(), r)).collect();
            let result = d
                .store()
                .locked(|| crate::config::edit::set_cert_refs(&path, &changes))
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()));
            match result {
                Ok(()) => tracing::info!(
                    "auto-rebind recorded the new references in {}",
                    path.display()
                ),
                Err(e) => tracing::error!(
                    "auto-rebind swapped live but cannot record it in lcs.toml: {e}"
                ),
            }
        }
    });
    Arc::new(move |done: &[super::Rebound]| {
        let changes = done
            .iter()
            .map(|r| (r.connection.clone(), r.to.clone()))
            .collect();
        let _ = to_writer.send(changes);
    })
}

/// The event log, and a look at each event on its way (`serve`'s console).
struct Tee {
    log: crate::eventlog::EventLog,
    also: Option<super::service::OnEvent>,
}

impl std::fmt::Debug for Tee {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tee").field("log", &self.log).finish()
    }
}

impl crate::eventlog::EventSink for Tee {
    fn record(&self, event: crate::eventlog::Event) {
        if let Some(f) = &self.also {
            f(&event);
        }
        self.log.record(event);
    }
}

/// File descriptors kept free for everything but accepted connections (the event log, the
/// store, route connections, the admin endpoint).
const FD_HEADROOM: u64 = 256;

/// The default per-listener connection cap: the process's soft limit on open files
/// (`/proc/self/limits`), less `FD_HEADROOM` (256), shared by `listeners`; at least 16. Where the
/// limit cannot be read, 1024 open files are assumed.
pub fn fd_budget(listeners: usize) -> u32 {
    let soft = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|text| soft_open_files(&text))
        .unwrap_or(1024);
    let share = soft.saturating_sub(FD_HEADROOM) / listeners.max(1) as u64;
    share.clamp(16, u64::from(u32::MAX)) as u32
}

/// The soft "Max open files" of a `/proc/PID/limits` text ("unlimited" counts as a million).
fn soft_open_files(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line["Max open files".len()..].split_whitespace().next()?;
    match soft {
        "unlimited" => Some(1_000_000),
        n => n.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_open_files_limit_is_read_from_proc_limits() {
        let text = "Limit                     Soft Limit           Hard Limit           Units     \nMax cpu time              unlimited            unlimited            seconds   \nMax open files            1024                 524288               files     \n";
        assert_eq!(soft_open_files(text), Some(1024));
        assert_eq!(soft_open_files("nothing"), None);
        assert!(fd_budget(3) >= 16);
    }
}
