//! The result of a run, as `--format json` writes it and `lcs-sim load merge` reads it.
//!
//! The fields are a contract (issue 9, issue 15): `mode, target, duration_s, scheduled` (open
//! loop) `or started` (closed loop), `ok, failed, failures, unfinished, unfinished_by_phase,
//! not_started, rate_per_s, latency_us, histogram, per_second, faults, outage` (plus `server` in
//! register mode, when the server's memory was measured), and every operation is accounted for:
//! `scheduled | started = ok + failed + unfinished + not_started` ([`Report::check`], which
//! `merge` applies to each input, so a report that does not add up is refused, not summed). The whole run's latencies travel as an
//! HdrHistogram V2 blob (deflate-compressed, as HdrHistogram logs carry them) in base64, so that shards merge *exactly*: [`merge`] adds histograms and
//! recomputes the percentiles from the sum, never averages them. A merged second's `p99_us` is
//! the highest of the shards' (per-second histograms are not in the file): an upper bound.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer as _, V2DeflateSerializer};
use serde::{Deserialize, Serialize};

use super::faults::{FaultRecord, Outage, outage};
use super::record::{ByPhase, Tally, new_histogram};

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Latency {
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Highest.
    pub max: u64,
}

impl Latency {
    /// The percentiles of `h` (all zero when it is empty).
    pub fn of(h: &Histogram<u64>) -> Latency {
        Latency {
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

/// One second of the run: `ok` and `failed` by when operations completed, `started`,
/// `unfinished` and `not_started` by when they were due (so the open loop's slots of a second
/// are `started + not_started`, and each column sums to the run's total).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecondRow {
    /// Seconds since the start (this row covers `[t, t + 1)`).
    pub t: u64,
    /// Operations started that were due in it.
    pub started: u64,
    /// Successful operations completed in it.
    pub ok: u64,
    /// Failed operations completed in it.
    pub failed: u64,
    /// Operations due in it still in flight when the run ended.
    pub unfinished: u64,
    /// Slots due in it that the generator never started (open loop).
    pub not_started: u64,
    /// 99th percentile latency of its successful operations, µs (0 when none).
    pub p99_us: u64,
}

/// What the load saw of the server's memory (register mode, server on this machine). The load
/// never starts the server, so the figure is the growth of a server that may already have held
/// connections and served other clients: an upper bound on this run's connections' cost, not a
/// measurement of it alone (the text says so).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ServerMemory {
    /// The server's process id.
    pub pid: u32,
    /// Registered connections held open at the measurement.
    pub connections: u64,
    /// Resident set size before the users connected, KiB.
    pub rss_before_kib: u64,
    /// Resident set size with every connection held, KiB.
    pub rss_after_kib: u64,
    /// (after − before) ÷ connections, bytes.
    pub rss_per_connection_bytes: u64,
}

/// The result of one run (or of several shards merged).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The run (`--run-id`), the same in every shard of it.
    pub run_id: String,
    /// The shards this report holds (one, or several once merged), from 0.
    pub shards: Vec<u32>,
    /// How many shards the run has.
    pub shard_count: u32,
    /// A digest of the settings the shards share ([`LoadOptions::settings_digest`](super::LoadOptions::settings_digest)).
    pub settings_digest: String,
    /// `handshake`, `register` or `message`.
    pub mode: String,
    /// The target, `HOST:PORT`.
    pub target: String,
    /// Length of the run, seconds.
    pub duration_s: f64,
    /// Open loop: the operations the schedule held.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled: Option<u64>,
    /// Closed loop: the operations started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<u64>,
    /// Successful operations.
    pub ok: u64,
    /// Failed operations.
    pub failed: u64,
    /// Failures by reason (`tls_alert_access_denied`, `connection_refused`, `sip_408`, ...).
    pub failures: BTreeMap<String, u64>,
    /// Operations still in flight when the run ended (after its grace period).
    pub unfinished: u64,
    /// Those by the phase they were in.
    pub unfinished_by_phase: ByPhase,
    /// Open loop: slots the generator never started (it fell behind its schedule).
    pub not_started: u64,
    /// Successful operations per second.
    pub rate_per_s: f64,
    /// Latency percentiles of the successful operations.
    pub latency_us: Latency,
    /// Every successful operation's latency (µs): HdrHistogram V2, base64.
    pub histogram: String,
    /// Second by second.
    pub per_second: Vec<SecondRow>,
    /// Faults applied during the run.
    pub faults: Vec<FaultRecord>,
    /// The outage the faults caused, when any fault was given.
    pub outage: Option<Outage>,
    /// The server's memory per held connection (register mode), when measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerMemory>,
}

/// Why reports could not be read or merged.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The histogram field is not a base64 HdrHistogram.
    #[error("the histogram is not a base64 HdrHistogram V2 blob: {reason}")]
    Histogram {
        /// What was wrong.
        reason: String,
    },
    /// Reports of different runs.
    #[error("cannot merge a {a} run with a {b} run: merge shards of one run")]
    Mismatch {
        /// The first report's `mode target`.
        a: String,
        /// The other's.
        b: String,
    },
    /// Nothing to merge.
    #[error("no reports to merge")]
    Empty,
    /// The counts do not add up.
    #[error("the counts do not add up: {0}")]
    Unbalanced(String),
    /// Two reports that are not shards of one run.
    #[error("reports {} and {} (from 1): {}", .0.first + 1, .0.second + 1, .0.kind)]
    Clash(Clash),
}

/// Two of the reports given to [`merge`] that cannot be merged, by their positions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clash {
    /// The earlier report's position.
    pub first: usize,
    /// The later one's.
    pub second: usize,
    /// What is wrong.
    pub kind: ClashKind,
}

/// Why two reports cannot be merged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClashKind {
    /// The same shard twice.
    #[error("both hold shard {shard} of run {run}: a shard is merged once")]
    Duplicate {
        /// The run.
        run: String,
        /// The shard.
        shard: u32,
    },
    /// Different runs.
    #[error("are of different runs ({a} and {b}): merge the shards of one run")]
    MixedRuns {
        /// The earlier report's run.
        a: String,
        /// The later one's.
        b: String,
    },
    /// One run, different settings.
    #[error(
        "are of run {run} with different settings (digest {a} and {b}; shards {ca} and {cb}): start every shard with the same flags"
    )]
    MixedSettings {
        /// The run.
        run: String,
        /// The earlier report's settings digest.
        a: String,
        /// The later one's.
        b: String,
        /// The earlier report's shard count.
        ca: u32,
        /// The later one's.
        cb: u32,
    },
}

/// Checks that `reports` are distinct shards of one run with one set of settings.
pub fn check_identities(reports: &[Report]) -> Result<(), Clash> {
    for (second, r) in reports.iter().enumerate() {
        for (first, q) in reports[..second].iter().enumerate() {
            let clash = |kind| {
                Err(Clash {
                    first,
                    second,
                    kind,
                })
            };
            if q.run_id != r.run_id {
                return clash(ClashKind::MixedRuns {
                    a: q.run_id.clone(),
                    b: r.run_id.clone(),
                });
            }
            if (&q.settings_digest, q.shard_count) != (&r.settings_digest, r.shard_count) {
                return clash(ClashKind::MixedSettings {
                    run: r.run_id.clone(),
                    a: q.settings_digest.clone(),
                    b: r.settings_digest.clone(),
                    ca: q.shard_count,
                    cb: r.shard_count,
                });
            }
            if let Some(&shard) = q.shards.iter().find(|s| r.shards.contains(s)) {
                return clash(ClashKind::Duplicate {
                    run: r.run_id.clone(),
                    shard,
                });
            }
        }
    }
    Ok(())
}

/// Encodes a histogram as V2 + base64.
pub fn encode_histogram(h: &Histogram<u64>) -> String {
    let mut bytes = Vec::new();
    V2DeflateSerializer::new()
        .serialize(h, &mut bytes)
        .expect("serialising to memory cannot fail");
    STANDARD.encode(bytes)
}

/// Decodes a V2 + base64 histogram.
pub fn decode_histogram(text: &str) -> Result<Histogram<u64>, ReportError> {
    let bad = |reason: String| ReportError::Histogram { reason };
    let bytes = STANDARD.decode(text).map_err(|e| bad(e.to_string()))?;
    Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| bad(format!("{e:?}")))
}

/// What a run was.
#[derive(Debug, Clone)]
pub struct RunInfo {
    /// The run's id.
    pub run_id: String,
    /// This shard.
    pub shard: super::Shard,
    /// [`LoadOptions::settings_digest`](super::LoadOptions::settings_digest).
    pub settings_digest: String,
    /// `handshake`, `register` or `message`.
    pub mode: String,
    /// `HOST:PORT`.
    pub target: String,
    /// Seconds.
    pub duration_s: f64,
}

impl Report {
    /// The report of a finished run.
    pub fn new(info: RunInfo, tally: &Tally, faults: Vec<FaultRecord>) -> Report {
        let per_second: Vec<SecondRow> = tally
            .seconds
            .iter()
            .enumerate()
            .map(|(t, s)| SecondRow {
                t: t as u64,
                started: s.started,
                ok: s.ok,
                failed: s.failed,
                unfinished: s.unfinished,
                not_started: s.not_started,
                p99_us: s.histogram.value_at_quantile(0.99),
            })
            .collect();
        let outage = (!faults.is_empty()).then(|| {
            outage(
                &faults,
                &per_second,
                &tally.failures,
                tally.first_failure.map(|d| d.as_secs_f64()),
                tally.last_failure.map(|d| d.as_secs_f64()),
            )
        });
        Report {
            run_id: info.run_id,
            shards: vec![info.shard.index],
            shard_count: info.shard.count,
            settings_digest: info.settings_digest,
            mode: info.mode,
            target: info.target,
            duration_s: info.duration_s,
            scheduled: tally.scheduled,
            started: tally.scheduled.is_none().then_some(tally.started),
            ok: tally.ok,
            failed: tally.failed,
            failures: tally.failures.clone(),
            unfinished: tally.unfinished.total(),
            unfinished_by_phase: tally.unfinished,
            not_started: tally.not_started,
            rate_per_s: rate(tally.ok, info.duration_s),
            latency_us: Latency::of(&tally.histogram),
            histogram: encode_histogram(&tally.histogram),
            per_second,
            faults,
            outage,
            server: None,
        }
    }

    /// Every operation: `scheduled` (open loop) or `started` (closed loop).
    pub fn total(&self) -> u64 {
        self.scheduled.or(self.started).unwrap_or(0)
    }

    /// Operations that did not succeed: failed, unfinished and never started.
    pub fn not_ok(&self) -> u64 {
        self.failed + self.unfinished + self.not_started
    }

    /// Operations that completed, either way.
    pub fn completed(&self) -> u64 {
        self.ok + self.failed
    }

    /// Not-ok ÷ all operations (unfinished and not started count as failures; 0 when there
    /// were none).
    pub fn failure_ratio(&self) -> f64 {
        match self.total() {
            0 => 0.0,
            all => self.not_ok() as f64 / all as f64,
        }
    }

    /// Checks that every operation is accounted for, in the totals and in the seconds.
    pub fn check(&self) -> Result<(), ReportError> {
        let bad = |s: String| Err(ReportError::Unbalanced(s));
        let total = match (self.scheduled, self.started) {
            (Some(t), None) => t,
            (None, Some(t)) if self.not_started == 0 => t,
            (None, Some(_)) => return bad("a closed-loop run has no `not_started`".into()),
            _ => return bad("a report has exactly one of `scheduled` and `started`".into()),
        };
        let parts = [self.ok, self.failed, self.unfinished, self.not_started];
        if parts.iter().try_fold(0u64, |a, &b| a.checked_add(b)) != Some(total) {
            return bad(format!(
                "{total} = ok {} + failed {} + unfinished {} + not_started {} does not hold",
                self.ok, self.failed, self.unfinished, self.not_started
            ));
        }
        if self.unfinished_by_phase.total() != self.unfinished {
            return bad("`unfinished_by_phase` does not sum to `unfinished`".into());
        }
        if self.failures.values().sum::<u64>() != self.failed {
            return bad("`failures` do not sum to `failed`".into());
        }
        let column = |f: fn(&SecondRow) -> u64| self.per_second.iter().map(f).sum::<u64>();
        let seconds = [
            column(|r| r.started) + column(|r| r.not_started),
            column(|r| r.ok),
            column(|r| r.failed),
            column(|r| r.unfinished),
            column(|r| r.not_started),
        ];
        if seconds
            != [
                total,
                self.ok,
                self.failed,
                self.unfinished,
                self.not_started,
            ]
        {
            return bad("the per-second rows do not sum to the totals".into());
        }
        Ok(())
    }

    /// Per-second rows as CSV, in the manner of SIPp's `-trace_stat`; each column sums to the
    /// run's total.
    pub fn to_csv(&self) -> String {
        let mut out = String::from(CSV_HEADER);
        out.push('\n');
        for r in &self.per_second {
            out.push_str(&format!(
                "{},{},{},{},{},{},{}\n",
                r.t, r.started, r.ok, r.failed, r.unfinished, r.not_started, r.p99_us
            ));
        }
        out
    }
}

/// The CSV header.
pub const CSV_HEADER: &str = "t_s,started,ok,failed,unfinished,not_started,p99_us";

fn rate(ok: u64, secs: f64) -> f64 {
    if secs > 0.0 { ok as f64 / secs } else { 0.0 }
}

/// Merges the reports of the shards of one run: counts summed, histograms added (so the
/// percentiles are those of all operations), seconds aligned by `t`, faults and outage combined.
pub fn merge(reports: &[Report]) -> Result<Report, ReportError> {
    let first = reports.first().ok_or(ReportError::Empty)?;
    check_identities(reports).map_err(ReportError::Clash)?;
    let mut shards: Vec<u32> = reports.iter().flat_map(|r| r.shards.clone()).collect();
    shards.sort_unstable();
    let mut histogram = new_histogram();
    let mut failures: BTreeMap<String, u64> = BTreeMap::new();
    let mut seconds: BTreeMap<u64, SecondRow> = BTreeMap::new();
    let mut faults: Vec<FaultRecord> = Vec::new();
    let (mut ok, mut failed, mut duration_s) = (0, 0, 0.0f64);
    let (mut scheduled, mut started) = (first.scheduled.map(|_| 0), first.started.map(|_| 0));
    let (mut unfinished, mut not_started) = (ByPhase::default(), 0);
    let (mut first_failure, mut last_failure) = (None::<f64>, None::<f64>);
    let mut server = None;
    for r in reports {
        if (&r.mode, &r.target) != (&first.mode, &first.target)
            || r.scheduled.is_some() != first.scheduled.is_some()
        {
            let kind = |r: &Report| {
                if r.scheduled.is_some() {
                    "open-loop"
                } else {
                    "closed-loop"
                }
            };
            return Err(ReportError::Mismatch {
                a: format!("{} {} {}", kind(first), first.mode, first.target),
                b: format!("{} {} {}", kind(r), r.mode, r.target),
            });
        }
        r.check()?;
        scheduled = scheduled.map(|s| s + r.scheduled.unwrap_or(0));
        started = started.map(|s| s + r.started.unwrap_or(0));
        unfinished.add(&r.unfinished_by_phase);
        not_started += r.not_started;
        histogram
            .add(decode_histogram(&r.histogram)?)
            .map_err(|e| ReportError::Histogram {
                reason: format!("{e:?}"),
            })?;
        ok += r.ok;
        failed += r.failed;
        duration_s = duration_s.max(r.duration_s);
        for (k, v) in &r.failures {
            *failures.entry(k.clone()).or_default() += v;
        }
        for row in &r.per_second {
            let m = seconds.entry(row.t).or_insert(SecondRow {
                t: row.t,
                ..SecondRow::default()
            });
            m.started += row.started;
            m.ok += row.ok;
            m.failed += row.failed;
            m.unfinished += row.unfinished;
            m.not_started += row.not_started;
            m.p99_us = m.p99_us.max(row.p99_us);
        }
        for f in &r.faults {
            if !faults.contains(f) {
                faults.push(f.clone());
            }
        }
        if let Some(o) = &r.outage {
            first_failure = min_opt(first_failure, o.first_failure_s);
            last_failure = max_opt(last_failure, o.last_failure_s);
        }
        server = server.or(r.server);
    }
    faults.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
    let per_second: Vec<SecondRow> = seconds.into_values().collect();
    let outage = (!faults.is_empty())
        .then(|| outage(&faults, &per_second, &failures, first_failure, last_failure));
    Ok(Report {
        run_id: first.run_id.clone(),
        shards,
        shard_count: first.shard_count,
        settings_digest: first.settings_digest.clone(),
        mode: first.mode.clone(),
        target: first.target.clone(),
        duration_s,
        scheduled,
        started,
        ok,
        failed,
        failures,
        unfinished: unfinished.total(),
        unfinished_by_phase: unfinished,
        not_started,
        rate_per_s: rate(ok, duration_s),
        latency_us: Latency::of(&histogram),
        histogram: encode_histogram(&histogram),
        per_second,
        faults,
        outage,
        server,
    })
}

fn min_opt(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn max_opt(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}
