//! The emulated Live Communications Server: listeners, credentials from the store, the SIP
//! driver, the event log and counters.
//!
//! The shell is async (tokio) but generic over the [`Network`], so the same code runs on real
//! loopback sockets (`lcs-sim serve`) and on turmoil's simulated network (`lcs-sim reproduce`).
//! It reads time only from tokio's clock (virtual under simulation) and from the injected
//! [`Clock`](crate::clock::Clock).
//!
//! - [`credentials`]: certificate lookup by issuer + serial at start, key ACL check on every
//!   handshake (the KB836410 mechanism), live rebind;
//! - [`service`]: start (per-connection credential acquisition, events 14352/14336/14347),
//!   accept loops, route dialling, stop;
//! - [`tls`]: rustls configurations on the injected clock;
//! - [`metrics`], [`log`]: counters and the rate-limited application log;
//! - [`net`]: the listener / dialler abstraction;
//! - [`live`]: a deployment folder's service on real sockets (`serve`, tests, benches).

pub mod credentials;
pub mod live;
pub mod log;
pub mod metrics;
pub mod net;
pub mod service;
pub mod tls;

mod conn;
mod driver;

pub use credentials::{Credential, CredentialError, LiveStore, watch_disk};
pub use metrics::{Metrics, MetricsSnapshot};
pub use net::{Listener, Network, TokioNet};
pub use service::{ListenerInfo, Running, ServiceContext, ServiceOptions, StartFailure, start};
