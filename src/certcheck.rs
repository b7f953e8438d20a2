//! Is this certificate usable for this connection, right now? One answer for everyone who asks.
//!
//! A live rebind must refuse a successor the server could not use, `doctor` must say why a
//! configured certificate will fail, and `store list` must not call an expired certificate
//! "active". They all ask the same question, so it is answered here once, as a list of typed
//! [`Problem`]s with stable snake_case names (never by matching a library's message text):
//!
//! - the private key opens as the service principal (the KB836410 ACL check);
//! - the chain verifies to the deployment's trust (the issuing CA and root in `ca.pem`);
//! - the certificate is within its validity at `now` (an argument: this module reads no clock);
//! - it carries the server's name;
//! - it has the extended key usages the connection needs: serverAuth for a TLS listener,
//!   serverAuth and clientAuth for a mutual-TLS listener and for a route, which presents it as a
//!   client certificate.
//!
//! The checks are independent, so a certificate that is both expired and issued by a stranger
//! reports both. Validity, EKUs and names come from the certificate's own fields (x509-parser,
//! and rustls's [`verify_server_name`] for the name rules); the chain is verified by webpki
//! through rustls's verifiers, at a moment inside the leaf's own validity so that an expired
//! leaf still gets an answer about its issuer. webpki reports time, name and purpose failures
//! as typed `CertificateError` variants; only what is left is a chain problem.

use std::fmt;
use std::sync::Arc;

use rustls::client::{verify_server_cert_signed_by_trust_anchor, verify_server_name};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::{CertificateError, RootCertStore};
use serde::Serialize;
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::config::{CertRef, Config, Transport};
use crate::pki::Thumbprint;
use crate::store::{Access, Denial, Store, StoredCert};

/// What a connection does with its certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Usage {
    /// A TLS listener: the certificate authenticates the server (serverAuth).
    Server,
    /// A mutual-TLS listener or a route: the certificate authenticates the server to clients
    /// and the server to peers as a client (serverAuth and clientAuth).
    Mutual,
}

impl Usage {
    /// The usage of a listening connection with `transport` (`None` for plain TCP).
    pub fn of_listener(transport: Transport) -> Option<Usage> {
        match transport {
            Transport::Tcp => None,
            Transport::Tls => Some(Usage::Server),
            Transport::Mtls => Some(Usage::Mutual),
        }
    }

    /// The usage of a route: its certificate is presented as a client certificate, and the
    /// same certificate serves the mutual-TLS listener.
    pub const ROUTE: Usage = Usage::Mutual;

    /// The extended key usages it needs.
    pub fn ekus(self) -> &'static [Eku] {
        match self {
            Usage::Server => &[Eku::ServerAuth],
            Usage::Mutual => &[Eku::ServerAuth, Eku::ClientAuth],
        }
    }
}

/// Each connection and route of `config` that uses a certificate, with what it uses it for, in
/// lcs.toml order: the one place a connection's [`Usage`] is decided.
pub fn cert_users(config: &Config) -> impl Iterator<Item = (&str, &CertRef, Usage)> {
    let listeners = config.connections.iter().filter_map(|c| {
        let usage = Usage::of_listener(c.transport()).unwrap_or(Usage::Server);
        Some((c.id.as_str(), c.certificate()?, usage))
    });
    let routes = config
        .routes
        .iter()
        .map(|r| (r.id.as_str(), &r.certificate, Usage::ROUTE));
    listeners.chain(routes)
}

/// What connection or route `id` of `config` uses its certificate for (`None`: no such id, or
/// it uses no certificate).
pub fn usage_of(config: &Config, id: &str) -> Option<Usage> {
    cert_users(config)
        .find(|(c, _, _)| *c == id)
        .map(|(_, _, u)| u)
}

/// An extended key usage a connection can need.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Eku {
    /// TLS Web Server Authentication, 1.3.6.1.5.5.7.3.1.
    ServerAuth,
    /// TLS Web Client Authentication, 1.3.6.1.5.5.7.3.2.
    ClientAuth,
}

impl fmt::Display for Eku {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Eku::ServerAuth => "serverAuth",
            Eku::ClientAuth => "clientAuth",
        })
    }
}

/// What the connection needs of its certificate.
#[derive(Debug, Clone)]
pub struct Need<'a> {
    /// The service principal, who must be able to open the key (`[service] principal`).
    pub principal: &'a str,
    /// The name the certificate must carry (`[service] server`).
    pub server_name: &'a str,
    /// What the connection does with it.
    pub usage: Usage,
    /// The trust anchors: the deployment's issuing CA and root (`ca.pem`).
    pub roots: &'a Arc<RootCertStore>,
    /// Certificates that may complete the chain (the issuing CA the server sends).
    pub intermediates: &'a [CertificateDer<'static>],
    /// The moment to judge validity at.
    pub now: OffsetDateTime,
}

/// Why the chain does not verify to the deployment's trust.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ChainReason {
    /// No path to a trusted root: issued by a CA the deployment does not trust.
    UnknownIssuer,
    /// A signature in the chain does not verify.
    BadSignature,
    /// A CA in the chain is not valid while the certificate is (expired or not yet valid).
    IssuerNotValid,
    /// The chain uses a signature algorithm our provider does not support.
    UnsupportedAlgorithm,
    /// A certificate in the chain is malformed or has an unhandled critical extension.
    Malformed,
    /// Any other failure of path validation.
    Other,
}

impl fmt::Display for ChainReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ChainReason::UnknownIssuer => "issued by a CA the deployment does not trust",
            ChainReason::BadSignature => "a signature in the chain does not verify",
            ChainReason::IssuerNotValid => "a CA in the chain is outside its validity",
            ChainReason::UnsupportedAlgorithm => "the chain uses an unsupported algorithm",
            ChainReason::Malformed => "a certificate in the chain is malformed",
            ChainReason::Other => "path validation failed",
        })
    }
}

/// One reason the certificate cannot serve the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Problem {
    /// No certificate with this thumbprint is in the store.
    #[error("certificate {thumbprint} is not in the store")]
    NotFound {
        /// What was looked for.
        thumbprint: Thumbprint,
    },
    /// The principal may not open the private key (on Windows `NTE_BAD_KEYSET`): KB836410.
    #[error("{principal} cannot open the private key: {}", .denial.platform_error().short())]
    KeyUnreadable {
        /// The service principal.
        principal: String,
        /// Why the store refused it.
        #[serde(skip)]
        denial: Denial,
    },
    /// `now` is after the certificate's notAfter.
    #[error("expired at {}", rfc3339(*.not_after))]
    Expired {
        /// End of validity.
        #[serde(with = "time::serde::rfc3339")]
        not_after: OffsetDateTime,
    },
    /// `now` is before the certificate's notBefore.
    #[error("not valid before {}", rfc3339(*.not_before))]
    NotYetValid {
        /// Start of validity.
        #[serde(with = "time::serde::rfc3339")]
        not_before: OffsetDateTime,
    },
    /// The certificate does not carry the server's name.
    #[error("not valid for {name} (it names {})", .presented.join(", "))]
    NameMismatch {
        /// The name it must carry.
        name: String,
        /// The names it does carry (DNS and IP subject alternative names).
        presented: Vec<String>,
    },
    /// An extended key usage the connection needs is missing.
    #[error("lacks the {eku} extended key usage")]
    EkuMissing {
        /// The missing usage.
        eku: Eku,
    },
    /// The chain does not verify to the deployment's trust anchors.
    #[error("does not chain to the deployment's CA: {reason} (issuer {issuer})")]
    ChainUntrusted {
        /// The certificate's issuer.
        issuer: String,
        /// Why.
        reason: ChainReason,
    },
}

impl Problem {
    /// The stable snake_case name (the `problem` field of the JSON form).
    pub fn code(&self) -> &'static str {
        match self {
            Problem::NotFound { .. } => "not_found",
            Problem::KeyUnreadable { .. } => "key_unreadable",
            Problem::Expired { .. } => "expired",
            Problem::NotYetValid { .. } => "not_yet_valid",
            Problem::NameMismatch { .. } => "name_mismatch",
            Problem::EkuMissing { .. } => "eku_missing",
            Problem::ChainUntrusted { .. } => "chain_untrusted",
        }
    }
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

/// Every reason the certificate `thumbprint` (archived or not) cannot serve a connection that
/// needs `need`; empty when it can. Nothing is cached and no clock is read.
pub fn check(store: &Store, thumbprint: &Thumbprint, need: &Need<'_>) -> Vec<Problem> {
    let cert = match store.find(thumbprint.as_str()) {
        Ok(c) if c.thumbprint() == thumbprint => c,
        _ => {
            return vec![Problem::NotFound {
                thumbprint: thumbprint.clone(),
            }];
        }
    };
    let mut problems = Vec::new();
    if let Ok(Access::Denied(denial)) = store.key_access(thumbprint, need.principal) {
        problems.push(Problem::KeyUnreadable {
            principal: need.principal.to_string(),
            denial,
        });
    }
    problems.extend(validity(cert, need.now));
    problems.extend(check_certificate(cert, need));
    problems
}

/// Whether a certificate is within its validity at `now`: `None` when it is, otherwise the
/// [`Problem::Expired`] or [`Problem::NotYetValid`] it is. `store list` uses this alone.
pub fn validity(cert: &StoredCert, now: OffsetDateTime) -> Option<Problem> {
    let info = &cert.info;
    if now > info.not_after {
        Some(Problem::Expired {
            not_after: info.not_after,
        })
    } else if now < info.not_before {
        Some(Problem::NotYetValid {
            not_before: info.not_before,
        })
    } else {
        None
    }
}

/// The checks on the certificate itself (name, EKUs, chain), without the store's key check
/// and the validity at `now`.
fn check_certificate(cert: &StoredCert, need: &Need<'_>) -> Vec<Problem> {
    let mut problems = Vec::new();
    let parsed = match ParsedCertificate::try_from(&cert.der) {
        Ok(p) => p,
        Err(_) => {
            return vec![Problem::ChainUntrusted {
                issuer: cert.info.issuer.clone(),
                reason: ChainReason::Malformed,
            }];
        }
    };
    if let Some(p) = name_problem(cert, &parsed, need.server_name) {
        problems.push(p);
    }
    let ekus = ekus_of(&cert.der);
    for eku in need.usage.ekus() {
        if !ekus.allows(*eku) {
            problems.push(Problem::EkuMissing { eku: *eku });
        }
    }
    if let Some(reason) = chain_problem(cert, &parsed, &ekus, need) {
        problems.push(Problem::ChainUntrusted {
            issuer: cert.info.issuer.clone(),
            reason,
        });
    }
    problems
}

fn name_problem(cert: &StoredCert, parsed: &ParsedCertificate<'_>, name: &str) -> Option<Problem> {
    let mismatch = || {
        let mut presented = cert.info.dns_names.clone();
        presented.extend(cert.info.ip_addresses.iter().map(ToString::to_string));
        Problem::NameMismatch {
            name: name.to_string(),
            presented,
        }
    };
    let Ok(server_name) = ServerName::try_from(name) else {
        return Some(mismatch());
    };
    verify_server_name(parsed, &server_name)
        .err()
        .map(|_| mismatch())
}

/// The extended key usages a certificate carries. Without the extension a certificate may be
/// used for any purpose (RFC 5280 §4.2.1.12; webpki and Windows agree).
struct Ekus {
    present: bool,
    server_auth: bool,
    client_auth: bool,
}

impl Ekus {
    fn allows(&self, eku: Eku) -> bool {
        !self.present
            || match eku {
                Eku::ServerAuth => self.server_auth,
                Eku::ClientAuth => self.client_auth,
            }
    }
}

fn ekus_of(der: &[u8]) -> Ekus {
    let Ok((_, cert)) = X509Certificate::from_der(der) else {
        return Ekus {
            present: false,
            server_auth: true,
            client_auth: true,
        };
    };
    match cert.extended_key_usage().ok().flatten() {
        Some(e) => Ekus {
            present: true,
            server_auth: e.value.server_auth || e.value.any,
            client_auth: e.value.client_auth || e.value.any,
        },
        None => Ekus {
            present: false,
            server_auth: true,
            client_auth: true,
        },
    }
}

/// Path validation to the trust anchors, at a moment inside the leaf's validity (so the
/// leaf's own dates, reported separately, do not hide the answer), with whichever webpki
/// usage the certificate has, since webpki checks the EKU on the way. `None` when the chain
/// verifies, and also when the certificate has neither usage: webpki then cannot be asked, and
/// the missing EKU is already a problem.
fn chain_problem(
    cert: &StoredCert,
    parsed: &ParsedCertificate<'_>,
    ekus: &Ekus,
    need: &Need<'_>,
) -> Option<ChainReason> {
    let at = need.now.clamp(cert.info.not_before, cert.info.not_after);
    let at = UnixTime::since_unix_epoch(std::time::Duration::from_secs(
        u64::try_from(at.unix_timestamp()).unwrap_or(0),
    ));
    let provider = rustls::crypto::ring::default_provider();
    let result = if ekus.allows(Eku::ServerAuth) {
        verify_server_cert_signed_by_trust_anchor(
            parsed,
            need.roots,
            need.intermediates,
            at,
            provider.signature_verification_algorithms.all,
        )
    } else if ekus.allows(Eku::ClientAuth) {
        let verifier =
            WebPkiClientVerifier::builder_with_provider(need.roots.clone(), Arc::new(provider))
                .build();
        match verifier {
            Ok(v) => v
                .verify_client_cert(&cert.der, need.intermediates, at)
                .map(|_| ()),
            // Only an empty root store fails to build: nothing can be trusted.
            Err(_) => return Some(ChainReason::UnknownIssuer),
        }
    } else {
        return None;
    };
    match result {
        Ok(()) => None,
        Err(rustls::Error::InvalidCertificate(e)) => Some(chain_reason(&e)),
        Err(_) => Some(ChainReason::Other),
    }
}

fn chain_reason(e: &CertificateError) -> ChainReason {
    match e {
        CertificateError::UnknownIssuer => ChainReason::UnknownIssuer,
        CertificateError::BadSignature => ChainReason::BadSignature,
        // The leaf is valid at the moment asked about, so these are about an issuer.
        CertificateError::Expired
        | CertificateError::ExpiredContext { .. }
        | CertificateError::NotValidYet
        | CertificateError::NotValidYetContext { .. } => ChainReason::IssuerNotValid,
        CertificateError::UnsupportedSignatureAlgorithmContext { .. }
        | CertificateError::UnsupportedSignatureAlgorithmForPublicKeyContext { .. } => {
            ChainReason::UnsupportedAlgorithm
        }
        #[allow(deprecated)]
        CertificateError::UnsupportedSignatureAlgorithm => ChainReason::UnsupportedAlgorithm,
        CertificateError::BadEncoding | CertificateError::UnhandledCriticalExtension => {
            ChainReason::Malformed
        }
        _ => ChainReason::Other,
    }
}

#[cfg(test)]
mod tests;
