//! lcs-sim: an emulation and test harness for Microsoft KB836410, "Live Communications Server
//! stops listening on the TLS listening port".
//!
//! Auto-enrollment renews the server certificate while the service runs; the renewal resets the
//! ACL of the private key, so the service account can no longer open it; new TLS handshakes fail,
//! connections decay to zero, instant messages queue and time out, and after a restart the TLS
//! listener does not start. This crate models each part of that chain with real components:
//!
//! - [`pki`]: a real test CA chain and server certificates (rcgen), issued and renewed;
//! - [`store`]: an emulated Windows machine store whose private keys carry ACLs, with the
//!   renewal policies that lose (or keep) the service account's access;
//! - [`config`]: `lcs.toml`, the listening connections and routes that name the certificate by
//!   issuer + serial, as LCS's WMI configuration does;
//! - [`sip`]: the sans-IO SIP core (parser, framer, transactions, registrar, proxy, Timer F);
//! - [`server`]: the async shell that runs it: listeners, credentials from the store checked
//!   on every handshake, the event log and counters, live rebind and auto-rebind, and the
//!   loopback admin endpoint (`/healthz`, `/metrics`, `/certs`, `POST /rebind`);
//! - [`sim`]: the deterministic replay on turmoil's simulated network and clock
//!   (`lcs-sim reproduce`), with emulated Messenger users and a federation peer;
//! - [`certcheck`]: whether a certificate can serve a connection now (key, chain, dates, name,
//!   EKUs), as typed problems: for live rebinds, `doctor` and `store list`;
//! - [`fix`]: the KB836410 resolution as a plan (rebind every connection, re-grant read);
//! - [`doctor`]: what is wrong with a deployment's certificates, each finding with its remedy;
//! - [`input`]: errors in hand-written files (`lcs.toml`, scenarios), named by file, line, field;
//! - [`eventlog`]: the deployment's application event log;
//! - [`failure`]: why a client could not connect, typed, with stable names;
//! - [`load`]: `lcs-sim load`, load against any SIP-over-TLS server with faults injected;
//! - [`deployment`]: a deployment folder tying them together (`lcs-sim init`);
//! - [`clock`]: the one source of time, so the same code runs live and on virtual time.
//!
//! # The dependency rule
//!
//! Dependencies point down, and nothing imports a module above it:
//!
//! ```text
//! cli (the binary)
//!  └─ sim, load, doctor          the three ways of using a server: replay, load, diagnose
//!      └─ server                 the async shell, generic over the network (tokio or turmoil)
//!          └─ deployment, fix    a folder on disk; the KB resolution as a plan
//!              └─ certcheck      is a certificate usable for a connection now?
//!                  └─ store, config, eventlog, input, atomic
//!                      └─ pki, sip, failure, clock, winerr
//! ```
//!
//! `sip` and `store` are pure: they import no tokio, read no clock and do no I/O of their own
//! (`store::disk` is the one file that touches the disk, behind a lock).
//!
//! # The determinism rules
//!
//! The same seed must give the same report byte for byte, so:
//! - only [`clock`] reads the OS clock (clippy's `disallowed-methods`); the SIP core takes `now`
//!   as an argument and the server reads tokio's clock, which turmoil makes virtual;
//! - std's `HashMap`/`HashSet` are banned (clippy's `disallowed-types`): their iteration order
//!   changes between runs;
//! - every random choice comes from an RNG seeded from the run's seed (turmoil's, each user's,
//!   Group Policy's); `select!` is `biased`;
//! - nothing random reaches a report: no thumbprints (keys are random), no wire bytes (ECDSA
//!   signatures vary in length); serials are derived from the seed.
//!
//! # The fault path, arrow by arrow
//!
//! 1. A renewal (`lcs-sim store renew`, a scenario's `renew` step, Group Policy in the
//!    simulation, `load --at T=renew`) calls [`store::Store::renew`]: new certificate, old one
//!    archived, and with `same-key-reset-acl` the shared key container's ACL reset, so the
//!    service principal loses read.
//! 2. The running server sees the new store: [`server::LiveStore::replace`] (the simulation
//!    calls it directly; `serve` polls `store/index.json`) swaps the snapshot and notifies
//!    subscribers (auto-rebind listens there).
//! 3. The next full handshake asks for its credential: the accept loop reads the ClientHello
//!    (`LazyConfigAcceptor`), then [`server::Credential::certified_key`] opens the bound
//!    certificate's key as the principal through the snapshot's ACL, and fails with a typed
//!    [`server::CredentialError`] (`NTE_BAD_KEYSET`).
//! 4. The handshake goes on with a resolver that has no certificate, so rustls sends the
//!    `access_denied` alert; the server counts a typed [`server::HandshakeFailure`] and logs 14360; the
//!    client classifies it as [`failure::ConnectFailure`] `tls_alert_access_denied`.
//! 5. Established connections carry on; new ones fail, so connections decay; the route cannot
//!    redial either, so MESSAGEs queue and Timer F answers 408; at the next start the archived
//!    reference is not found and the listener does not start (14352, 14336, 14347).
//! 6. The fix ([`fix`]) points every connection at the successor and re-grants read; live,
//!    [`server::ServiceHandle::rebind`] validates each new credential with [`certcheck`] and swaps them all
//!    at once.

#![forbid(unsafe_code)]

pub mod atomic;
pub mod certcheck;
pub mod clock;
pub mod config;
pub mod deployment;
pub mod doctor;
pub mod eventlog;
pub mod failure;
pub mod fix;
/// The fuzzers' properties: only with the `fuzzcheck` feature (the fuzz crate, the corpus test).
#[cfg(feature = "fuzzcheck")]
#[doc(hidden)]
pub mod fuzzcheck;
pub mod input;
pub mod load;
pub mod pki;
pub mod server;
pub mod sim;
pub mod sip;
pub mod store;
pub mod winerr;
