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
//! - [`deployment`]: a deployment folder tying them together (`lcs-sim init`);
//! - [`clock`]: the one source of time, so the same code runs live and on virtual time.

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
pub mod input;
pub mod pki;
pub mod server;
pub mod sim;
pub mod sip;
pub mod store;
pub mod winerr;
