//! The one place that reads the operating system's clock.
//!
//! KB836410 is a fault that unfolds over hours: a certificate is renewed, connections decay as
//! clients churn, messages time out after Timer F. To replay hours in seconds the simulation runs
//! the same code on virtual time, so nothing else in the crate may read the OS clock (clippy's
//! `disallowed-methods` enforces it, see `.clippy.toml`). Code that needs wall time takes a
//! [`Clock`] or a `now` argument; live mode passes [`SystemClock`], the simulation a virtual one.

use std::fmt::Debug;
use std::time::SystemTime;

use time::OffsetDateTime;

/// The fixed start of virtual time: the simulation's clock starts here, and the committed
/// fixtures are valid from here for a year, so nothing on disk ever expires for the simulation.
pub const SIM_EPOCH: OffsetDateTime = time::macros::datetime!(2026-01-01 00:00 UTC);

/// A source of wall-clock time (certificate validity, event-log timestamps).
pub trait Clock: Debug + Send + Sync {
    /// The current wall-clock time.
    fn now(&self) -> SystemTime;

    /// The current time as a UTC date-time, for certificates and logs.
    fn now_utc(&self) -> OffsetDateTime {
        OffsetDateTime::from(self.now())
    }
}

/// The operating system's clock: live mode and the command line.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(
        clippy::disallowed_methods,
        reason = "the single sanctioned read of the OS clock"
    )]
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// Monotonic time from tokio's clock: virtual when the runtime's time is paused or simulated
/// (turmoil), real otherwise. The SIP core's timers run on it.
pub fn monotonic_now() -> std::time::Instant {
    #[allow(
        clippy::disallowed_methods,
        reason = "tokio's clock is the sanctioned monotonic source: it is virtual under simulation"
    )]
    tokio::time::Instant::now().into_std()
}
