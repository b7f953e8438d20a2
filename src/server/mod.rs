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
//! - [`startup`]: [`start`] with per-connection credential acquisition (events 14352/14336/14347);
//!   `accept`: the connection cap, the handshake with a credential chosen per handshake;
//!   `route`: dialling static routes;
//! - [`service`]: the running service: what started, rebind, stop;
//! - [`reason`]: why a handshake failed, typed;
//! - [`auto`]: auto-rebind of renewed certificates, driven by store changes;
//! - [`tls`]: rustls configurations on the injected clock;
//! - [`metrics`], [`log`]: counters and the rate-limited application log;
//! - [`net`]: the listener / dialler abstraction;
//! - [`live`]: a deployment folder's service on real sockets (`serve`, tests, benches);
//! - [`admin`]: the loopback admin endpoint (`/healthz`, `/metrics`, `/certs`, `POST /rebind`),
//!   `serve.json`, and the client `fix --live` uses.

pub mod admin;
pub mod auto;
pub mod credentials;
pub mod live;
pub mod log;
pub mod metrics;
pub mod net;
pub mod reason;
pub mod route;
pub mod service;
pub mod startup;
pub mod tls;

mod accept;
mod conn;
mod driver;

pub use credentials::{Credential, CredentialError, LiveStore, watch_disk};
pub use metrics::{Metrics, MetricsSnapshot};
pub use net::{Listener, Network, TokioNet};
pub use reason::HandshakeFailure;
pub use route::RouteFailure;
pub use service::{
    ListenerInfo, RebindRefusal, RebindTarget, Rebound, Running, ServiceHandle, ServiceOptions,
    StartCause, StartFailure,
};
pub use startup::{ServiceContext, proxy_config, start};
