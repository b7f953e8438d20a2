//! The two questions every user of the store asks about a configured certificate: which
//! certificate a reference (issuer + serial) names, archived or not, and where its chain of
//! renewals ends. The server's auto-rebind, `fix`, `doctor` and `load`'s faults all ask them;
//! they live here once so they cannot disagree about an archived reference or a broken link.

use std::collections::BTreeSet;

use super::{Store, StoredCert};
use crate::pki::{Serial, Thumbprint};

impl Store {
    /// The certificate `issuer` + `serial` names, archived or not (the first added, should a
    /// hand edit have left two). Unlike [`find_by_issuer_serial`](Self::find_by_issuer_serial),
    /// the lookup a running service does, this sees archived certificates: it is how `fix` and
    /// `doctor` find what a stale reference once meant.
    pub fn find_including_archived(&self, issuer: &str, serial: &Serial) -> Option<&StoredCert> {
        self.list(true)
            .find(|c| c.info.serial == *serial && c.info.issuer == issuer)
    }

    /// The newest certificate in `thumbprint`'s chain of renewals: the certificate itself when it
    /// was never renewed, `None` when no certificate has that thumbprint. The walk follows
    /// `renewed_by` while the link names a certificate in the store and stops at the last one
    /// found; a cycle (loading refuses them) ends it before it goes round.
    pub fn newest(&self, thumbprint: &Thumbprint) -> Option<&StoredCert> {
        let mut at = self.exact(thumbprint)?;
        let mut seen = BTreeSet::from([at.thumbprint()]);
        while let Some(next) = at.renewed_by.as_ref().and_then(|t| self.exact(t)) {
            if !seen.insert(next.thumbprint()) {
                break;
            }
            at = next;
        }
        Some(at)
    }

    /// The newest certificate that replaced `thumbprint`, if it was renewed (see
    /// [`newest`](Self::newest)).
    pub fn successor(&self, thumbprint: &Thumbprint) -> Option<&StoredCert> {
        self.newest(thumbprint)
            .filter(|newest| newest.thumbprint() != thumbprint)
    }

    fn exact(&self, thumbprint: &Thumbprint) -> Option<&StoredCert> {
        self.list(true).find(|c| c.thumbprint() == thumbprint)
    }
}

#[cfg(test)]
mod tests {
    use rustls::pki_types::PrivatePkcs8KeyDer;
    use time::macros::datetime;

    use super::*;
    use crate::pki::{KeyAlgorithm, LeafSpec, TestPki};
    use crate::store::{Acl, RenewalPolicy};

    const NOW: time::OffsetDateTime = datetime!(2026-01-01 00:00 UTC);

    /// A store with one certificate renewed twice: [first (archived), second (archived), third].
    fn renewed_twice() -> (Store, TestPki, Vec<Thumbprint>) {
        let pki = TestPki::generate("contoso.com", NOW).unwrap();
        let key: PrivatePkcs8KeyDer<'static> = KeyAlgorithm::EcdsaP256.generate().unwrap();
        let der = crate::pki::issue_leaf(
            &pki.issuing,
            &LeafSpec::server("lcs01.contoso.com", "Contoso"),
            &key,
            &Serial::derive(b"first"),
            NOW,
            NOW + time::Duration::days(365),
        )
        .unwrap();
        let mut store = Store::new();
        let first = store.import(der, key, Acl::for_service("svc")).unwrap();
        let mut chain = vec![first];
        for serial in [b"second", b"third!"] {
            let last = chain.last().unwrap().clone();
            let r = store
                .renew(
                    &last,
                    RenewalPolicy::NewKeyKeepAcl,
                    &pki.issuing,
                    NOW,
                    Serial::derive(serial),
                )
                .unwrap();
            chain.push(r.new);
        }
        (store, pki, chain)
    }

    #[test]
    fn newest_follows_every_renewal_from_any_point_of_the_chain() {
        let (store, _, chain) = renewed_twice();
        for t in &chain {
            assert_eq!(store.newest(t).unwrap().thumbprint(), &chain[2], "from {t}");
        }
        assert_eq!(store.successor(&chain[0]).unwrap().thumbprint(), &chain[2]);
        assert_eq!(store.successor(&chain[1]).unwrap().thumbprint(), &chain[2]);
        assert!(store.successor(&chain[2]).is_none(), "never renewed");
    }

    #[test]
    fn a_missing_certificate_has_no_newest_and_a_broken_link_stops_at_the_last_found() {
        let (store, _, chain) = renewed_twice();
        let unknown = Thumbprint::try_from("AB".repeat(20)).unwrap();
        assert!(store.newest(&unknown).is_none());
        assert!(store.successor(&unknown).is_none());
        // A link to a certificate that is not there (loading refuses it): the walk stops before it.
        let mut broken = store.clone();
        broken.cert_mut(2).renewed_by = Some(unknown);
        assert_eq!(broken.newest(&chain[0]).unwrap().thumbprint(), &chain[2]);
    }

    #[test]
    fn a_cycle_ends_the_walk_instead_of_going_round() {
        let (mut store, _, chain) = renewed_twice();
        // third -> first closes the ring first -> second -> third -> first (loading refuses it).
        store.cert_mut(2).renewed_by = Some(chain[0].clone());
        assert_eq!(store.newest(&chain[0]).unwrap().thumbprint(), &chain[2]);
        assert_eq!(store.newest(&chain[1]).unwrap().thumbprint(), &chain[0]);
        assert_eq!(store.newest(&chain[2]).unwrap().thumbprint(), &chain[1]);
        // A certificate renewed by itself is its own newest: no successor.
        store.cert_mut(2).renewed_by = Some(chain[2].clone());
        assert!(store.successor(&chain[2]).is_none());
    }

    #[test]
    fn a_reference_finds_archived_certificates_the_service_lookup_does_not() {
        let (store, pki, chain) = renewed_twice();
        let issuer = pki.issuing.info().subject;
        let first = Serial::derive(b"first");
        let archived = store.find_including_archived(&issuer, &first).unwrap();
        assert_eq!(archived.thumbprint(), &chain[0]);
        assert!(archived.archived);
        assert!(store.find_by_issuer_serial(&issuer, &first).is_err());
        let active = store
            .find_including_archived(&issuer, &Serial::derive(b"third!"))
            .unwrap();
        assert_eq!(active.thumbprint(), &chain[2]);
        assert!(!active.archived);
        // Issuer and serial must both match.
        assert!(store.find_including_archived("CN=Other", &first).is_none());
        assert!(
            store
                .find_including_archived(&issuer, &Serial::derive(b"never"))
                .is_none()
        );
    }
}
