//! The in-memory store: certificates, key containers, lookups, ACL checks and renewal.

use std::collections::BTreeMap;
use std::fmt;

use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::{Access, Acl, Right, StoreError};
use crate::pki::{
    self, CertInfo, CertificateAuthority, KeyAlgorithm, LeafSpec, Serial, Thumbprint,
};

/// A certificate in the store.
#[derive(Debug, Clone)]
pub struct StoredCert {
    /// What the certificate says (thumbprint, serial, issuer, names, validity).
    pub info: CertInfo,
    /// The DER bytes.
    pub der: CertificateDer<'static>,
    /// The key container holding its private key.
    pub key_container: String,
    /// Archived certificates stay in the store but are invisible to an ordinary lookup.
    pub archived: bool,
    /// The certificate that replaced this one, once renewed.
    pub renewed_by: Option<Thumbprint>,
}

impl StoredCert {
    /// The thumbprint.
    pub fn thumbprint(&self) -> &Thumbprint {
        &self.info.thumbprint
    }
}

/// A private key and who may use it.
pub struct KeyContainer {
    /// Container name, unique in the store.
    pub name: String,
    /// The key, PKCS#8.
    pub key: PrivatePkcs8KeyDer<'static>,
    /// Who may open it.
    pub acl: Acl,
}

impl Clone for KeyContainer {
    fn clone(&self) -> Self {
        Self {
            name: self.name.clone(),
            key: self.key.clone_key(),
            acl: self.acl.clone(),
        }
    }
}

impl fmt::Debug for KeyContainer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyContainer")
            .field("name", &self.name)
            .field("acl", &self.acl)
            .finish_non_exhaustive()
    }
}

/// What auto-enrollment does to the private key and its ACL when it renews.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RenewalPolicy {
    /// The KB836410 behaviour: the key is kept and its ACL reset to the machine defaults, so the
    /// service account loses read (on the old certificate too: they share the container).
    #[default]
    SameKeyResetAcl,
    /// A new key whose ACL has only the machine defaults; the old key is left alone.
    NewKeyDefaultAcl,
    /// A new key with the old key's ACL copied: the well-behaved case.
    NewKeyKeepAcl,
}

impl RenewalPolicy {
    /// Every policy, for help texts and property tests.
    pub const ALL: [RenewalPolicy; 3] = [
        RenewalPolicy::SameKeyResetAcl,
        RenewalPolicy::NewKeyDefaultAcl,
        RenewalPolicy::NewKeyKeepAcl,
    ];
}

impl fmt::Display for RenewalPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RenewalPolicy::SameKeyResetAcl => "same-key-reset-acl",
            RenewalPolicy::NewKeyDefaultAcl => "new-key-default-acl",
            RenewalPolicy::NewKeyKeepAcl => "new-key-keep-acl",
        })
    }
}

impl std::str::FromStr for RenewalPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        RenewalPolicy::ALL
            .into_iter()
            .find(|p| p.to_string() == s)
            .ok_or_else(|| {
                format!("unknown renewal policy `{s}` (expected same-key-reset-acl, new-key-default-acl or new-key-keep-acl)")
            })
    }
}

/// The outcome of a renewal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Renewal {
    /// The certificate that was renewed (now archived).
    pub old: Thumbprint,
    /// Its serial.
    pub old_serial: Serial,
    /// The new certificate.
    pub new: Thumbprint,
    /// Its serial.
    pub new_serial: Serial,
    /// The issuer of both.
    pub issuer: String,
    /// The policy applied.
    pub policy: RenewalPolicy,
    /// The new certificate's key container.
    pub key_container: String,
}

/// The certificate store.
#[derive(Debug, Clone, Default)]
pub struct Store {
    certs: Vec<StoredCert>,
    keys: BTreeMap<String, KeyContainer>,
}

impl Store {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a certificate with its private key in a new container with `acl`.
    pub fn import(
        &mut self,
        der: CertificateDer<'static>,
        key: PrivatePkcs8KeyDer<'static>,
        acl: Acl,
    ) -> Result<Thumbprint, StoreError> {
        let info = CertInfo::parse(&der)?;
        if self
            .certs
            .iter()
            .any(|c| c.info.thumbprint == info.thumbprint)
        {
            return Err(StoreError::Duplicate {
                thumbprint: info.thumbprint,
            });
        }
        let container = container_name(&info);
        if !info.matches_key(&key) {
            return Err(StoreError::KeyMismatch {
                thumbprint: info.thumbprint,
                container,
            });
        }
        self.keys.insert(
            container.clone(),
            KeyContainer {
                name: container.clone(),
                key,
                acl,
            },
        );
        let thumbprint = info.thumbprint.clone();
        self.certs.push(StoredCert {
            info,
            der,
            key_container: container,
            archived: false,
            renewed_by: None,
        });
        Ok(thumbprint)
    }

    /// Certificates in the order they were added; archived ones only if `include_archived`.
    pub fn list(&self, include_archived: bool) -> impl Iterator<Item = &StoredCert> {
        self.certs
            .iter()
            .filter(move |c| include_archived || !c.archived)
    }

    /// Key containers by name.
    pub fn containers(&self) -> impl Iterator<Item = &KeyContainer> {
        self.keys.values()
    }

    /// Every principal named on some key's ACL, in the case first written, without duplicates
    /// (principals compare case-insensitively).
    pub fn principals(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for ace in self.keys.values().flat_map(|k| k.acl.entries()) {
            if !out.iter().any(|p| p.eq_ignore_ascii_case(&ace.principal)) {
                out.push(&ace.principal);
            }
        }
        out
    }

    /// Finds a certificate, archived or not, by thumbprint or a unique prefix of one
    /// (case-insensitive, separators ignored).
    pub fn find(&self, query: &str) -> Result<&StoredCert, StoreError> {
        let unknown = || StoreError::UnknownThumbprint {
            query: query.to_string(),
        };
        let wanted: String = query
            .chars()
            .filter(|c| !matches!(c, ' ' | ':'))
            .map(|c| c.to_ascii_uppercase())
            .collect();
        if wanted.is_empty() || !wanted.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(unknown());
        }
        let matches: Vec<&StoredCert> = self
            .certs
            .iter()
            .filter(|c| c.info.thumbprint.as_str().starts_with(&wanted))
            .collect();
        match matches.as_slice() {
            [] => Err(unknown()),
            [one] => Ok(one),
            many => Err(StoreError::AmbiguousThumbprint {
                query: query.to_string(),
                matches: many.iter().map(|c| c.info.thumbprint.clone()).collect(),
            }),
        }
    }

    /// The ordinary lookup a service does with its configured reference: never returns an
    /// archived certificate. When the reference is archived, the error says so.
    pub fn find_by_issuer_serial(
        &self,
        issuer: &str,
        serial: &Serial,
    ) -> Result<&StoredCert, StoreError> {
        let mut archived_as = None;
        for cert in &self.certs {
            if cert.info.serial == *serial && cert.info.issuer == issuer {
                if !cert.archived {
                    return Ok(cert);
                }
                archived_as = Some(cert.info.thumbprint.clone());
            }
        }
        Err(StoreError::NotFound {
            issuer: issuer.to_string(),
            serial: serial.clone(),
            archived_as,
        })
    }

    /// The ACL of a certificate's private key.
    pub fn key_acl(&self, thumbprint: &Thumbprint) -> Result<&Acl, StoreError> {
        Ok(&self.container_of(thumbprint)?.acl)
    }

    /// Can `principal` open the private key of `thumbprint` now, and if not, why? The question
    /// everything above the store asks; the key's platform answers it. Fails only when there is
    /// no such certificate.
    pub fn key_access(
        &self,
        thumbprint: &Thumbprint,
        principal: &str,
    ) -> Result<Access, StoreError> {
        Ok(self
            .container_of(thumbprint)?
            .acl
            .access(principal, Right::Read))
    }

    /// Whether `principal` may open the private key of `thumbprint` now (`false` when there is
    /// no such certificate): [`Store::key_access`] for a caller that needs no reason.
    pub fn can_open(&self, thumbprint: &Thumbprint, principal: &str) -> bool {
        self.key_access(thumbprint, principal)
            .is_ok_and(|a| a.is_granted())
    }

    /// Opens a certificate's private key as `principal`, who needs read (or full control).
    /// This is the check every TLS handshake of the emulated server goes through.
    pub fn open_key(
        &self,
        thumbprint: &Thumbprint,
        principal: &str,
    ) -> Result<&PrivatePkcs8KeyDer<'static>, StoreError> {
        let container = self.container_of(thumbprint)?;
        if let Access::Denied(denial) = container.acl.access(principal, Right::Read) {
            return Err(StoreError::AccessDenied {
                thumbprint: thumbprint.clone(),
                principal: principal.to_string(),
                right: Right::Read,
                denial,
            });
        }
        Ok(&container.key)
    }

    /// Grants `right` on a certificate's key to `principal`. Returns whether the ACL changed.
    pub fn grant(
        &mut self,
        thumbprint: &Thumbprint,
        principal: &str,
        right: Right,
    ) -> Result<bool, StoreError> {
        let container = self.container_of_mut(thumbprint)?;
        let before = container.acl.clone();
        container.acl.grant(principal, right);
        Ok(before != container.acl)
    }

    /// Revokes `right` (or every right) on a certificate's key from `principal`.
    /// Returns whether the ACL changed.
    pub fn revoke(
        &mut self,
        thumbprint: &Thumbprint,
        principal: &str,
        right: Option<Right>,
    ) -> Result<bool, StoreError> {
        Ok(self
            .container_of_mut(thumbprint)?
            .acl
            .revoke(principal, right))
    }

    /// Auto-enrollment renewal: issues a successor from `ca` with the same subject, SANs and
    /// EKUs, the same lifetime starting at `now`, and `serial`; archives the old certificate and
    /// links it to the new one; treats the key and its ACL as `policy` says.
    pub fn renew(
        &mut self,
        thumbprint: &Thumbprint,
        policy: RenewalPolicy,
        ca: &CertificateAuthority,
        now: OffsetDateTime,
        serial: Serial,
    ) -> Result<Renewal, StoreError> {
        let old = self.find(thumbprint.as_str())?.clone();
        if let Some(renewed_by) = &old.renewed_by {
            return Err(StoreError::AlreadyRenewed {
                thumbprint: old.info.thumbprint.clone(),
                renewed_by: renewed_by.clone(),
            });
        }
        let ca_subject = ca.info().subject;
        if old.info.issuer != ca_subject {
            return Err(StoreError::WrongIssuer {
                thumbprint: old.info.thumbprint.clone(),
                issuer: old.info.issuer.clone(),
                ca: ca_subject,
            });
        }
        let old_container = self.container_of(&old.info.thumbprint)?.clone();
        let key = match policy {
            RenewalPolicy::SameKeyResetAcl => old_container.key.clone_key(),
            RenewalPolicy::NewKeyDefaultAcl | RenewalPolicy::NewKeyKeepAcl => {
                KeyAlgorithm::of(&old_container.key)?.generate()?
            }
        };
        let lifetime = old.info.not_after - old.info.not_before;
        let der = pki::issue_leaf(
            ca,
            &LeafSpec::of(&old.info),
            &key,
            &serial,
            now,
            now + lifetime,
        )?;
        let info = CertInfo::parse(&der)?;
        let container = match policy {
            RenewalPolicy::SameKeyResetAcl => {
                let c = self
                    .keys
                    .get_mut(&old_container.name)
                    .expect("checked above");
                c.acl = Acl::machine_default();
                c.name.clone()
            }
            RenewalPolicy::NewKeyDefaultAcl | RenewalPolicy::NewKeyKeepAcl => {
                let name = container_name(&info);
                let acl = match policy {
                    RenewalPolicy::NewKeyKeepAcl => old_container.acl.clone(),
                    _ => Acl::machine_default(),
                };
                self.keys.insert(
                    name.clone(),
                    KeyContainer {
                        name: name.clone(),
                        key,
                        acl,
                    },
                );
                name
            }
        };
        let renewal = Renewal {
            old: old.info.thumbprint.clone(),
            old_serial: old.info.serial.clone(),
            new: info.thumbprint.clone(),
            new_serial: info.serial.clone(),
            issuer: info.issuer.clone(),
            policy,
            key_container: container.clone(),
        };
        let slot = self
            .certs
            .iter_mut()
            .find(|c| c.info.thumbprint == old.info.thumbprint)
            .expect("found above");
        slot.archived = true;
        slot.renewed_by = Some(info.thumbprint.clone());
        self.certs.push(StoredCert {
            info,
            der,
            key_container: container,
            archived: false,
            renewed_by: None,
        });
        Ok(renewal)
    }

    /// Rebuilds a store from parts read from disk, checking that they fit together.
    pub(crate) fn from_parts(
        certs: Vec<StoredCert>,
        keys: Vec<KeyContainer>,
    ) -> Result<Self, String> {
        check_unique(&certs, &keys)?;
        let keys: BTreeMap<String, KeyContainer> =
            keys.into_iter().map(|k| (k.name.clone(), k)).collect();
        for cert in &certs {
            if !keys.contains_key(&cert.key_container) {
                return Err(format!(
                    "certificate {} names key container `{}`, which is not in the index",
                    cert.info.thumbprint, cert.key_container
                ));
            }
            if let Some(next) = &cert.renewed_by
                && !certs.iter().any(|c| &c.info.thumbprint == next)
            {
                {
                    return Err(format!(
                        "certificate {} is renewed_by {next}, which is not in the index",
                        cert.info.thumbprint
                    ));
                }
            }
        }
        // Renewal links must end: A renewed by B renewed by A would send every walk along the
        // chain round for ever.
        for start in &certs {
            let mut seen = std::collections::BTreeSet::new();
            let mut at = Some(&start.info.thumbprint);
            while let Some(t) = at {
                if !seen.insert(t) {
                    return Err(format!(
                        "the renewed_by links starting at certificate {} form a cycle",
                        start.info.thumbprint
                    ));
                }
                at = certs
                    .iter()
                    .find(|c| &c.info.thumbprint == t)
                    .and_then(|c| c.renewed_by.as_ref());
            }
        }
        Ok(Self { certs, keys })
    }

    /// The `i`th certificate, unchecked: for tests of what loading refuses (cycles, broken links).
    #[cfg(test)]
    pub(super) fn cert_mut(&mut self, i: usize) -> &mut StoredCert {
        &mut self.certs[i]
    }

    fn container_of(&self, thumbprint: &Thumbprint) -> Result<&KeyContainer, StoreError> {
        let cert = self.find(thumbprint.as_str())?;
        Ok(self
            .keys
            .get(&cert.key_container)
            .expect("a store's certificates always name an existing container"))
    }

    fn container_of_mut(
        &mut self,
        thumbprint: &Thumbprint,
    ) -> Result<&mut KeyContainer, StoreError> {
        let name = self.find(thumbprint.as_str())?.key_container.clone();
        Ok(self
            .keys
            .get_mut(&name)
            .expect("a store's certificates always name an existing container"))
    }
}

/// A container name that reads like the certificate it was made for and is unique per key.
fn container_name(info: &CertInfo) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, &info.public_key);
    let cn = info.common_name().unwrap_or("key");
    format!("{cn}-{}", hex::encode_upper(&digest.as_ref()[..4]))
}

/// What a hand edit can break that the rest of the store assumes: each thumbprint and each key
/// container once (a map keyed by them would otherwise drop one silently), and no ACL entry for
/// an empty principal (`store grant` refuses one; it would match nobody).
fn check_unique(certs: &[StoredCert], keys: &[KeyContainer]) -> Result<(), String> {
    let mut thumbprints = std::collections::BTreeSet::new();
    for cert in certs {
        if !thumbprints.insert(&cert.info.thumbprint) {
            return Err(format!(
                "certificate {} is listed twice under `certificates`",
                cert.info.thumbprint
            ));
        }
    }
    let mut names = std::collections::BTreeSet::new();
    for key in keys {
        if !names.insert(key.name.as_str()) {
            return Err(format!(
                "key container `{}` is listed twice under `key_containers`",
                key.name
            ));
        }
        if key
            .acl
            .entries()
            .iter()
            .any(|a| a.principal.trim().is_empty())
        {
            return Err(format!(
                "key container `{}` has an ACL entry with an empty principal",
                key.name
            ));
        }
    }
    Ok(())
}
