//! `Running::rebind`, the one server operation `serve`'s admin endpoint, auto-rebind and the
//! simulation call: every new credential validated before any is swapped (all or nothing),
//! established connections untouched, events 14370 / 14372.

mod common;

use common::*;
use lcs_sim::clock::{Clock, SystemClock};
use lcs_sim::config::CertRef;
use lcs_sim::server::{RebindRefusal, RebindTarget};
use lcs_sim::store::RenewalPolicy;

fn options(n: u32) -> String {
    request(
        "OPTIONS",
        "sip:lcs01.contoso.com",
        "probe@contoso.com",
        "lcs01.contoso.com",
        n,
        "",
        "",
    )
}

#[tokio::test]
async fn a_rebind_is_all_or_nothing_and_leaves_established_connections_alone() {
    let (_tmp, d) = deployment();
    let live = Live::start(&d).await;
    let tls = live.addr("tls-5061");
    let mut established = tls_connect(tls, client_config(&d, None)).await.unwrap();
    assert_eq!(
        transact(&mut established, &options(1)).await,
        "SIP/2.0 200 OK"
    );

    let old = live.running.credentials["tls-5061"].reference();
    let thumbprint = live.running.credentials["tls-5061"].thumbprint();
    let version = live.store.version();
    let renewal = d
        .renew(
            thumbprint.as_str(),
            RenewalPolicy::NewKeyKeepAcl,
            SystemClock.now_utc(),
        )
        .unwrap();
    reloaded_since(&live, version).await;
    let renewed = CertRef {
        issuer: old.issuer.clone(),
        serial: renewal.new_serial.clone(),
    };
    let mut nowhere = renewed.clone();
    nowhere.serial = lcs_sim::pki::Serial::derive(b"never issued");

    // One bad target: nothing is swapped, and the refusal says which and why.
    let targets = [
        RebindTarget {
            connection: "tls-5061".into(),
            to: renewed.clone(),
        },
        RebindTarget {
            connection: "mtls-5062".into(),
            to: nowhere,
        },
        RebindTarget {
            connection: "tcp-5060".into(),
            to: renewed.clone(),
        },
    ];
    let refused = live.running.rebind(&targets).unwrap_err();
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert!(
        matches!(&refused[0], RebindRefusal::Unusable { connection, .. } if connection == "mtls-5062")
    );
    assert_eq!(refused[0].reason(), "certificate_not_found");
    assert_eq!(refused[1].reason(), "not_running");
    assert_eq!(live.running.credentials["tls-5061"].reference(), old);

    // All good: every one swapped, the open connection carries on, new handshakes see the new one.
    let targets = [
        RebindTarget {
            connection: "tls-5061".into(),
            to: renewed.clone(),
        },
        RebindTarget {
            connection: "mtls-5062".into(),
            to: renewed.clone(),
        },
        RebindTarget {
            connection: "route-fabrikam.com".into(),
            to: renewed.clone(),
        },
    ];
    let done = live.running.rebind(&targets).unwrap();
    assert!(
        done.iter()
            .all(|r| r.changed && r.from == old && r.to == renewed),
        "{done:?}"
    );
    assert_eq!(
        transact(&mut established, &options(2)).await,
        "SIP/2.0 200 OK"
    );
    let fresh = tls_connect(tls, client_config(&d, None)).await.unwrap();
    let presented = fresh.get_ref().1.peer_certificates().unwrap()[0].clone();
    let info = lcs_sim::pki::CertInfo::parse(&presented).unwrap();
    assert_eq!(info.serial, renewal.new_serial);
    live.stop().await;

    let log = d.event_log().read().unwrap();
    assert_eq!(log.iter().filter(|e| e.id == 14372).count(), 1);
    assert_eq!(log.iter().filter(|e| e.id == 14370).count(), 1);
}
