//! One test per problem, on certificates made with the test PKI.

use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use time::{Duration, OffsetDateTime};

use super::*;
use crate::pki::{self, KeyAlgorithm, LeafSpec, Serial, TestPki};
use crate::store::{Acl, RenewalPolicy, Right, Store};

const NOW: OffsetDateTime = time::macros::datetime!(2026-06-01 00:00 UTC);
const SERVER: &str = "lcs01.contoso.com";
const PRINCIPAL: &str = "RTCService";
const READ_DENIED: Denial = Denial::KeyAcl { right: Right::Read };

/// A deployment's PKI made long enough ago that it also covers certificates that have expired.
struct Fixture {
    pki: TestPki,
    roots: Arc<RootCertStore>,
    intermediates: Vec<CertificateDer<'static>>,
    store: Store,
}

impl Fixture {
    fn new() -> Self {
        let pki = TestPki::generate("contoso.com", NOW - Duration::days(800)).unwrap();
        let mut roots = RootCertStore::empty();
        roots.add(pki.issuing.cert.clone()).unwrap();
        roots.add(pki.root.cert.clone()).unwrap();
        let intermediates = vec![pki.issuing.cert.clone()];
        Self {
            pki,
            roots: Arc::new(roots),
            intermediates,
            store: Store::new(),
        }
    }

    /// Issues a leaf from `ca` (the deployment's issuing CA when `None`) and imports it.
    fn leaf(
        &mut self,
        spec: &LeafSpec,
        valid: (OffsetDateTime, OffsetDateTime),
        acl: Acl,
        ca: Option<&pki::CertificateAuthority>,
    ) -> Thumbprint {
        let key = KeyAlgorithm::EcdsaP256.generate().unwrap();
        let ca = ca.unwrap_or(&self.pki.issuing);
        let der = pki::issue_leaf(ca, spec, &key, &Serial::random(), valid.0, valid.1).unwrap();
        self.store.import(der, key, acl).unwrap()
    }

    fn good(&mut self, spec: &LeafSpec) -> Thumbprint {
        self.leaf(spec, current(), Acl::for_service(PRINCIPAL), None)
    }

    fn check(&self, thumbprint: &Thumbprint, usage: Usage) -> Vec<Problem> {
        check(
            &self.store,
            thumbprint,
            &Need {
                principal: PRINCIPAL,
                server_name: SERVER,
                usage,
                roots: &self.roots,
                intermediates: &self.intermediates,
                now: NOW,
            },
        )
    }
}

fn spec() -> LeafSpec {
    LeafSpec::server(SERVER, "Contoso")
}

fn current() -> (OffsetDateTime, OffsetDateTime) {
    (NOW - Duration::days(10), NOW + Duration::days(355))
}

#[test]
fn a_good_certificate_has_no_problem_for_any_usage() {
    let mut f = Fixture::new();
    let t = f.good(&spec());
    assert_eq!(f.check(&t, Usage::Server), []);
    assert_eq!(f.check(&t, Usage::Mutual), []);
}

#[test]
fn an_unknown_thumbprint_is_not_found() {
    let f = Fixture::new();
    let t = Thumbprint::of(b"not a certificate in this store");
    assert_eq!(
        f.check(&t, Usage::Server),
        [Problem::NotFound { thumbprint: t }]
    );
}

#[test]
fn a_key_without_the_service_principal_is_unreadable() {
    let mut f = Fixture::new();
    let t = f.leaf(&spec(), current(), Acl::machine_default(), None);
    assert_eq!(
        f.check(&t, Usage::Server),
        [Problem::KeyUnreadable {
            principal: PRINCIPAL.into(),
            denial: READ_DENIED,
        }]
    );
}

#[test]
fn a_kb836410_renewal_leaves_old_and_new_unreadable() {
    let mut f = Fixture::new();
    let old = f.good(&spec());
    let renewal = f
        .store
        .renew(
            &old,
            RenewalPolicy::SameKeyResetAcl,
            &f.pki.issuing,
            NOW,
            Serial::derive(b"renewed"),
        )
        .unwrap();
    let unreadable = [Problem::KeyUnreadable {
        principal: PRINCIPAL.into(),
        denial: READ_DENIED,
    }];
    assert_eq!(f.check(&old, Usage::Mutual), unreadable);
    assert_eq!(f.check(&renewal.new, Usage::Mutual), unreadable);
}

#[test]
fn an_expired_certificate_says_when_and_still_chains() {
    let mut f = Fixture::new();
    let not_after = NOW - Duration::days(35);
    let t = f.leaf(
        &spec(),
        (NOW - Duration::days(400), not_after),
        Acl::for_service(PRINCIPAL),
        None,
    );
    assert_eq!(f.check(&t, Usage::Server), [Problem::Expired { not_after }]);
}

#[test]
fn a_certificate_from_the_future_is_not_yet_valid() {
    let mut f = Fixture::new();
    let not_before = NOW + Duration::days(3);
    let t = f.leaf(
        &spec(),
        (not_before, NOW + Duration::days(400)),
        Acl::for_service(PRINCIPAL),
        None,
    );
    assert_eq!(
        f.check(&t, Usage::Mutual),
        [Problem::NotYetValid { not_before }]
    );
}

#[test]
fn a_certificate_for_another_server_is_a_name_mismatch() {
    let mut f = Fixture::new();
    let t = f.good(&LeafSpec::server("lcs02.contoso.com", "Contoso"));
    assert_eq!(
        f.check(&t, Usage::Server),
        [Problem::NameMismatch {
            name: SERVER.into(),
            presented: vec![
                "lcs02.contoso.com".into(),
                "localhost".into(),
                "127.0.0.1".into()
            ],
        }]
    );
}

#[test]
fn mutual_tls_needs_client_auth_and_tls_needs_server_auth() {
    let mut f = Fixture::new();
    let server_only = f.good(&LeafSpec {
        client_auth: false,
        ..spec()
    });
    assert_eq!(f.check(&server_only, Usage::Server), []);
    assert_eq!(
        f.check(&server_only, Usage::Mutual),
        [Problem::EkuMissing {
            eku: Eku::ClientAuth
        }]
    );
    let client_only = f.good(&LeafSpec {
        server_auth: false,
        ..spec()
    });
    // The chain is still verified (as a client certificate): only the EKU is wrong.
    assert_eq!(
        f.check(&client_only, Usage::Server),
        [Problem::EkuMissing {
            eku: Eku::ServerAuth
        }]
    );
}

#[test]
fn a_certificate_from_another_ca_is_untrusted() {
    let mut f = Fixture::new();
    let other = TestPki::generate("fabrikam.com", NOW - Duration::days(800)).unwrap();
    let t = f.leaf(
        &spec(),
        current(),
        Acl::for_service(PRINCIPAL),
        Some(&other.issuing),
    );
    assert_eq!(
        f.check(&t, Usage::Mutual),
        [Problem::ChainUntrusted {
            issuer: "CN=Fabrikam Issuing CA, O=Fabrikam".into(),
            reason: ChainReason::UnknownIssuer,
        }]
    );
}

#[test]
fn an_impostor_ca_with_the_same_name_is_untrusted() {
    let mut f = Fixture::new();
    let impostor = TestPki::generate("contoso.com", NOW - Duration::days(800)).unwrap();
    let t = f.leaf(
        &spec(),
        current(),
        Acl::for_service(PRINCIPAL),
        Some(&impostor.issuing),
    );
    // webpki finds our issuing CA by name and rejects the signature.
    assert_eq!(
        f.check(&t, Usage::Server),
        [Problem::ChainUntrusted {
            issuer: "CN=Contoso Issuing CA, O=Contoso".into(),
            reason: ChainReason::BadSignature,
        }]
    );
}

#[test]
fn independent_problems_are_all_reported() {
    let mut f = Fixture::new();
    let other = TestPki::generate("fabrikam.com", NOW - Duration::days(800)).unwrap();
    let not_after = NOW - Duration::days(1);
    let t = f.leaf(
        &LeafSpec {
            client_auth: false,
            ..LeafSpec::server("lcs02.contoso.com", "Contoso")
        },
        (NOW - Duration::days(300), not_after),
        Acl::machine_default(),
        Some(&other.issuing),
    );
    let codes: Vec<&str> = f
        .check(&t, Usage::Mutual)
        .iter()
        .map(Problem::code)
        .collect();
    assert_eq!(
        codes,
        [
            "key_unreadable",
            "expired",
            "name_mismatch",
            "eku_missing",
            "chain_untrusted"
        ]
    );
}

#[test]
fn problems_serialise_with_their_stable_names() {
    let problems = [
        Problem::NotFound {
            thumbprint: Thumbprint::of(b"x"),
        },
        Problem::KeyUnreadable {
            principal: PRINCIPAL.into(),
            denial: READ_DENIED,
        },
        Problem::Expired { not_after: NOW },
        Problem::NotYetValid { not_before: NOW },
        Problem::NameMismatch {
            name: SERVER.into(),
            presented: vec![],
        },
        Problem::EkuMissing {
            eku: Eku::ClientAuth,
        },
        Problem::ChainUntrusted {
            issuer: "CN=X".into(),
            reason: ChainReason::UnknownIssuer,
        },
    ];
    for p in &problems {
        let json = serde_json::to_value(p).unwrap();
        assert_eq!(json["problem"], p.code(), "{json}");
    }
    let json = serde_json::to_value(&problems[5]).unwrap();
    assert_eq!(json["eku"], "client_auth");
    let json = serde_json::to_value(&problems[2]).unwrap();
    assert_eq!(json["not_after"], "2026-06-01T00:00:00Z");
    let json = serde_json::to_value(&problems[6]).unwrap();
    assert_eq!(json["reason"], "unknown_issuer");
}
