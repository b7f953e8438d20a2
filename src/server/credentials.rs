//! Credentials from the store, checked on every handshake.
//!
//! At start each connection looks its certificate up by issuer + serial, as LCS does, and keeps
//! the certificate it found (Schannel's credential handle). Every full handshake then opens the
//! private key *as the service principal*: that ACL check is where KB836410 bites a running
//! server, so it must not be cached. What is cached is everything else: the parsed signing key
//! and chain, per store snapshot, so a handshake costs a read lock, an ACL lookup and an `Arc`
//! clone — no PEM parsing, no disk.
//!
//! [`LiveStore`] holds the current snapshot. Live mode replaces it when `store/index.json`
//! changes on disk ([`watch_disk`]), so `lcs-sim store renew` in another terminal reaches a
//! running server within the poll interval; the simulation replaces it directly.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rustls::client::ResolvesClientCert;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::config::CertRef;
use crate::pki::Thumbprint;
use crate::store::{Denial, DiskStore, IndexStamp, Store, StoreError};
use crate::winerr;

/// One version of the store with its parsed keys.
pub struct Snapshot {
    /// The store.
    pub store: Store,
    chain_tail: Arc<Vec<CertificateDer<'static>>>,
    certified: Mutex<BTreeMap<Thumbprint, Arc<CertifiedKey>>>,
}

impl fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Snapshot").finish_non_exhaustive()
    }
}

/// The store as the running server sees it.
#[derive(Debug)]
pub struct LiveStore {
    current: RwLock<Arc<Snapshot>>,
    chain_tail: Arc<Vec<CertificateDer<'static>>>,
    /// Bumped on every replacement, so a task can wait for a change (auto-rebind) instead of
    /// polling a clock: works the same on turmoil's virtual time.
    version: tokio::sync::watch::Sender<u64>,
}

impl LiveStore {
    /// A live store over `store`; `intermediates` are sent after each leaf (the issuing CA).
    pub fn new(store: Store, intermediates: Vec<CertificateDer<'static>>) -> Arc<Self> {
        let chain_tail = Arc::new(intermediates);
        Arc::new(Self {
            current: RwLock::new(Arc::new(Snapshot {
                store,
                chain_tail: chain_tail.clone(),
                certified: Mutex::default(),
            })),
            chain_tail,
            version: tokio::sync::watch::Sender::new(0),
        })
    }

    /// The certificates sent after each leaf (the issuing CA).
    pub fn intermediates(&self) -> Vec<CertificateDer<'static>> {
        self.chain_tail.as_ref().clone()
    }

    /// How many times the store was replaced since it was loaded.
    pub fn version(&self) -> u64 {
        *self.version.borrow()
    }

    /// A receiver that sees every replacement of the store from now on.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.read().expect("store lock poisoned").clone()
    }

    /// Replaces the store (a change on disk, or a simulated renewal).
    pub fn replace(&self, store: Store) {
        let next = Arc::new(Snapshot {
            store,
            chain_tail: self.chain_tail.clone(),
            certified: Mutex::default(),
        });
        *self.current.write().expect("store lock poisoned") = next;
        self.version.send_modify(|v| *v += 1);
    }

    /// Changes the store in place: a copy is changed and swapped in.
    pub fn update<T>(&self, change: impl FnOnce(&mut Store) -> T) -> T {
        let mut guard = self.current.write().expect("store lock poisoned");
        let mut store = guard.store.clone();
        let out = change(&mut store);
        *guard = Arc::new(Snapshot {
            store,
            chain_tail: self.chain_tail.clone(),
            certified: Mutex::default(),
        });
        drop(guard);
        self.version.send_modify(|v| *v += 1);
        out
    }
}

/// Polls `disk` every `every` and swaps in a new snapshot when `index.json` changes from
/// `loaded` (its stamp read *before* the store in `live` was loaded, so a change made between
/// the load and the first poll is not missed). Runs until the task is dropped. A store that
/// fails to load (say, half edited by hand) is reported once and the last good snapshot stays
/// in use.
pub async fn watch_disk(
    live: Arc<LiveStore>,
    disk: DiskStore,
    loaded: Option<IndexStamp>,
    every: Duration,
) {
    let mut last = loaded;
    let mut reported = false;
    loop {
        tokio::time::sleep(every).await;
        let stamp = disk.stamp().ok();
        if stamp == last {
            continue;
        }
        match disk.load() {
            Ok(store) => {
                live.replace(store);
                last = stamp;
                reported = false;
                tracing::info!("store changed on disk; reloaded");
            }
            Err(e) if !reported => {
                tracing::warn!(
                    "store changed on disk but cannot be loaded, keeping the last good one: {e}"
                );
                reported = true;
            }
            Err(_) => {}
        }
    }
}

/// Why a connection has no usable credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialError {
    /// No active certificate has the configured issuer + serial (archived after a renewal, or
    /// never there).
    #[error("certificate not found ({reference}){}", match .archived_as { Some(t) => format!(": archived as {t} after renewal"), None => String::new() })]
    NotFound {
        /// The configured reference.
        reference: CertRef,
        /// The archived certificate with that reference, if any.
        archived_as: Option<Thumbprint>,
    },
    /// The principal may not open the private key (on Windows `NTE_BAD_KEYSET`); the store's
    /// platform said why.
    #[error(
        "{principal} cannot open the private key of {thumbprint}: {}", .denial.platform_error()
    )]
    KeyAccessDenied {
        /// The certificate.
        thumbprint: Thumbprint,
        /// The service principal.
        principal: String,
        /// Why the store refused it.
        denial: Denial,
    },
    /// The key is there but unusable for TLS.
    #[error("the private key of {thumbprint} cannot sign: {reason}")]
    UnusableKey {
        /// The certificate.
        thumbprint: Thumbprint,
        /// What rustls said.
        reason: String,
    },
}

impl CredentialError {
    /// A short, stable reason for counters and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            CredentialError::NotFound { .. } => "certificate_not_found",
            CredentialError::KeyAccessDenied { .. } => "key_access_denied",
            CredentialError::UnusableKey { .. } => "unusable_key",
        }
    }

    /// The platform error it stands for, printed as the event log shows it.
    pub fn platform_error(&self) -> String {
        match self {
            CredentialError::NotFound { .. } => {
                format!(
                    "certificate not found ({})",
                    winerr::format(winerr::CRYPT_E_NOT_FOUND)
                )
            }
            CredentialError::KeyAccessDenied { denial, .. } => denial.platform_error().to_string(),
            CredentialError::UnusableKey { .. } => {
                winerr::format(winerr::SEC_E_UNKNOWN_CREDENTIALS)
            }
        }
    }
}

/// The credential of one connection or route: the certificate bound at start (or by a rebind)
/// and the principal that opens its key.
#[derive(Debug)]
pub struct Credential {
    principal: String,
    live: Arc<LiveStore>,
    bound: RwLock<Bound>,
}

#[derive(Debug, Clone)]
struct Bound {
    reference: CertRef,
    thumbprint: Thumbprint,
}

/// A certificate validated for a credential and not yet swapped in: the first half of an
/// all-or-nothing rebind ([`Credential::prepare`], then [`Credential::commit`]).
#[derive(Debug, Clone)]
pub struct PreparedBind {
    bound: Bound,
}

impl PreparedBind {
    /// The certificate that would be bound.
    pub fn thumbprint(&self) -> &Thumbprint {
        &self.bound.thumbprint
    }
}

impl Credential {
    /// Looks `reference` up as the service does at start, and checks that `principal` can open
    /// the key. Fails as a restart after KB836410 fails.
    pub fn acquire(
        reference: &CertRef,
        principal: &str,
        live: Arc<LiveStore>,
    ) -> Result<Arc<Self>, CredentialError> {
        let bound = resolve_reference(&live, reference, principal)?;
        Ok(Arc::new(Self {
            principal: principal.into(),
            live,
            bound: RwLock::new(bound),
        }))
    }

    /// The certificate reference in use.
    pub fn reference(&self) -> CertRef {
        self.bound.read().expect("lock").reference.clone()
    }

    /// The thumbprint of the certificate in use.
    pub fn thumbprint(&self) -> Thumbprint {
        self.bound.read().expect("lock").thumbprint.clone()
    }

    /// The principal that opens the key.
    pub fn principal(&self) -> &str {
        &self.principal
    }

    /// The store this credential reads.
    pub fn store(&self) -> &Arc<LiveStore> {
        &self.live
    }

    /// The key and chain for one handshake, after the ACL check.
    pub fn certified_key(&self) -> Result<Arc<CertifiedKey>, CredentialError> {
        let thumbprint = self.thumbprint();
        let snapshot = self.live.snapshot();
        certified_key(&snapshot, &thumbprint, &self.principal)
    }

    /// Validates `reference` for this credential (found by issuer + serial, key readable by the
    /// principal, usable for TLS) without binding it.
    pub fn prepare(&self, reference: &CertRef) -> Result<PreparedBind, CredentialError> {
        let bound = resolve_reference(&self.live, reference, &self.principal)?;
        Ok(PreparedBind { bound })
    }

    /// Swaps a prepared certificate in. The swap is one write under a lock, so no handshake
    /// sees a half-made change; established connections keep the session they have.
    pub fn commit(&self, prepared: PreparedBind) {
        *self.bound.write().expect("lock") = prepared.bound;
    }
}

fn resolve_reference(
    live: &LiveStore,
    reference: &CertRef,
    principal: &str,
) -> Result<Bound, CredentialError> {
    let snapshot = live.snapshot();
    let cert = snapshot
        .store
        .find_by_issuer_serial(&reference.issuer, &reference.serial)
        .map_err(|e| match e {
            StoreError::NotFound { archived_as, .. } => CredentialError::NotFound {
                reference: reference.clone(),
                archived_as,
            },
            _ => CredentialError::NotFound {
                reference: reference.clone(),
                archived_as: None,
            },
        })?;
    let thumbprint = cert.thumbprint().clone();
    certified_key(&snapshot, &thumbprint, principal)?;
    Ok(Bound {
        reference: reference.clone(),
        thumbprint,
    })
}

fn certified_key(
    snapshot: &Snapshot,
    thumbprint: &Thumbprint,
    principal: &str,
) -> Result<Arc<CertifiedKey>, CredentialError> {
    let opened = snapshot
        .store
        .open_key(thumbprint, principal)
        .map_err(|e| match e {
            StoreError::AccessDenied { denial, .. } => CredentialError::KeyAccessDenied {
                thumbprint: thumbprint.clone(),
                principal: principal.into(),
                denial,
            },
            other => CredentialError::UnusableKey {
                thumbprint: thumbprint.clone(),
                reason: other.to_string(),
            },
        })?;
    let mut cache = snapshot.certified.lock().expect("lock");
    if let Some(k) = cache.get(thumbprint) {
        return Ok(k.clone());
    }
    let unusable = |reason: String| CredentialError::UnusableKey {
        thumbprint: thumbprint.clone(),
        reason,
    };
    let key = super::tls::provider()
        .key_provider
        .load_private_key(PrivateKeyDer::Pkcs8(opened.clone_key()))
        .map_err(|e| unusable(e.to_string()))?;
    let cert = snapshot
        .store
        .find(thumbprint.as_str())
        .map_err(|e| unusable(e.to_string()))?;
    let mut chain = vec![cert.der.clone()];
    chain.extend(snapshot.chain_tail.iter().cloned());
    let certified = Arc::new(CertifiedKey::new(chain, key));
    cache.insert(thumbprint.clone(), certified.clone());
    Ok(certified)
}

/// A listener's certificate resolver: every handshake goes through [`Credential::certified_key`].
/// A `None` makes rustls abort the handshake with an `access_denied` alert.
#[derive(Debug)]
pub struct StoreServerResolver(pub Arc<Credential>);

impl ResolvesServerCert for StoreServerResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.certified_key().ok()
    }
}

/// A route's client-certificate resolver for outgoing mutual TLS. A `None` sends no
/// certificate, and the peer refuses the connection.
#[derive(Debug)]
pub struct StoreClientResolver(pub Arc<Credential>);

impl ResolvesClientCert for StoreClientResolver {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        self.0.certified_key().ok()
    }

    fn has_certs(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, SystemClock};
    use crate::deployment::{Deployment, InitOptions};
    use crate::store::Right;

    fn credential() -> (tempfile::TempDir, Arc<LiveStore>, Arc<Credential>) {
        let tmp = tempfile::tempdir().unwrap();
        let (d, _) = Deployment::init(
            tmp.path().join("d"),
            &InitOptions::default(),
            SystemClock.now_utc(),
        )
        .unwrap();
        let config = d.config().unwrap();
        let live = LiveStore::new(d.store().load().unwrap(), Vec::new());
        let (_, reference) = config.cert_refs().next().unwrap();
        let c = Credential::acquire(reference, "RTCService", live.clone()).unwrap();
        (tmp, live, c)
    }

    #[test]
    fn the_parsed_key_is_cached_per_snapshot_but_the_acl_is_checked_every_time() {
        let (_tmp, live, c) = credential();
        let first = c.certified_key().unwrap();
        assert!(Arc::ptr_eq(&first, &c.certified_key().unwrap()), "cached");

        // The ACL is re-checked on every call, cache or not: KB836410 bites at once.
        let t = c.thumbprint();
        live.update(|s| s.revoke(&t, "RTCService", None).unwrap());
        assert!(matches!(
            c.certified_key(),
            Err(CredentialError::KeyAccessDenied { .. })
        ));

        // A new snapshot parses afresh (nothing stale survives a store change).
        live.update(|s| s.grant(&t, "RTCService", Right::Read).unwrap());
        let again = c.certified_key().unwrap();
        assert!(!Arc::ptr_eq(&first, &again));
        assert_eq!(live.version(), 2);
    }

    #[test]
    fn a_refused_prepare_binds_nothing() {
        let (_tmp, live, c) = credential();
        let before = c.reference();
        let mut missing = before.clone();
        missing.serial = crate::pki::Serial::derive(b"not in the store");
        assert!(matches!(
            c.prepare(&missing),
            Err(CredentialError::NotFound { .. })
        ));
        let t = c.thumbprint();
        live.update(|s| s.revoke(&t, "RTCService", None).unwrap());
        assert!(matches!(
            c.prepare(&before),
            Err(CredentialError::KeyAccessDenied { .. })
        ));
        assert_eq!(c.reference(), before, "a refused prepare binds nothing");
    }
}
