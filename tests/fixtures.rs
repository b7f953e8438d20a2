//! The committed test deployment in `fixtures/deployment/`.
//!
//! It is made by `Deployment::init` at [`SIM_EPOCH`], so its server certificate is valid for a
//! year from the simulation's fixed start and never expires for the simulation. Regenerate it
//! (new keys, new serials) with:
//!
//! ```text
//! cargo test --test fixtures -- --ignored regenerate_fixtures
//! ```

use std::path::PathBuf;

use lcs_sim::clock::SIM_EPOCH;
use lcs_sim::deployment::{Deployment, InitOptions};

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/deployment")
}

#[test]
#[ignore = "rewrites fixtures/deployment; run by hand"]
fn regenerate_fixtures() {
    let opts = InitOptions {
        force: true,
        ..InitOptions::default()
    };
    Deployment::init(fixture_dir(), &opts, SIM_EPOCH).unwrap();
}

#[test]
fn fixture_deployment_loads_and_is_valid_from_the_epoch() {
    let d = Deployment::open(fixture_dir()).unwrap();
    let config = d.config().unwrap();
    let store = d.store().load().unwrap();
    let cert = store.list(false).next().unwrap();
    assert_eq!(cert.info.not_before, SIM_EPOCH);
    assert_eq!((cert.info.not_after - SIM_EPOCH).whole_days(), 365);
    for (id, reference) in config.cert_refs() {
        let found = store
            .find_by_issuer_serial(&reference.issuer, &reference.serial)
            .unwrap_or_else(|e| panic!("{id}: {e}"));
        assert_eq!(found.thumbprint(), cert.thumbprint());
    }
    assert!(
        store
            .open_key(cert.thumbprint(), &config.service.principal)
            .is_ok()
    );
    // The committed CA can still sign renewals.
    let ca = d.issuing_ca().unwrap();
    assert_eq!(ca.info().subject, cert.info.issuer);
    assert!(d.event_log().read().unwrap().is_empty());
}
