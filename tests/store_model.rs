//! Random sequences of renew / grant / revoke / lookups against a deliberately simple model of
//! the store. The model knows nothing of certificates: only which certificate uses which key
//! container, which is archived, and each container's rights per principal.

use std::collections::{BTreeMap, BTreeSet};

use lcs_sim::pki::{
    CertificateAuthority, KeyAlgorithm, LeafSpec, Serial, TestPki, Thumbprint, issue_leaf,
};
use lcs_sim::store::{Acl, RenewalPolicy, Right, Store, StoreError};
use proptest::prelude::*;
use time::OffsetDateTime;
use time::macros::datetime;

const EPOCH: OffsetDateTime = datetime!(2026-01-01 00:00 UTC);
const PRINCIPALS: [&str; 4] = ["SYSTEM", "Administrators", "RTCService", "Guest"];

#[derive(Debug, Clone)]
enum Op {
    Renew {
        cert: usize,
        policy: RenewalPolicy,
    },
    Grant {
        cert: usize,
        principal: usize,
        right: Right,
    },
    Revoke {
        cert: usize,
        principal: usize,
        right: Option<Right>,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let right = prop_oneof![Just(Right::Read), Just(Right::FullControl)];
    prop_oneof![
        (
            any::<usize>(),
            prop::sample::select(RenewalPolicy::ALL.to_vec())
        )
            .prop_map(|(cert, policy)| Op::Renew { cert, policy }),
        (any::<usize>(), 0..PRINCIPALS.len(), right.clone()).prop_map(
            |(cert, principal, right)| Op::Grant {
                cert,
                principal,
                right
            }
        ),
        (any::<usize>(), 0..PRINCIPALS.len(), prop::option::of(right)).prop_map(
            |(cert, principal, right)| Op::Revoke {
                cert,
                principal,
                right
            }
        ),
    ]
}

/// The model: per certificate (in insertion order) its container, serial and archive state;
/// per container, principal → rights.
#[derive(Default)]
struct Model {
    certs: Vec<(Thumbprint, Serial, String, bool)>,
    acls: BTreeMap<String, BTreeMap<String, BTreeSet<Right>>>,
}

impl Model {
    fn can_read(&self, container: &str, principal: &str) -> bool {
        self.acls[container]
            .get(principal)
            .is_some_and(|r| r.contains(&Right::Read) || r.contains(&Right::FullControl))
    }
}

fn default_rights() -> BTreeMap<String, BTreeSet<Right>> {
    ["SYSTEM", "Administrators"]
        .iter()
        .map(|p| (p.to_string(), BTreeSet::from([Right::FullControl])))
        .collect()
}

fn seeded_store(ca: &CertificateAuthority) -> (Store, Model) {
    let key = KeyAlgorithm::EcdsaP256.generate().unwrap();
    let serial = Serial::derive(b"first");
    let der = issue_leaf(
        ca,
        &LeafSpec::server("lcs01.contoso.com", "Contoso"),
        &key,
        &serial,
        EPOCH,
        EPOCH + time::Duration::days(365),
    )
    .unwrap();
    let mut store = Store::new();
    let t = store
        .import(der, key, Acl::for_service("RTCService"))
        .unwrap();
    let container = store.find(t.as_str()).unwrap().key_container.clone();
    let mut model = Model::default();
    let mut rights = default_rights();
    rights.insert("RTCService".into(), BTreeSet::from([Right::Read]));
    model.acls.insert(container.clone(), rights);
    model.certs.push((t, serial, container, false));
    (store, model)
}

fn check_invariants(store: &Store, model: &Model, issuer: &str) {
    for (thumb, serial, container, archived) in &model.certs {
        let stored = store.find(thumb.as_str()).unwrap();
        assert_eq!(&stored.key_container, container);
        assert_eq!(stored.archived, *archived);
        // A principal can open a key iff its ACL grants read or full control.
        for p in PRINCIPALS {
            let opened = store.open_key(thumb, p);
            assert_eq!(
                opened.is_ok(),
                model.can_read(container, p),
                "{p} on {thumb}"
            );
            if let Err(e) = opened {
                assert!(matches!(e, StoreError::AccessDenied { .. }));
                assert_eq!(e.windows_code(), Some(0x8009_0016));
            }
        }
        // A lookup by issuer + serial never returns an archived certificate.
        match store.find_by_issuer_serial(issuer, serial) {
            Ok(found) => {
                assert!(!archived);
                assert_eq!(found.thumbprint(), thumb);
            }
            Err(StoreError::NotFound { archived_as, .. }) => {
                assert!(archived);
                assert_eq!(archived_as.as_ref(), Some(thumb));
            }
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(
        store.list(false).count(),
        model.certs.iter().filter(|c| !c.3).count()
    );
    assert_eq!(store.list(true).count(), model.certs.len());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn store_matches_model(ops in prop::collection::vec(op(), 1..16)) {
        let pki = TestPki::generate("contoso.com", EPOCH).unwrap();
        let issuer = pki.issuing.info().subject;
        let (mut store, mut model) = seeded_store(&pki.issuing);
        for (step, op) in ops.into_iter().enumerate() {
            match op {
                Op::Renew { cert, policy } => {
                    let i = cert % model.certs.len();
                    let (thumb, _, container, archived) = model.certs[i].clone();
                    let now = EPOCH + time::Duration::hours(step as i64 + 1);
                    let serial = Serial::derive(format!("renewal {step}").as_bytes());
                    let result = store.renew(&thumb, policy, &pki.issuing, now, serial.clone());
                    if archived {
                        prop_assert!(matches!(result, Err(StoreError::AlreadyRenewed { .. })), "{result:?}");
                        continue;
                    }
                    let r = result.unwrap();
                    // A fresh serial and thumbprint, linked from the old certificate.
                    prop_assert_eq!(&r.new_serial, &serial);
                    prop_assert!(model.certs.iter().all(|c| c.0 != r.new && c.1 != r.new_serial));
                    prop_assert_eq!(store.find(thumb.as_str()).unwrap().renewed_by.as_ref(), Some(&r.new));
                    let new_info = &store.find(r.new.as_str()).unwrap().info;
                    let old_info = &store.find(thumb.as_str()).unwrap().info;
                    prop_assert_eq!(&new_info.subject, &old_info.subject);
                    prop_assert_eq!(&new_info.dns_names, &old_info.dns_names);
                    prop_assert_eq!(&new_info.ekus, &old_info.ekus);
                    prop_assert_eq!(new_info.not_before, now);
                    model.certs[i].3 = true;
                    let new_container = match policy {
                        RenewalPolicy::SameKeyResetAcl => {
                            model.acls.insert(container.clone(), default_rights());
                            container
                        }
                        RenewalPolicy::NewKeyDefaultAcl | RenewalPolicy::NewKeyKeepAcl => {
                            prop_assert_ne!(&r.key_container, &container);
                            let rights = if policy == RenewalPolicy::NewKeyKeepAcl {
                                model.acls[&container].clone()
                            } else {
                                default_rights()
                            };
                            model.acls.insert(r.key_container.clone(), rights);
                            r.key_container.clone()
                        }
                    };
                    prop_assert_eq!(&r.key_container, &new_container);
                    model.certs.push((r.new, r.new_serial, new_container, false));
                }
                Op::Grant { cert, principal, right } => {
                    let (thumb, _, container, _) = model.certs[cert % model.certs.len()].clone();
                    store.grant(&thumb, PRINCIPALS[principal], right).unwrap();
                    model.acls.get_mut(&container).unwrap()
                        .entry(PRINCIPALS[principal].into()).or_default().insert(right);
                }
                Op::Revoke { cert, principal, right } => {
                    let (thumb, _, container, _) = model.certs[cert % model.certs.len()].clone();
                    store.revoke(&thumb, PRINCIPALS[principal], right).unwrap();
                    let acl = model.acls.get_mut(&container).unwrap();
                    match right {
                        None => { acl.remove(PRINCIPALS[principal]); }
                        Some(r) => {
                            if let Some(set) = acl.get_mut(PRINCIPALS[principal]) {
                                set.remove(&r);
                                if set.is_empty() { acl.remove(PRINCIPALS[principal]); }
                            }
                        }
                    }
                }
            }
            check_invariants(&store, &model, &issuer);
        }
    }
}

#[test]
fn same_key_renewal_locks_the_service_out_of_old_and_new_certificate() {
    let pki = TestPki::generate("contoso.com", EPOCH).unwrap();
    let (mut store, model) = seeded_store(&pki.issuing);
    let old = model.certs[0].0.clone();
    assert!(store.open_key(&old, "RTCService").is_ok());
    let r = store
        .renew(
            &old,
            RenewalPolicy::SameKeyResetAcl,
            &pki.issuing,
            EPOCH,
            Serial::derive(b"n"),
        )
        .unwrap();
    for t in [&old, &r.new] {
        let err = store.open_key(t, "RTCService").unwrap_err();
        assert!(
            err.to_string().contains("0x80090016 NTE_BAD_KEYSET"),
            "{err}"
        );
    }
    assert!(store.open_key(&r.new, "SYSTEM").is_ok());
}

#[test]
fn ambiguous_and_unknown_prefixes_are_reported() {
    let pki = TestPki::generate("contoso.com", EPOCH).unwrap();
    let (mut store, model) = seeded_store(&pki.issuing);
    let mut current = model.certs[0].0.clone();
    // 17 certificates: by pigeonhole two share a first hex digit.
    for i in 0..16 {
        let serial = Serial::derive(format!("{i}").as_bytes());
        current = store
            .renew(
                &current,
                RenewalPolicy::NewKeyKeepAcl,
                &pki.issuing,
                EPOCH,
                serial,
            )
            .unwrap()
            .new;
    }
    let firsts: Vec<char> = store
        .list(true)
        .map(|c| c.thumbprint().as_str().chars().next().unwrap())
        .collect();
    let shared = firsts
        .iter()
        .find(|c| firsts.iter().filter(|d| d == c).count() > 1)
        .unwrap();
    let err = store.find(&shared.to_string()).unwrap_err();
    assert!(matches!(&err, StoreError::AmbiguousThumbprint { matches, .. } if matches.len() > 1));
    assert!(err.to_string().contains("give more digits"));
    assert!(matches!(
        store.find("not-hex"),
        Err(StoreError::UnknownThumbprint { .. })
    ));
    // Lower case and colon separators are accepted, as Windows' dialog shows them.
    let full = current.as_str().to_lowercase();
    let spaced: String = full
        .as_bytes()
        .chunks(2)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join(":");
    assert_eq!(store.find(&spaced).unwrap().thumbprint(), &current);
}

#[test]
fn renewal_by_another_ca_is_refused() {
    let pki = TestPki::generate("contoso.com", EPOCH).unwrap();
    let other = TestPki::generate("fabrikam.com", EPOCH).unwrap();
    let (mut store, model) = seeded_store(&pki.issuing);
    let err = store
        .renew(
            &model.certs[0].0,
            RenewalPolicy::SameKeyResetAcl,
            &other.issuing,
            EPOCH,
            Serial::derive(b"x"),
        )
        .unwrap_err();
    assert!(matches!(err, StoreError::WrongIssuer { .. }), "{err}");
    // Nothing changed.
    assert!(store.open_key(&model.certs[0].0, "RTCService").is_ok());
    assert_eq!(store.list(true).count(), 1);
}

#[test]
fn import_refuses_a_key_that_does_not_match() {
    let pki = TestPki::generate("contoso.com", EPOCH).unwrap();
    let key = KeyAlgorithm::EcdsaP256.generate().unwrap();
    let other = KeyAlgorithm::EcdsaP256.generate().unwrap();
    let der = issue_leaf(
        &pki.issuing,
        &LeafSpec::server("a.contoso.com", "Contoso"),
        &key,
        &Serial::derive(b"a"),
        EPOCH,
        EPOCH + time::Duration::days(1),
    )
    .unwrap();
    let err = Store::new()
        .import(der, other, Acl::machine_default())
        .unwrap_err();
    assert!(matches!(err, StoreError::KeyMismatch { .. }), "{err}");
}

#[test]
fn rsa_keys_issue_and_renew_with_a_new_rsa_key() {
    let pki = TestPki::generate("contoso.com", EPOCH).unwrap();
    let key = KeyAlgorithm::Rsa2048.generate().unwrap();
    assert_eq!(KeyAlgorithm::of(&key).unwrap(), KeyAlgorithm::Rsa2048);
    let der = issue_leaf(
        &pki.issuing,
        &LeafSpec::server("lcs01.contoso.com", "Contoso"),
        &key,
        &Serial::derive(b"rsa"),
        EPOCH,
        EPOCH + time::Duration::days(365),
    )
    .unwrap();
    let mut store = Store::new();
    let t = store
        .import(der, key, Acl::for_service("RTCService"))
        .unwrap();
    let r = store
        .renew(
            &t,
            RenewalPolicy::NewKeyKeepAcl,
            &pki.issuing,
            EPOCH,
            Serial::derive(b"rsa2"),
        )
        .unwrap();
    let new_key = store.open_key(&r.new, "RTCService").unwrap();
    assert_eq!(KeyAlgorithm::of(new_key).unwrap(), KeyAlgorithm::Rsa2048);
}
