//! Runs a scenario: the real server, store and SIP code on turmoil's network and clock.
//!
//! Hosts: `lcs01` runs the service (started, and restarted on the timeline's command, by the same
//! [`server::start`] that `serve` uses), `fabrikam` runs the federation peer, and `users0..N`
//! each run many emulated users as tasks (turmoil's cost grows steeply with the number of hosts,
//! so users share a few). The runner steps the simulation tick by tick, applies timeline steps
//! when their time comes (renewing in the shared store, signalling a restart, rewriting the
//! configuration for a fix, swapping live credentials for a rebind), and samples the counters.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

pub use super::applied::{Applied, AppliedFix, AppliedStep, StepKind};

mod steps;

use super::net::{SimClock, TurmoilNet};
use super::record::{Recorder, Shared};
use super::scenario::Scenario;
use super::world::{self, PEER_HOST, SERVER_HOST, World};
use super::{peer, user};
use crate::clock::{Clock, SIM_EPOCH};
use crate::config::Config;
use crate::eventlog::MemoryLog;
use crate::pki::PkiError;
use crate::server::metrics::MetricsSnapshot;
use crate::server::{
    self, LiveStore, Metrics, ServiceContext, ServiceHandle, ServiceOptions, StartFailure,
};
use steps::{GroupPolicy, apply};

/// How long after the end of the run the users may take to stop.
const END_GRACE: Duration = Duration::from_secs(30);

/// The simulation could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    /// The test PKI could not be made.
    #[error("building the simulated PKI: {0}")]
    Pki(#[from] PkiError),
    /// turmoil stopped with an error (a host failed).
    #[error("the simulation failed: {0}")]
    Turmoil(String),
    /// The simulation panicked (in turmoil or in code it ran): a bug or a limit of the harness,
    /// reported as this seed's error instead of ending the process or the sweep.
    #[error("the simulation panicked: {0}")]
    Panicked(String),
}

/// The message of a caught panic (`panic!` gives a `&str` or a `String`).
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

/// One start of the service.
#[derive(Debug, Clone)]
pub struct StartRecord {
    /// Virtual time of the start.
    pub at: Duration,
    /// Listeners that started.
    pub listening: Vec<String>,
    /// Connections and routes that did not.
    pub failed: Vec<StartFailure>,
    /// Event ids logged by the start, in order.
    pub events: Vec<u32>,
    /// Why each connection that did not start failed: its typed `StartCause` reason (for a
    /// certificate, the reason its 14352 event names).
    pub causes: BTreeMap<String, String>,
}

#[derive(Default)]
struct ServerState {
    metrics: Option<Arc<Metrics>>,
    /// The running instance's handle: its credentials and the server's own live rebind.
    handle: Option<Arc<ServiceHandle>>,
    starts: Vec<StartRecord>,
    /// Counters of earlier instances, so totals survive restarts.
    carried: MetricsSnapshot,
    /// Swaps the service made by itself (`[server] auto_rebind`): when, and which connections.
    auto_rebinds: Vec<(Duration, Vec<String>)>,
}

/// A sample of the time series.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Sample {
    /// Virtual seconds since the start.
    pub t: u64,
    /// TLS connections open.
    pub tls_connections: u64,
    /// Mutual-TLS connections open (inbound).
    pub mtls_connections: u64,
    /// Route connections open.
    pub route_connections: u64,
    /// Registered users.
    pub registered: u64,
    /// MESSAGEs waiting for the route now.
    pub queue_depth: u64,
    /// MESSAGEs that ever had to wait for the route (all service instances).
    pub queued: u64,
    /// MESSAGEs answered 200 (as users saw it).
    pub delivered: u64,
    /// MESSAGEs answered 408 (as users saw it).
    pub timed_out: u64,
    /// Failed client connection attempts by reason.
    pub connect_failures: BTreeMap<String, u64>,
}

/// Everything a run produced; the report is computed from it.
pub struct Outcome {
    /// The samples.
    pub series: Vec<Sample>,
    /// What clients and the peer recorded.
    pub recorder: Recorder,
    /// Each start of the service.
    pub starts: Vec<StartRecord>,
    /// The timeline as applied.
    pub applied: Applied,
    /// The application log.
    pub events: Vec<crate::eventlog::Event>,
    /// Connections still failing at the end.
    pub unfixed: Vec<String>,
    /// Totals of the server's SIP counters over all instances.
    pub server_totals: MetricsSnapshot,
    /// Swaps the service made by itself (`[server] auto_rebind`): when, and which connections.
    pub auto_rebinds: Vec<(Duration, Vec<String>)>,
}

struct Shared2 {
    store: Arc<LiveStore>,
    config: Arc<Mutex<Config>>,
    events: Arc<MemoryLog>,
    state: Arc<Mutex<ServerState>>,
    restart: watch::Sender<u64>,
    clock: SimClock,
    /// `[server] auto_rebind`: the service rebinds renewed certificates by itself.
    auto_rebind: bool,
    /// Each listener's connection cap: see [`connection_cap`].
    max_connections: u32,
}

/// Runs `scenario` with `seed`. A panic inside the run (turmoil's limits, say) is caught and
/// returned as [`SimError::Panicked`]: nothing of the run is shared with the caller but its
/// result, so no state survives the unwinding half-updated.
pub fn run(scenario: &Scenario, seed: u64) -> Result<Outcome, SimError> {
    catching(|| run_caught(scenario, seed))
}

/// `f`'s result, or its panic as [`SimError::Panicked`].
fn catching<T>(f: impl FnOnce() -> Result<T, SimError>) -> Result<T, SimError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .unwrap_or_else(|payload| Err(SimError::Panicked(panic_message(payload.as_ref()))))
}

fn run_caught(scenario: &Scenario, seed: u64) -> Result<Outcome, SimError> {
    let (age, lifetime) = scenario
        .autoenrollment
        .as_ref()
        .map_or((Duration::ZERO, Duration::from_secs(365 * 86_400)), |a| {
            (a.certificate_age, a.lifetime)
        });
    let world = Arc::new(world::build(seed, scenario.server.t1_ms, age, lifetime)?);
    let epoch = SystemTime::from(SIM_EPOCH);
    let since = epoch
        .duration_since(UNIX_EPOCH)
        .expect("the epoch is after 1970");
    let clock = SimClock::new(since);
    let (restart, _) = watch::channel(0u64);
    let shared = Arc::new(Shared2 {
        store: LiveStore::new(world.store.clone(), world.intermediates.clone()),
        config: Arc::new(Mutex::new(world.config.clone())),
        events: Arc::new(MemoryLog::default()),
        state: Arc::new(Mutex::new(ServerState::default())),
        restart,
        clock: clock.clone(),
        auto_rebind: scenario.server.auto_rebind,
        max_connections: connection_cap(scenario.users.count),
    });
    let recorder: Shared = Arc::default();
    let mut sim = turmoil::Builder::new()
        .epoch(epoch)
        .simulation_duration(scenario.duration + Duration::from_secs(600))
        .tick_duration(scenario.network.tick)
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(Duration::from_millis(1))
        .rng_seed(seed)
        .tcp_capacity(tcp_capacity(scenario.users.count))
        .build();
    add_hosts(&mut sim, scenario, seed, &world, &shared, &recorder);
    let (series, applied) = drive(&mut sim, scenario, seed, &world, &shared, &recorder)?;
    let state = shared.state.lock().expect("state");
    let unfixed = unfixed(&shared, &state);
    let mut server_totals = state.carried.clone();
    if let Some(m) = &state.metrics {
        add(&mut server_totals, &m.snapshot());
    }
    let starts = state.starts.clone();
    let auto_rebinds = state.auto_rebinds.clone();
    drop(state);
    drop(sim);
    let recorder = std::mem::take(&mut *recorder.lock().expect("recorder"));
    Ok(Outcome {
        series,
        recorder,
        starts,
        applied,
        events: shared.events.events(),
        unfixed,
        server_totals,
        auto_rebinds,
    })
}

/// turmoil's per-socket queue length, which is also a listener's backlog: turmoil panics ("server
/// socket buffer full") when a SYN finds the backlog full, and after a restart every user
/// reconnects within a second or so. A backlog above the number of clients that can connect at
/// once (every user and the peer) cannot fill; a longer data queue only matters to a writer 64
/// segments ahead of its reader, which no SIP exchange here is.
fn tcp_capacity(users: usize) -> usize {
    users.saturating_add(64)
}

/// The service's per-listener connection cap in the simulation: `serve` derives it from the
/// process's file-descriptor limit, which a simulated host does not have, and [`ServiceOptions`]'
/// default (4096) would close every user past it before the handshake. Every user and the peer
/// fit, and below 4,032 users the cap is the default, so those reports do not change.
fn connection_cap(users: usize) -> u32 {
    let default = ServiceOptions::default().default_max_connections;
    u32::try_from(users.saturating_add(64)).map_or(u32::MAX, |n| n.max(default))
}

/// The server, the federation peer and the users' hosts.
fn add_hosts(
    sim: &mut turmoil::Sim<'_>,
    scenario: &Scenario,
    seed: u64,
    world: &Arc<World>,
    shared: &Arc<Shared2>,
    recorder: &Shared,
) {
    {
        let shared = shared.clone();
        let world = world.clone();
        sim.host(SERVER_HOST, move || {
            server_host(shared.clone(), world.clone())
        });
    }
    let clock = Arc::new(shared.clock.clone());
    {
        let config = peer::server_config(world, clock.clone());
        let recorder = recorder.clone();
        let f = &scenario.federation;
        let (mean, max) = (f.connection_lifetime, f.connection_max_lifetime);
        sim.host(PEER_HOST, move || {
            peer::run(config.clone(), recorder.clone(), seed, mean, max)
        });
    }
    let client_tls = client_config(world, clock);
    let users = &scenario.users;
    for h in 0..users.hosts {
        let host = format!("users{h}");
        let ctx = user::UserContext {
            users: users.clone(),
            seed,
            end: scenario.duration,
            timer_f: Duration::from_millis(scenario.server.t1_ms * 64),
            tls: client_tls.clone(),
            recorder: recorder.clone(),
            host: host.clone(),
        };
        let indices: Vec<usize> = (h..users.count).step_by(users.hosts).collect();
        sim.client(host, async move {
            let tasks: Vec<_> = indices
                .into_iter()
                .map(|i| tokio::spawn(user::run(i, ctx.clone())))
                .collect();
            for t in tasks {
                t.await?;
            }
            Ok(())
        });
    }
}

/// Steps the simulation to its end: timeline steps and Group Policy refreshes when their time
/// comes, a sample every `sample_interval`.
fn drive(
    sim: &mut turmoil::Sim<'_>,
    scenario: &Scenario,
    seed: u64,
    world: &World,
    shared: &Shared2,
    recorder: &Shared,
) -> Result<(Vec<Sample>, Applied), SimError> {
    let since = SystemTime::from(SIM_EPOCH)
        .duration_since(UNIX_EPOCH)
        .expect("the epoch is after 1970");
    let mut applied = Applied::default();
    let mut steps = scenario.steps.iter().peekable();
    let mut group_policy = scenario
        .autoenrollment
        .as_ref()
        .map(|a| GroupPolicy::new(a, seed));
    let mut series = Vec::new();
    let mut next_sample = Duration::ZERO;
    loop {
        let t = sim.elapsed();
        shared.clock.set(since + t);
        while let Some(step) = steps.next_if(|s| s.at() <= t) {
            apply(step, t, seed, world, shared, &mut applied);
        }
        if let Some(gp) = group_policy.as_mut()
            && t >= gp.next
            && t < scenario.duration
        {
            gp.refresh(t, seed, world, shared, &mut applied);
        }
        if t >= next_sample && t <= scenario.duration {
            series.push(sample(t, shared, recorder));
            next_sample += scenario.sample_interval;
        }
        // Users stop at the end of the run and record what is still pending; step until they
        // all have (a timer due at the very end fires on the next tick), within a grace period.
        if t >= scenario.duration + END_GRACE {
            return Err(SimError::Turmoil(format!(
                "users still running {END_GRACE:?} after the end of the run"
            )));
        }
        match sim.step() {
            Ok(true) => return Ok((series, applied)),
            Ok(false) => {}
            Err(e) => return Err(SimError::Turmoil(e.to_string())),
        }
    }
}

fn client_config(world: &World, clock: Arc<dyn Clock>) -> Arc<rustls::ClientConfig> {
    let settings = crate::config::TlsSettings::default();
    let config = server::tls::client_config(world.roots.clone(), None, &settings, clock, None)
        .expect("a valid TLS configuration");
    Arc::new(config)
}

async fn server_host(shared: Arc<Shared2>, world: Arc<World>) -> turmoil::Result {
    let mut restarts = shared.restart.subscribe();
    let mut instance = 0u64;
    loop {
        instance += 1;
        let config = shared.config.lock().expect("config").clone();
        let logged_before = shared.events.events().len();
        let ctx = ServiceContext {
            config,
            store: shared.store.clone(),
            roots: world.roots.clone(),
            clock: Arc::new(shared.clock.clone()),
            events: shared.events.clone(),
        };
        let options = ServiceOptions {
            instance,
            auto_rebind: shared.auto_rebind,
            on_auto_rebind: Some(record_auto_rebind(&shared.config, &shared.state)),
            default_max_connections: shared.max_connections,
            ..ServiceOptions::default()
        };
        let running = server::start(TurmoilNet, ctx, options).await;
        let logged: Vec<_> = shared.events.events().split_off(logged_before);
        // The cause of each connection that did not start, typed by the server (the reason its
        // 14352 event names).
        let causes = running
            .failed
            .iter()
            .map(|f| (f.id.clone(), f.cause.reason().to_string()))
            .collect();
        {
            let mut state = shared.state.lock().expect("state");
            state.starts.push(StartRecord {
                at: super::record::now(),
                listening: running.listeners.iter().map(|l| l.id.clone()).collect(),
                failed: running.failed.clone(),
                events: logged.iter().map(|e| e.id).collect(),
                causes,
            });
            state.metrics = Some(running.metrics.clone());
            state.handle = Some(running.handle());
        }
        if restarts.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
        let snapshot = running.metrics.snapshot();
        running.shutdown().await;
        let mut state = shared.state.lock().expect("state");
        add(&mut state.carried, &snapshot);
        state.metrics = None;
    }
}

/// What `serve --auto-rebind` does after a swap: record the new reference in the configuration,
/// so the next start (a restart) uses the renewed certificate too.
/// The swap is also recorded for the report's timeline.
fn record_auto_rebind(
    config: &Arc<Mutex<Config>>,
    state: &Arc<Mutex<ServerState>>,
) -> server::service::OnRebound {
    let (config, state) = (config.clone(), state.clone());
    Arc::new(move |done: &[server::Rebound]| {
        let mut config = config.lock().expect("config");
        for r in done {
            if let Some(reference) = config.certificate_mut(&r.connection) {
                *reference = r.to.clone();
            }
        }
        let mut swapped: Vec<String> = done.iter().map(|r| r.connection.clone()).collect();
        swapped.sort();
        let at = super::record::now();
        state
            .lock()
            .expect("state")
            .auto_rebinds
            .push((at, swapped));
    })
}

/// Adds the cumulative counters of `b` to `a` (gauges are not added).
fn add(a: &mut MetricsSnapshot, b: &MetricsSnapshot) {
    a.sip.queued += b.sip.queued;
    a.sip.timed_out += b.sip.timed_out;
    a.sip.routed += b.sip.routed;
    for (x, y) in [
        (&mut a.tls, &b.tls),
        (&mut a.mtls, &b.mtls),
        (&mut a.routes, &b.routes),
        (&mut a.tcp, &b.tcp),
    ] {
        x.accepted += y.accepted;
        x.handshakes_ok += y.handshakes_ok;
        x.handshakes_failed += y.handshakes_failed;
        for (k, v) in &y.failures {
            *x.failures.entry(k.clone()).or_default() += v;
        }
    }
}

fn sample(t: Duration, shared: &Shared2, recorder: &Shared) -> Sample {
    let state = shared.state.lock().expect("state");
    let current = state
        .metrics
        .as_ref()
        .map(|m| m.snapshot())
        .unwrap_or_default();
    let r = recorder.lock().expect("recorder");
    let count = |status: u16| {
        r.messages
            .iter()
            .filter(|m| m.outcome == super::record::Outcome::Final(status))
            .count() as u64
    };
    Sample {
        t: t.as_secs(),
        tls_connections: current.tls.established,
        mtls_connections: current.mtls.established,
        route_connections: current.routes.established,
        registered: current.sip.registrations,
        queue_depth: current.sip.queue_depth,
        queued: state.carried.sip.queued + current.sip.queued,
        delivered: count(200),
        timed_out: count(408),
        connect_failures: r.failures_between(Duration::ZERO, t + Duration::from_millis(1)),
    }
}

/// Connections that use a certificate and still cannot work at the end: a listener that did
/// not start, or whose (or a route whose) credential no longer opens.
fn unfixed(shared: &Shared2, state: &ServerState) -> Vec<String> {
    let Some(last) = state.starts.last() else {
        return Vec::new();
    };
    let config = shared.config.lock().expect("config");
    let snapshot = shared.store.snapshot();
    let mut out = Vec::new();
    for (id, reference) in config.cert_refs() {
        let started =
            last.listening.iter().any(|l| l == id) || config.routes.iter().any(|r| r.id == id);
        let works_now = started
            && state
                .handle
                .as_ref()
                .and_then(|h| h.credentials.get(id))
                .is_some_and(|c| c.certified_key().is_ok());
        // It must also survive the next restart: the configured reference must name an active
        // certificate whose key the service can open.
        let survives_restart = snapshot
            .store
            .find_by_issuer_serial(&reference.issuer, &reference.serial)
            .is_ok_and(|c| {
                snapshot
                    .store
                    .can_open(c.thumbprint(), &config.service.principal)
            });
        if !(works_now && survives_restart) {
            out.push(id.to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_in_a_run_is_its_error_with_the_message() {
        let formatted = catching::<()>(|| panic!("{} server socket buffer full", "192.168.0.1"));
        assert!(
            matches!(&formatted, Err(SimError::Panicked(m)) if m == "192.168.0.1 server socket buffer full"),
            "{formatted:?}"
        );
        let literal = catching::<()>(|| panic!("ports exhausted"));
        assert!(matches!(&literal, Err(SimError::Panicked(m)) if m == "ports exhausted"));
        assert!(matches!(catching(|| Ok(7)), Ok(7)));
    }
}
