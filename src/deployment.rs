//! A deployment folder: everything one emulated server needs, in files other tools can read.
//!
//! ```text
//! DIR/
//!   lcs.toml                 the configuration (connections and routes, by issuer + serial)
//!   ca.pem                   the chain clients trust (issuing CA, root CA)
//!   pki/issuing-ca.pem       the issuing CA, kept so renewals come from the same CA
//!   pki/issuing-ca.key.pem   its key (0600)
//!   store/                   the machine certificate store (see `store::DiskStore`)
//!   events.jsonl             the application event log
//! ```
//!
//! `init` builds one from scratch; the other commands open one. Store commands need only the
//! store and the log, so a broken `lcs.toml` never stops an administrator from inspecting
//! certificates.

use std::path::{Path, PathBuf};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer};
use time::OffsetDateTime;

use crate::atomic::atomic_write;
use crate::config::{CertRef, Config, ConfigError, Service};
use crate::eventlog::{Event, EventLog, EventLogError, Level, LogContents, ids};
use crate::pki::{
    self, CertificateAuthority, KeyAlgorithm, LeafSpec, PkiError, Serial, TestPki, Thumbprint,
};
use crate::store::{Acl, DiskStore, Renewal, RenewalPolicy, Store, StoreError};

/// Something about a deployment folder failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeploymentError {
    /// `init` will not overwrite an existing folder's contents.
    #[error("{} is not empty; choose another folder or pass --force to replace its deployment", .path.display())]
    NotEmpty {
        /// The folder.
        path: PathBuf,
    },
    /// The folder is not a deployment.
    #[error("{} is not an lcs-sim deployment (no lcs.toml); create one with `lcs-sim init {}`", .path.display(), .path.display())]
    NotADeployment {
        /// The folder.
        path: PathBuf,
    },
    /// A file could not be read or written.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The CA files are damaged.
    #[error("{}: {source}", .path.display())]
    Ca {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        source: PkiError,
    },
    /// Issuing a certificate failed.
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// A store operation failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The event log is unusable.
    #[error(transparent)]
    EventLog(#[from] EventLogError),
}

/// What `lcs-sim init` builds. The defaults are the KB836410 deployment: `lcs01.contoso.com`
/// running as `RTCService`, TLS on 5061, mutual TLS on 5062, TCP on 5060, a route to
/// `fabrikam.com`.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// SIP domain (default `contoso.com`).
    pub domain: String,
    /// Server host name within the domain (default `lcs01`).
    pub server: String,
    /// TLS port (default 5061).
    pub tls_port: u16,
    /// Mutual-TLS port (default 5062).
    pub mtls_port: u16,
    /// TCP port (default 5060).
    pub tcp_port: u16,
    /// Server key algorithm (default ECDSA P-256).
    pub key: KeyAlgorithm,
    /// The service account (default `RTCService`).
    pub principal: String,
    /// Server certificate validity in days (default 365).
    pub validity_days: u32,
    /// The federated domain with a static route (default `fabrikam.com`).
    pub federated_domain: String,
    /// The federation peer's address (default `127.0.0.1:5071`).
    pub peer_address: String,
    /// The admin endpoint's port on 127.0.0.1 (default 5080; 0 picks a free one).
    pub admin_port: u16,
    /// Replace a non-empty folder's deployment.
    pub force: bool,
}

impl Default for InitOptions {
    fn default() -> Self {
        Self {
            domain: "contoso.com".into(),
            server: "lcs01".into(),
            tls_port: 5061,
            mtls_port: 5062,
            tcp_port: 5060,
            key: KeyAlgorithm::EcdsaP256,
            principal: "RTCService".into(),
            validity_days: 365,
            federated_domain: "fabrikam.com".into(),
            peer_address: "127.0.0.1:5071".into(),
            admin_port: 5080,
            force: false,
        }
    }
}

/// What `init` made.
#[derive(Debug, Clone)]
pub struct InitReport {
    /// The server certificate.
    pub thumbprint: Thumbprint,
    /// Its reference as the configuration holds it.
    pub cert_ref: CertRef,
    /// The server's FQDN.
    pub fqdn: String,
}

/// A deployment folder.
#[derive(Debug, Clone)]
pub struct Deployment {
    root: PathBuf,
}

impl Deployment {
    /// The deployment in `root`, checked to have an `lcs.toml`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, DeploymentError> {
        let d = Self { root: root.into() };
        if !d.config_path().is_file() {
            return Err(DeploymentError::NotADeployment { path: d.root });
        }
        Ok(d)
    }

    /// The folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `lcs.toml`.
    pub fn config_path(&self) -> PathBuf {
        self.root.join("lcs.toml")
    }

    /// `ca.pem`, the chain clients trust.
    pub fn ca_path(&self) -> PathBuf {
        self.root.join("ca.pem")
    }

    /// Reads and validates `lcs.toml`.
    pub fn config(&self) -> Result<Config, ConfigError> {
        Config::load(&self.config_path())
    }

    /// The certificate store, whose changes' events go to the event log.
    pub fn store(&self) -> DiskStore {
        DiskStore::at(self.root.join("store")).with_event_log(self.event_log())
    }

    /// The event log as a reader should see it: events a killed store writer committed but
    /// did not append are delivered first (see [`DiskStore::deliver_events`]).
    pub fn read_events(&self) -> Result<LogContents, EventLogError> {
        // A store that cannot be read must not hide the log; the store commands say what is
        // wrong with it.
        let _ = self.store().deliver_events();
        self.event_log().read_all()
    }

    /// The application event log.
    pub fn event_log(&self) -> EventLog {
        EventLog::at(self.root.join("events.jsonl"))
    }

    /// The issuing CA, which signs renewals.
    pub fn issuing_ca(&self) -> Result<CertificateAuthority, DeploymentError> {
        let cert_path = self.root.join("pki/issuing-ca.pem");
        let key_path = self.root.join("pki/issuing-ca.key.pem");
        let cert = CertificateDer::from_pem_file(&cert_path).map_err(|e| DeploymentError::Ca {
            path: cert_path.clone(),
            source: PkiError::NotACertificate {
                reason: e.to_string(),
            },
        })?;
        let key =
            PrivatePkcs8KeyDer::from_pem_file(&key_path).map_err(|e| DeploymentError::Ca {
                path: key_path.clone(),
                source: PkiError::BadKey {
                    reason: e.to_string(),
                },
            })?;
        CertificateAuthority::load(cert, key).map_err(|source| DeploymentError::Ca {
            path: cert_path,
            source,
        })
    }

    /// Creates a deployment in `root`: a test PKI, a store holding the server certificate with
    /// the ACL "Change Certificate" leaves, and an `lcs.toml` whose TLS and mutual-TLS
    /// connections and route name that certificate by issuer + serial.
    pub fn init(
        root: impl Into<PathBuf>,
        opts: &InitOptions,
        now: OffsetDateTime,
    ) -> Result<(Self, InitReport), DeploymentError> {
        let root = root.into();
        let d = Self { root };
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| DeploymentError::Io { path, source }
        };
        // Everything is made and checked in memory first: a bad option must fail before an
        // existing deployment (with --force) is touched.
        let occupied = match std::fs::read_dir(&d.root) {
            Ok(mut entries) => entries.next().is_some(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => {
                return Err(DeploymentError::Io {
                    path: d.root,
                    source: e,
                });
            }
        };
        if occupied && !opts.force {
            return Err(DeploymentError::NotEmpty { path: d.root });
        }
        let pki = TestPki::generate(&opts.domain, now)?;
        let fqdn = format!("{}.{}", opts.server, opts.domain);
        let key = opts.key.generate()?;
        let serial = Serial::random();
        let der = pki::issue_leaf(
            &pki.issuing,
            &LeafSpec::server(&fqdn, &pki::organisation_of(&opts.domain)),
            &key,
            &serial,
            now,
            now + time::Duration::days(i64::from(opts.validity_days)),
        )?;
        let mut store = Store::new();
        let thumbprint = store.import(der, key, Acl::for_service(&opts.principal))?;
        let cert_ref = CertRef {
            issuer: pki.issuing.info().subject,
            serial,
        };
        // Checked before `Config::standard`, which takes the next hop as already valid.
        let next_hop = match opts.peer_address.parse::<crate::config::HostPort>() {
            Ok(hop) => hop,
            Err(e) => {
                return Err(crate::input::invalid(
                    &d.config_path(),
                    "route[0].next_hop",
                    e.to_string(),
                )
                .into());
            }
        };
        let mut config = Config::standard(
            Service {
                server: fqdn.clone(),
                domain: opts.domain.clone(),
                principal: opts.principal.clone(),
                aliases: vec!["127.0.0.1".into(), "localhost".into()],
            },
            &cert_ref,
            [opts.tls_port, opts.mtls_port, opts.tcp_port],
            &opts.federated_domain,
            next_hop,
        );
        config.admin.port = opts.admin_port;
        config.validate(&d.config_path())?;

        if occupied {
            for sub in ["store", "pki"] {
                let p = d.root.join(sub);
                if p.exists() {
                    std::fs::remove_dir_all(&p).map_err(io(&p))?;
                }
            }
            for file in ["events.jsonl", "lcs.toml", "ca.pem"] {
                let p = d.root.join(file);
                if p.exists() {
                    std::fs::remove_file(&p).map_err(io(&p))?;
                }
            }
        }
        let pki_dir = d.root.join("pki");
        std::fs::create_dir_all(&pki_dir).map_err(io(&pki_dir))?;

        let write = |path: PathBuf, text: String, mode| {
            atomic_write(&path, text.as_bytes(), mode).map_err(io(&path))
        };
        write(d.ca_path(), pki.chain_pem(), None)?;
        write(
            pki_dir.join("root-ca.pem"),
            pki::to_pem("CERTIFICATE", &pki.root.cert),
            None,
        )?;
        write(
            pki_dir.join("issuing-ca.pem"),
            pki::to_pem("CERTIFICATE", &pki.issuing.cert),
            None,
        )?;
        write(
            pki_dir.join("issuing-ca.key.pem"),
            pki::to_pem("PRIVATE KEY", pki.issuing.key.secret_pkcs8_der()),
            Some(0o600),
        )?;

        DiskStore::create(d.root.join("store"), &store)?;
        config.save(&d.config_path())?;
        Ok((
            d,
            InitReport {
                thumbprint,
                cert_ref,
                fqdn,
            },
        ))
    }

    /// Auto-enrollment renewal of a certificate in the store, logged as Windows logs it
    /// (event 1001, "certificate replaced", with both thumbprints). The event commits with the
    /// renewal, so a kill after the commit never loses it.
    pub fn renew(
        &self,
        thumbprint_or_prefix: &str,
        policy: RenewalPolicy,
        now: OffsetDateTime,
    ) -> Result<Renewal, DeploymentError> {
        let ca = self.issuing_ca()?;
        Ok(self.store().update_logged(|store| {
            let thumbprint = store.find(thumbprint_or_prefix)?.thumbprint().clone();
            let renewal = store.renew(&thumbprint, policy, &ca, now, Serial::random())?;
            let event = renewal_event(&renewal, now);
            Ok((renewal, vec![event]))
        })?)
    }
}

/// The application-log entry for a renewal.
pub fn renewal_event(r: &Renewal, now: OffsetDateTime) -> Event {
    Event::new(
        ids::CERTIFICATE_REPLACED,
        now,
        Level::Information,
        "CertificateServicesClient-Lifecycle-System",
        format!(
            "A certificate has been replaced. Old thumbprint {} (serial {}), new thumbprint {} (serial {}), policy {}. (Emulated text.)",
            r.old, r.old_serial, r.new, r.new_serial, r.policy
        ),
    )
    .with("old_thumbprint", r.old.as_str())
    .with("new_thumbprint", r.new.as_str())
    .with("old_serial", r.old_serial.as_str())
    .with("new_serial", r.new_serial.as_str())
    .with("issuer", r.issuer.as_str())
    .with("policy", r.policy.to_string())
    .with("key_container", r.key_container.as_str())
}

/// Why the KB fix could not be applied to a deployment folder.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FixOnDiskError {
    /// A connection asked for does not use a certificate (or does not exist).
    #[error(transparent)]
    Scope(#[from] crate::fix::FixError),
    /// Some references name no certificate in the store at all; nothing was changed.
    #[error("cannot fix {}: choose a certificate from `lcs-sim store list {} --all` and edit lcs.toml; nothing was changed", .ids.join(", "), .dir.display())]
    Unresolved {
        /// The connections.
        ids: Vec<String>,
        /// The deployment folder.
        dir: PathBuf,
        /// Their references, for the message per connection.
        references: Vec<(String, CertRef)>,
    },
    /// Reading or writing the deployment failed.
    #[error(transparent)]
    Deployment(#[from] DeploymentError),
}

impl Deployment {
    /// The KB836410 resolution on this folder for `scope` (every connection when empty): plan
    /// and apply under the store's lock, and write lcs.toml before letting go, so a `store renew`
    /// in another process cannot slip between the plan and the change. With `dry_run` only the
    /// plan is made. Returns the plan (empty: nothing to fix).
    pub fn fix(
        &self,
        scope: &[String],
        dry_run: bool,
    ) -> Result<crate::fix::FixPlan, FixOnDiskError> {
        self.fix_with(scope, &crate::fix::Target::Successor, dry_run)
    }

    /// [`Deployment::fix`] towards `target`: each connection's successor, or a certificate
    /// chosen by hand (checked beforehand with [`crate::fix::choose`]).
    pub fn fix_with(
        &self,
        scope: &[String],
        target: &crate::fix::Target,
        dry_run: bool,
    ) -> Result<crate::fix::FixPlan, FixOnDiskError> {
        let config = self.config().map_err(DeploymentError::from)?;
        crate::fix::check_scope(&config, scope)?;
        let disk = self.store();
        let config_path = self.config_path();
        let mut save_error = None;
        let plan = if dry_run {
            let store = disk.load().map_err(DeploymentError::from)?;
            crate::fix::plan_for(&config, &store, scope, target)
        } else {
            disk.update(|store| {
                let plan = crate::fix::plan_for(&config, store, scope, target);
                if plan.unresolved.is_empty() && !plan.is_empty() {
                    crate::fix::apply_to_store(&plan, store)?;
                    // If this fails the grant alone is harmless; running `fix` again completes it.
                    save_error = crate::fix::write_to_config(&plan, &config_path).err();
                }
                Ok(plan)
            })
            .map_err(DeploymentError::from)?
        };
        if let Some(e) = save_error {
            return Err(DeploymentError::from(e).into());
        }
        if !plan.unresolved.is_empty() {
            return Err(FixOnDiskError::Unresolved {
                ids: plan.unresolved.iter().map(|(id, _)| id.clone()).collect(),
                dir: self.root.clone(),
                references: plan.unresolved.clone(),
            });
        }
        Ok(plan)
    }
}
