//! The server's [`Network`] over turmoil's simulated TCP, and wall time on turmoil's clock.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::clock::Clock;
use crate::server::{Listener, Network};

/// turmoil's network: listeners bind every address of their simulated host; `host:port` targets
/// are resolved by turmoil's DNS (host names are the simulation's host names).
#[derive(Debug, Clone, Copy, Default)]
pub struct TurmoilNet;

impl Listener for turmoil::net::TcpListener {
    type Io = turmoil::net::TcpStream;

    async fn accept(&mut self) -> io::Result<(Self::Io, SocketAddr)> {
        turmoil::net::TcpListener::accept(self).await
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        turmoil::net::TcpListener::local_addr(self)
    }
}

impl Network for TurmoilNet {
    type Io = turmoil::net::TcpStream;
    type Listener = turmoil::net::TcpListener;

    async fn bind(&self, addr: SocketAddr) -> io::Result<Self::Listener> {
        // Configured addresses are loopback; a simulated host listens on its own address.
        turmoil::net::TcpListener::bind((Ipv4Addr::UNSPECIFIED, addr.port())).await
    }

    async fn connect(&self, target: &str) -> io::Result<Self::Io> {
        turmoil::net::TcpStream::connect(target).await
    }
}

/// Wall time on the simulation's clock: turmoil's, inside a simulated host; the runner's, set at
/// each step, outside (when the timeline renews a certificate, say).
#[derive(Debug, Clone)]
pub struct SimClock {
    outside: Arc<Mutex<Duration>>,
}

impl SimClock {
    /// A clock whose outside time starts at `since_unix_epoch`.
    pub fn new(since_unix_epoch: Duration) -> Self {
        Self {
            outside: Arc::new(Mutex::new(since_unix_epoch)),
        }
    }

    /// Sets the time seen outside simulated hosts.
    pub fn set(&self, since_unix_epoch: Duration) {
        *self.outside.lock().expect("clock lock") = since_unix_epoch;
    }
}

impl Clock for SimClock {
    fn now(&self) -> SystemTime {
        let since =
            turmoil::since_epoch().unwrap_or_else(|| *self.outside.lock().expect("clock lock"));
        UNIX_EPOCH + since
    }
}
