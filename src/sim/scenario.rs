//! Scenario files: who uses the server, what happens when, and what must be true afterwards.
//!
//! A scenario is a TOML file (format in the README; commented examples in `fixtures/scenarios/`,
//! which are also the built-ins, embedded at compile time so there is one source of truth).
//! Times are human durations (`"90s"`, `"10m"`, `"2h"`) from the start of the run.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::input::{self, FileError};

use crate::store::RenewalPolicy;

/// The scenarios that ship with lcs-sim, by name: `(name, file text)`.
pub const BUILTINS: [(&str, &str); 7] = [
    (
        "kb836410",
        include_str!("../../fixtures/scenarios/kb836410.toml"),
    ),
    (
        "kb836410-partial-fix",
        include_str!("../../fixtures/scenarios/kb836410-partial-fix.toml"),
    ),
    (
        "renewal-acl-kept",
        include_str!("../../fixtures/scenarios/renewal-acl-kept.toml"),
    ),
    (
        "hot-rebind",
        include_str!("../../fixtures/scenarios/hot-rebind.toml"),
    ),
    (
        "group-policy",
        include_str!("../../fixtures/scenarios/group-policy.toml"),
    ),
    (
        "auto-rebind",
        include_str!("../../fixtures/scenarios/auto-rebind.toml"),
    ),
    (
        "auto-rebind-acl-lost",
        include_str!("../../fixtures/scenarios/auto-rebind-acl-lost.toml"),
    ),
];

use super::world::CERTIFICATE_CONNECTIONS;
pub use super::world::CONNECTION_IDS;

/// A scenario could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScenarioError {
    /// No built-in has that name and no such file exists.
    #[error(
        "unknown scenario `{name}`: not a built-in ({}) and not a file",
        builtin_names()
    )]
    Unknown {
        /// What was asked for.
        name: String,
    },
    /// The file (or built-in, as `builtin:NAME`) is unreadable, not TOML, or has a bad value.
    #[error(transparent)]
    File(#[from] FileError),
}

fn builtin_names() -> String {
    BUILTINS.map(|(n, _)| n).join(", ")
}

/// A whole scenario.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short name, shown in reports.
    pub name: String,
    /// What the scenario shows.
    #[serde(default)]
    pub description: String,
    /// Seed used when `--seed` is not given.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Virtual length of the run.
    #[serde(deserialize_with = "duration")]
    pub duration: Duration,
    /// Interval of the time series.
    #[serde(default = "default_sample", deserialize_with = "duration")]
    pub sample_interval: Duration,
    /// The emulated Windows Messenger users.
    #[serde(default)]
    pub users: Users,
    /// Server settings.
    #[serde(default)]
    pub server: Server,
    /// The federation partner.
    #[serde(default)]
    pub federation: Federation,
    /// The simulated network.
    #[serde(default)]
    pub network: Network,
    /// Group Policy auto-enrollment: renew when the certificate is old enough, checked at each
    /// policy refresh (instead of, or besides, `renew` steps at fixed times).
    #[serde(default)]
    pub autoenrollment: Option<AutoEnrollment>,
    /// The timeline.
    #[serde(default, rename = "step")]
    pub steps: Vec<Step>,
    /// What must hold at the end; each is one JUnit test case.
    #[serde(default)]
    pub expect: Expectations,
}

fn default_seed() -> u64 {
    836_410
}

fn default_sample() -> Duration {
    Duration::from_secs(60)
}

/// The emulated users.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Users {
    /// How many (default 200).
    pub count: usize,
    /// On how many simulated hosts they run (default 2). Cost grows steeply with hosts.
    pub hosts: usize,
    /// Mean time between two MESSAGEs of one user (default 5 min; exponential).
    #[serde(deserialize_with = "duration")]
    pub message_interval: Duration,
    /// Share of MESSAGEs sent to users of the federated domain (default 0.3).
    pub federated_share: f64,
    /// Mean lifetime of a connection before the user drops it (default 10 min; exponential):
    /// idle timeouts, network changes, laptops closing.
    #[serde(deserialize_with = "duration")]
    pub connection_lifetime: Duration,
    /// No connection outlives this (default 1 h): the exponential lifetime is cut here. Every
    /// Messenger connection ends sooner or later (the laptop sleeps, the user signs out, a NAT
    /// or VPN gateway ends the session, Wi-Fi roams), which is what the KB's "declines and
    /// eventually reaches zero" rests on; an unbounded exponential lets one connection in a few
    /// thousand outlive a whole scenario.
    #[serde(deserialize_with = "duration")]
    pub connection_max_lifetime: Duration,
    /// Registration expiry asked for; refreshed at half (default 600 s).
    pub register_expires: u32,
    /// First reconnection delay after a failure (default 1 s); doubles up to `backoff_max`.
    #[serde(deserialize_with = "duration")]
    pub backoff_initial: Duration,
    /// Longest reconnection delay (default 5 min).
    #[serde(deserialize_with = "duration")]
    pub backoff_max: Duration,
}

impl Default for Users {
    fn default() -> Self {
        Self {
            count: 200,
            hosts: 2,
            message_interval: Duration::from_secs(300),
            federated_share: 0.3,
            connection_lifetime: Duration::from_secs(600),
            connection_max_lifetime: Duration::from_secs(3600),
            register_expires: 600,
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
        }
    }
}

/// Server settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Server {
    /// RFC 3261 T1 in milliseconds (default 500; Timer F = 64 × T1).
    pub t1_ms: u64,
    /// Whether the service rebinds a renewed certificate by itself, as `serve --auto-rebind`
    /// does (default false, as LCS did): each successor is validated first; one whose key the
    /// service cannot open is refused (event 14373) and the current certificate kept.
    pub auto_rebind: bool,
}

impl Default for Server {
    fn default() -> Self {
        Self {
            t1_ms: 500,
            auto_rebind: false,
        }
    }
}

/// The federation partner (fabrikam.com's server at the end of the route).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Federation {
    /// Mean lifetime of a route connection before the partner's edge closes it (default 10 min;
    /// exponential). Our server must then reconnect, which is when a lost key bites the route.
    #[serde(deserialize_with = "duration")]
    pub connection_lifetime: Duration,
    /// No route connection outlives this (default 20 min): the partner's edge recycles its
    /// sessions, so our server has to reconnect the route while its users are still sending.
    /// That reconnection is what fails after the renewal; with an unbounded lifetime one seed
    /// in a few hundred keeps the old route until every user has gone, and no message queues.
    #[serde(deserialize_with = "duration")]
    pub connection_max_lifetime: Duration,
}

impl Default for Federation {
    fn default() -> Self {
        Self {
            connection_lifetime: Duration::from_secs(600),
            connection_max_lifetime: Duration::from_secs(1200),
        }
    }
}

/// Group Policy auto-enrollment, as DESIGN.md describes it: at each policy refresh (about every
/// 90 minutes, plus a random offset) the certificate is renewed once `threshold` of its lifetime
/// has passed.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AutoEnrollment {
    /// What the renewal does to the key and its ACL (default `same-key-reset-acl`).
    pub policy: RenewalPolicy,
    /// Validity of the server certificate (default 365 days).
    #[serde(deserialize_with = "duration")]
    pub lifetime: Duration,
    /// How old the certificate already is when the run starts (default 292 days: 80 % of a
    /// year, so the first refresh renews it).
    #[serde(deserialize_with = "duration")]
    pub certificate_age: Duration,
    /// Group Policy refresh interval (default 90 min).
    #[serde(deserialize_with = "duration")]
    pub refresh: Duration,
    /// Largest random offset added to each refresh (default 30 min).
    #[serde(deserialize_with = "duration")]
    pub refresh_offset: Duration,
    /// Share of the lifetime after which a refresh renews (default 0.8).
    pub threshold: f64,
}

impl Default for AutoEnrollment {
    fn default() -> Self {
        Self {
            policy: RenewalPolicy::SameKeyResetAcl,
            lifetime: Duration::from_secs(365 * 86_400),
            certificate_age: Duration::from_secs(292 * 86_400),
            refresh: Duration::from_secs(90 * 60),
            refresh_offset: Duration::from_secs(30 * 60),
            threshold: 0.8,
        }
    }
}

/// The simulated network.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Network {
    /// Simulation step (default 50 ms). Every network hop takes at least one step, so a TLS
    /// handshake takes a few; a smaller step is more precise and slower to simulate.
    #[serde(deserialize_with = "duration")]
    pub tick: Duration,
}

impl Default for Network {
    fn default() -> Self {
        Self {
            tick: Duration::from_millis(50),
        }
    }
}

/// One timeline step.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "action", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Step {
    /// Auto-enrollment renews the server certificate.
    Renew {
        /// When.
        #[serde(deserialize_with = "duration")]
        at: Duration,
        /// What happens to the key and its ACL (default `same-key-reset-acl`).
        #[serde(default)]
        policy: RenewalPolicy,
    },
    /// Stop and start the service.
    Restart {
        /// When.
        #[serde(deserialize_with = "duration")]
        at: Duration,
    },
    /// The KB836410 resolution: point connections at the renewed certificate ("Change
    /// Certificate", which also grants the service account read on its key). Takes effect at
    /// the next restart.
    Fix {
        /// When.
        #[serde(deserialize_with = "duration")]
        at: Duration,
        /// Which connections (default: every one that uses the certificate).
        #[serde(default)]
        connections: Vec<String>,
    },
    /// Like `fix`, and swap the running listeners' and routes' credentials at once, without a
    /// restart: each new credential is validated before an atomic swap.
    Rebind {
        /// When.
        #[serde(deserialize_with = "duration")]
        at: Duration,
        /// Which connections (default: every one that uses the certificate).
        #[serde(default)]
        connections: Vec<String>,
    },
}

impl Step {
    /// When the step happens.
    pub fn at(&self) -> Duration {
        match self {
            Step::Renew { at, .. }
            | Step::Restart { at }
            | Step::Fix { at, .. }
            | Step::Rebind { at, .. } => *at,
        }
    }
}

/// What must hold at the end of the run. Every key given becomes one check.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expectations {
    /// Instant messages queued, then timed out (408).
    pub im_queued_then_timed_out: Option<bool>,
    /// TLS connections fell to zero while the service ran.
    pub tls_connections_reached_zero: Option<bool>,
    /// Clients failed to connect over TLS.
    pub clients_cannot_connect_over_tls: Option<bool>,
    /// A restart left the TLS listener stopped.
    pub tls_listener_fails_on_restart: Option<bool>,
    /// These event ids were logged at the failed restart.
    pub restart_events: Option<Vec<u32>>,
    /// Why the TLS listener failed at restart: `key_access_denied` or `certificate_not_found`.
    pub restart_failure_cause: Option<String>,
    /// Handshakes failed while the service ran (before any restart).
    pub outage_while_running: Option<bool>,
    /// Exactly these connections still fail at the end (empty: everything works).
    pub unfixed: Option<Vec<String>>,
    /// Every user registered again after the fix.
    pub all_clients_reconnected: Option<bool>,
    /// MESSAGEs to the federated domain were delivered in the last part of the run.
    pub federated_messages_flow_at_end: Option<bool>,
    /// No handshake failed after a live rebind.
    pub no_handshake_failures_after_rebind: Option<bool>,
    /// The live rebind closed no established connection.
    pub no_connections_dropped_by_rebind: Option<bool>,
    /// Every MESSAGE got exactly one final response (none lost on a live connection, none twice).
    pub every_message_answered_once: Option<bool>,
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_duration(&text).map_err(|e| {
        serde::de::Error::custom(format!(
            "`{text}` is not a duration like \"90s\", \"10m\" or \"2h\" ({e})"
        ))
    })
}

impl Scenario {
    /// A built-in by name, or a file by path.
    pub fn load(name_or_path: &str) -> Result<Self, ScenarioError> {
        if let Some((name, text)) = BUILTINS.iter().find(|(n, _)| *n == name_or_path) {
            return Self::parse(text, Path::new(&format!("builtin:{name}")));
        }
        let path = Path::new(name_or_path);
        if !path.exists() {
            return Err(ScenarioError::Unknown {
                name: name_or_path.into(),
            });
        }
        Self::parse(&input::read(path)?, path)
    }

    /// Parses and validates `text` read from `path` (used in messages).
    pub fn parse(text: &str, path: &Path) -> Result<Self, ScenarioError> {
        let s: Scenario = input::parse_toml(text, path)?;
        s.validate(path)?;
        Ok(s)
    }

    /// Checks what the schema cannot.
    pub fn validate(&self, path: &Path) -> Result<(), ScenarioError> {
        let invalid = |field: &str, message: String| {
            ScenarioError::File(input::invalid(path, field, message))
        };
        self.validate_run().map_err(|(f, m)| invalid(&f, m))?;
        self.users.validate().map_err(|(f, m)| invalid(&f, m))?;
        if let Some(a) = &self.autoenrollment {
            a.validate().map_err(|(f, m)| invalid(&f, m))?;
        }
        self.validate_steps().map_err(|(f, m)| invalid(&f, m))?;
        self.expect.validate().map_err(|(f, m)| invalid(&f, m))
    }

    /// The run's own settings: duration, sampling, tick, server, federation.
    fn validate_run(&self) -> Result<(), Invalid> {
        if self.duration < Duration::from_secs(1) || self.duration > WEEK {
            return bad("duration", "must be between 1s and 7 days");
        }
        if self.sample_interval < Duration::from_secs(1) {
            return bad("sample_interval", "must be at least 1s");
        }
        at_most_a_week("sample_interval", self.sample_interval)?;
        if self.network.tick < Duration::from_millis(1)
            || self.network.tick > Duration::from_secs(1)
        {
            return bad("network.tick", "must be between 1ms and 1s");
        }
        let lifetime = self.federation.connection_lifetime;
        if lifetime < Duration::from_secs(1) {
            return bad("federation.connection_lifetime", "must be at least 1s");
        }
        at_most_a_week("federation.connection_lifetime", lifetime)?;
        let max = self.federation.connection_max_lifetime;
        at_most_a_week("federation.connection_max_lifetime", max)?;
        if max < lifetime {
            return bad(
                "federation.connection_max_lifetime",
                "must not be shorter than federation.connection_lifetime (the mean)",
            );
        }
        if self.server.t1_ms == 0 || self.server.t1_ms > 10_000 {
            return Err((
                "server.t1_ms".into(),
                format!("{} is out of range 1..=10000", self.server.t1_ms),
            ));
        }
        Ok(())
    }

    /// Steps in time order, inside the run, naming connections that use a certificate.
    fn validate_steps(&self) -> Result<(), Invalid> {
        let mut last = Duration::ZERO;
        for (i, step) in self.steps.iter().enumerate() {
            if step.at() < last {
                return bad(&format!("step[{i}].at"), "steps must be in time order");
            }
            if step.at() >= self.duration {
                return Err((
                    format!("step[{i}].at"),
                    format!(
                        "{:?} is not before the end of the run ({:?})",
                        step.at(),
                        self.duration
                    ),
                ));
            }
            last = step.at();
            if let Step::Fix { connections, .. } | Step::Rebind { connections, .. } = step
                && let Some(c) = connections
                    .iter()
                    .find(|c| !CERTIFICATE_CONNECTIONS.contains(&c.as_str()))
            {
                return Err((
                    format!("step[{i}].connections"),
                    format!(
                        "`{c}` is not a connection that uses a certificate; use {}",
                        CERTIFICATE_CONNECTIONS.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// A field and what is wrong with it.
type Invalid = (String, String);

const WEEK: Duration = Duration::from_secs(7 * 24 * 3600);

fn bad(field: &str, message: &str) -> Result<(), Invalid> {
    Err((field.into(), message.into()))
}

fn at_most_a_week(field: &str, d: Duration) -> Result<(), Invalid> {
    if d > WEEK {
        return Err((
            field.into(),
            format!("{d:?} is longer than the 7-day limit"),
        ));
    }
    Ok(())
}

impl Users {
    fn validate(&self) -> Result<(), Invalid> {
        let u = self;
        if u.count == 0 || u.count > 10_000 {
            return Err((
                "users.count".into(),
                format!("{} is out of range 1..=10000", u.count),
            ));
        }
        if u.hosts == 0 || u.hosts > u.count || u.hosts > 64 {
            return Err((
                "users.hosts".into(),
                format!(
                    "{} must be between 1 and min(users.count, 64); few hosts are much faster",
                    u.hosts
                ),
            ));
        }
        if !(0.0..=1.0).contains(&u.federated_share) {
            return Err((
                "users.federated_share".into(),
                format!("{} is not a share between 0 and 1", u.federated_share),
            ));
        }
        for (name, d) in [
            ("users.message_interval", u.message_interval),
            ("users.connection_lifetime", u.connection_lifetime),
            ("users.connection_max_lifetime", u.connection_max_lifetime),
            ("users.backoff_initial", u.backoff_initial),
        ] {
            if d < Duration::from_millis(100) {
                return bad(name, "must be at least 100ms");
            }
        }
        for (name, d) in [
            ("users.message_interval", u.message_interval),
            ("users.connection_lifetime", u.connection_lifetime),
            ("users.connection_max_lifetime", u.connection_max_lifetime),
            ("users.backoff_initial", u.backoff_initial),
            ("users.backoff_max", u.backoff_max),
        ] {
            at_most_a_week(name, d)?;
        }
        if u.connection_max_lifetime < u.connection_lifetime {
            return bad(
                "users.connection_max_lifetime",
                "must not be shorter than users.connection_lifetime (the mean)",
            );
        }
        if u.backoff_max < u.backoff_initial {
            return bad(
                "users.backoff_max",
                "must not be shorter than users.backoff_initial",
            );
        }
        if !(60..=3600).contains(&u.register_expires) {
            return Err((
                "users.register_expires".into(),
                format!(
                    "{} is outside the server's bounds 60..=3600",
                    u.register_expires
                ),
            ));
        }
        Ok(())
    }
}

impl AutoEnrollment {
    fn validate(&self) -> Result<(), Invalid> {
        if self.lifetime < Duration::from_secs(3600)
            || self.lifetime > Duration::from_secs(20 * 365 * 86_400)
        {
            return bad("autoenrollment.lifetime", "must be between 1h and 20 years");
        }
        if self.certificate_age >= self.lifetime {
            return bad(
                "autoenrollment.certificate_age",
                "must be shorter than the lifetime (an expired certificate is another incident)",
            );
        }
        if !(0.05..1.0).contains(&self.threshold) {
            return Err((
                "autoenrollment.threshold".into(),
                format!(
                    "{} must be a share of the lifetime between 0.05 and 1",
                    self.threshold
                ),
            ));
        }
        if self.refresh < Duration::from_secs(60) {
            return bad("autoenrollment.refresh", "must be at least 1m");
        }
        Ok(())
    }
}

impl Expectations {
    fn validate(&self) -> Result<(), Invalid> {
        if let Some(c) = self
            .unfixed
            .iter()
            .flatten()
            .find(|c| !CONNECTION_IDS.contains(&c.as_str()))
        {
            return Err((
                "expect.unfixed".into(),
                format!(
                    "`{c}` is not a connection id ({})",
                    CONNECTION_IDS.join(", ")
                ),
            ));
        }
        if let Some(cause) = &self.restart_failure_cause
            && !RESTART_FAILURE_CAUSES.contains(&cause.as_str())
        {
            return Err((
                "expect.restart_failure_cause".into(),
                format!("`{cause}`: use {}", RESTART_FAILURE_CAUSES.join(" or ")),
            ));
        }
        Ok(())
    }
}

/// The causes a failed TLS start can have in this deployment (`CredentialError::reason`).
pub const RESTART_FAILURE_CAUSES: [&str; 2] = ["key_access_denied", "certificate_not_found"];

#[cfg(test)]
mod tests {
    use super::*;

    /// The causes a scenario may expect are the server's own names for them.
    #[test]
    fn restart_failure_causes_are_the_credential_errors_reasons() {
        use crate::server::CredentialError;
        let world = super::super::world::build(1, 500, Duration::ZERO, WEEK).unwrap();
        let (_, reference) = world.config.cert_refs().next().unwrap();
        let thumbprint = world.store.list(false).next().unwrap().thumbprint().clone();
        let reasons = [
            CredentialError::KeyAccessDenied {
                thumbprint,
                principal: "RTCService".into(),
                denial: crate::store::Denial::KeyAcl {
                    right: crate::store::Right::Read,
                },
            }
            .reason(),
            CredentialError::NotFound {
                reference: reference.clone(),
                archived_as: None,
            }
            .reason(),
        ];
        assert_eq!(reasons, RESTART_FAILURE_CAUSES);
    }

    #[test]
    fn builtins_parse() {
        for (name, _) in BUILTINS {
            let s = Scenario::load(name).unwrap();
            assert_eq!(s.name, name);
        }
    }

    #[test]
    fn errors_name_file_line_and_field() {
        let p = Path::new("my.toml");
        let msg = Scenario::parse("name = \"x\"\nduration = 5\n", p)
            .unwrap_err()
            .to_string();
        assert!(
            msg.starts_with("my.toml: ") && msg.contains("line 2"),
            "{msg}"
        );
        let msg = Scenario::parse(
            "name = \"x\"\nduration = \"1h\"\n[[step]]\nat = \"2h\"\naction = \"restart\"\n",
            p,
        )
        .unwrap_err()
        .to_string();
        assert!(msg.contains("step[0].at"), "{msg}");
        let msg = Scenario::parse(
            "name = \"x\"\nduration = \"1h\"\n[[step]]\nat = \"2m\"\naction = \"explode\"\n",
            p,
        )
        .unwrap_err()
        .to_string();
        assert!(msg.contains("explode") && msg.contains("line 5"), "{msg}");
        let msg = Scenario::parse("name = \"x\"\nduration = \"1h\"\n[users]\ncount = 0\n", p)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("users.count"), "{msg}");
        let msg = Scenario::parse("name = \"x\"\nduration = \"1h\"\n[[step]]\nat = \"2m\"\naction = \"fix\"\nconnections = [\"tls-9\"]\n", p).unwrap_err().to_string();
        assert!(
            msg.contains("step[0].connections") && msg.contains("tls-9"),
            "{msg}"
        );
        assert!(matches!(
            Scenario::load("no-such-scenario"),
            Err(ScenarioError::Unknown { .. })
        ));
    }
}
