//! The expiry sweep: every served certificate, every pin set and every certificate last seen
//! on an upstream's verified path becomes a gauge with its expiry time, and items inside the
//! warning or critical window are logged — at most once per item per sweep, never per request.
//!
//! Series of certificates no longer served disappear at the sweep that follows a swap; an
//! upstream's observed series go when the upstream is removed or was not seen (no handshake,
//! no successful request) for 2 × `check_every`. Reads the [`Inventory`] of the current
//! snapshot (what `check` and `/status` read); changes nothing but the expiry gauges.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use prometheus::{GaugeVec, IntGaugeVec};
use tokio::sync::Notify;

use crate::clock::{fmt_time, unix_now};
use crate::config::Expiry;
use crate::inventory::{Inventory, judge};
use crate::metrics::Metrics;
use crate::snapshot::Live;
use crate::tls::Position;

/// Remembers which series the last sweep set (to remove the ones that went away) and which
/// items were logged since the last scheduled sweep.
#[derive(Debug, Default)]
pub struct Sweeper {
    state: Mutex<State>,
}

/// Why a sweep runs; decides what it logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// At start, after a swap and every `check_every`: every item inside a window is logged.
    Scheduled,
    /// An upstream showed a new verified path: only items not logged since the last scheduled
    /// sweep are, so an upstream that alternates between chains cannot flood the log.
    UpstreamSeen,
}

/// What one sweep found, for logs, tests and measurements.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SweepSummary {
    /// Distinct certificate series (a certificate shared by two chains counts once).
    pub certificates: usize,
    pub pin_sets: usize,
    /// Items inside the warning window.
    pub warnings: usize,
    /// Items inside the critical window, expired ones included.
    pub critical: usize,
    /// Log lines this sweep wrote.
    pub logged: usize,
    /// Expiry series set: not-after, pinned, pin-set expiry and threshold gauges.
    pub series: usize,
}

/// Where an expiry time stands against the configured windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Urgency {
    Ok,
    Warning,
    Critical,
    Expired,
}

impl Urgency {
    /// Same comparison as the alert rules: time left strictly below the threshold.
    pub fn of(at: i64, now: i64, warn: Duration, critical: Duration) -> Urgency {
        let left = at - now;
        if left <= 0 {
            Urgency::Expired
        } else if left < secs(critical) {
            Urgency::Critical
        } else if left < secs(warn) {
            Urgency::Warning
        } else {
            Urgency::Ok
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Urgency::Ok => "ok",
            Urgency::Warning => "warning",
            Urgency::Critical => "critical",
            Urgency::Expired => "expired",
        }
    }
}

impl Sweeper {
    pub fn new() -> Self {
        Sweeper::default()
    }

    /// Sets every expiry gauge from the current snapshot, removes the series that went away
    /// and logs what is close to expiring.
    pub fn sweep(&self, live: &Live, reason: Reason) -> SweepSummary {
        let snap = live.current();
        let now = unix_now();
        let found = collect(&Inventory::of(&snap, &live.shared.metrics, now));
        if reason == Reason::Scheduled {
            for w in crate::auth::stale_key_files(&snap.config, SystemTime::now()).warnings() {
                tracing::warn!("{w}");
            }
        }
        self.apply(
            &live.shared.metrics,
            &snap.config.expiry,
            &found,
            now,
            reason,
        )
    }

    fn apply(
        &self,
        m: &Metrics,
        exp: &Expiry,
        found: &Found,
        now: i64,
        reason: Reason,
    ) -> SweepSummary {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if reason == Reason::Scheduled {
            st.logged.clear();
        }
        let mut seen = Series::default();
        let mut sum = SweepSummary::default();

        for (kind, sev, d) in [
            ("certificate", "warning", exp.warn_before),
            ("certificate", "critical", exp.critical_before),
            ("pin_set", "warning", exp.pin_set_warn_before),
            ("pin_set", "critical", exp.pin_set_critical_before),
        ] {
            m.expiry_threshold
                .with_label_values(&[kind, sev])
                .set(d.as_secs_f64());
            sum.series += 1;
        }

        for c in &found.certs {
            let labels = c.labels();
            if !seen.not_after.insert(labels.clone()) {
                // The same certificate on two chains of one listener: one series, one log line.
                continue;
            }
            m.cert_not_after
                .with_label_values(&labels)
                .set(c.not_after as f64);
            sum.certificates += 1;
            let urgency = Urgency::of(c.not_after, now, exp.warn_before, exp.critical_before);
            count(&mut sum, urgency);
            if urgency != Urgency::Ok && st.logged.insert(labels) {
                sum.logged += 1;
                log_cert(c, urgency, now);
            }
        }
        for p in &found.pinned {
            let labels = p.labels.to_vec();
            m.cert_pinned
                .with_label_values(&labels)
                .set(i64::from(p.pinned));
            seen.pinned.insert(labels);
        }
        for s in &found.pin_sets {
            let labels = vec![s.name.clone()];
            m.pin_set_expiry
                .with_label_values(&labels)
                .set(s.expires as f64);
            seen.pin_sets.insert(labels);
            sum.pin_sets += 1;
            let urgency = Urgency::of(
                s.expires,
                now,
                exp.pin_set_warn_before,
                exp.pin_set_critical_before,
            );
            count(&mut sum, urgency);
            if urgency != Urgency::Ok && st.logged.insert(vec!["pin_set".into(), s.name.clone()]) {
                sum.logged += 1;
                log_pin_set(s, urgency, now);
            }
        }
        sum.series += seen.not_after.len() + seen.pinned.len() + seen.pin_sets.len();

        remove_gone(&m.cert_not_after, &st.series.not_after, &seen.not_after);
        remove_gone_int(&m.cert_pinned, &st.series.pinned, &seen.pinned);
        remove_gone(&m.pin_set_expiry, &st.series.pin_sets, &seen.pin_sets);
        st.series = seen;
        sum
    }
}

/// Runs a sweep at start, after every swap (`kick`), when an upstream shows a new verified
/// path, and every `check_every` — counted from the last scheduled sweep, so frequent upstream
/// sightings cannot postpone it.
pub async fn run(live: Arc<Live>, sweeper: Arc<Sweeper>, kick: Arc<Notify>) {
    let mut reason = Reason::Scheduled;
    let mut next_scheduled = tokio::time::Instant::now();
    loop {
        let started = Instant::now();
        let s = sweeper.sweep(&live, reason);
        tracing::debug!(
            reason = if reason == Reason::Scheduled {
                "scheduled"
            } else {
                "upstream_seen"
            },
            certificates = s.certificates,
            pin_sets = s.pin_sets,
            warnings = s.warnings,
            critical = s.critical,
            took_ms = crate::diag::ms(started.elapsed()),
            "expiry sweep"
        );
        if reason == Reason::Scheduled {
            next_scheduled = tokio::time::Instant::now() + live.current().config.expiry.check_every;
        }
        reason = tokio::select! {
            _ = tokio::time::sleep_until(next_scheduled) => Reason::Scheduled,
            _ = kick.notified() => Reason::Scheduled,
            _ = live.shared.upstream_seen.notified() => Reason::UpstreamSeen,
        };
    }
}

/// Days from `now` to `unix` (negative once past), as `/status` and the logs show them.
pub fn days_left(unix: i64, now: i64) -> f64 {
    (unix - now) as f64 / 86_400.0
}

/// Whether an upstream path last seen at `at` is too old to report: not seen for
/// 2 × `check_every`.
pub fn is_stale(at: SystemTime, now: SystemTime, check_every: Duration) -> bool {
    now.duration_since(at).unwrap_or_default() > check_every * 2
}

/// Every item one sweep reports, read from one inventory.
#[derive(Debug, Default)]
struct Found {
    certs: Vec<CertItem>,
    pinned: Vec<PinnedItem>,
    pin_sets: Vec<PinSetItem>,
}

#[derive(Debug)]
struct CertItem {
    scope: &'static str,
    name: String,
    position: Position,
    subject: String,
    serial: String,
    pin: String,
    not_after: i64,
}

impl CertItem {
    /// The labels of `pinproxy_certificate_not_after_timestamp_seconds`, in metric order.
    fn labels(&self) -> Vec<String> {
        vec![
            self.scope.to_string(),
            self.name.clone(),
            self.position.as_str().to_string(),
            self.subject.clone(),
            self.serial.clone(),
            self.pin.clone(),
        ]
    }
}

#[derive(Debug)]
struct PinnedItem {
    /// scope, name, pin_set, position, pin.
    labels: [String; 5],
    pinned: bool,
}

#[derive(Debug)]
struct PinSetItem {
    name: String,
    description: String,
    expires: i64,
    /// The judge's sentence, the same `check` and `/status` show.
    detail: String,
}

#[derive(Debug, Default)]
struct State {
    series: Series,
    /// Items logged since the last scheduled sweep.
    logged: HashSet<Vec<String>>,
}

#[derive(Debug, Default)]
struct Series {
    not_after: HashSet<Vec<String>>,
    pinned: HashSet<Vec<String>>,
    pin_sets: HashSet<Vec<String>>,
}

/// The sweep's items, read from the inventory: the one walk of the snapshot that `check`,
/// `/status`, the status page and the start-up log read too, so a certificate or pin set
/// cannot be in the metrics and missing from `/status`, or the reverse. Flattened here
/// because the gauges and log lines are per item, and the unit tests build items directly.
fn collect(inv: &Inventory) -> Found {
    let served = inv.listeners.iter().flat_map(|l| {
        l.certs
            .iter()
            .flat_map(|c| &c.path)
            .map(move |v| ("listener", &l.name, v))
    });
    // A stale upstream path stays in `/status` (marked) but leaves the metrics: not seen for
    // 2 × check_every. Served certificates never go stale.
    let observed = inv
        .upstreams
        .iter()
        .filter(|u| u.tls && u.stale == Some(false))
        .flat_map(|u| {
            u.last_verified_path
                .iter()
                .flatten()
                .map(move |c| ("upstream", &u.name, &c.cert))
        });
    let mut found = Found::default();
    for (scope, name, v) in served.chain(observed) {
        for p in &v.pinned {
            found.pinned.push(PinnedItem {
                labels: [
                    scope.into(),
                    name.clone(),
                    p.pin_set.clone(),
                    v.position.as_str().into(),
                    v.pin.clone(),
                ],
                pinned: p.pinned,
            });
        }
        // A compiled-in or OS root is known by its key only: no expiry to report.
        if let (Some(not_after), Some(serial)) = (v.not_after_unix, &v.serial) {
            found.certs.push(CertItem {
                scope,
                name: name.clone(),
                position: v.position,
                subject: v.subject.clone(),
                serial: serial.clone(),
                pin: v.pin.clone(),
                not_after,
            });
        }
    }
    found.pin_sets = inv
        .pin_sets
        .iter()
        .map(|s| PinSetItem {
            name: s.name.clone(),
            description: s.description.clone(),
            expires: s.expires_unix,
            detail: s.message.clone().unwrap_or_default(),
        })
        .collect();
    found
}

fn count(sum: &mut SweepSummary, u: Urgency) {
    match u {
        Urgency::Ok => {}
        Urgency::Warning => sum.warnings += 1,
        Urgency::Critical | Urgency::Expired => sum.critical += 1,
    }
}

fn log_cert(c: &CertItem, u: Urgency, now: i64) {
    let what = if c.scope == "listener" {
        "served certificate"
    } else {
        "upstream certificate"
    };
    let days = (days_left(c.not_after, now) * 10.0).round() / 10.0;
    let not_after = fmt_time(c.not_after);
    let (scope, name, position) = (c.scope, c.name.as_str(), c.position.as_str());
    let (subject, serial, pin) = (c.subject.as_str(), c.serial.as_str(), c.pin.as_str());
    // The same sentence `check`, `/status` and the status page show.
    let detail = judge::certificate_message(
        what,
        subject,
        position,
        &format!("{scope} {name}"),
        serial,
        c.not_after,
        now,
    );
    let detail = detail.as_str();
    match u {
        Urgency::Ok => {}
        Urgency::Warning => tracing::warn!(
            what = %what, scope = %scope, name = %name, position = %position, subject = %subject,
            serial = %serial, pin = %pin, not_after = %not_after, days_left = days, detail = %detail,
            "certificate expires inside the warning window"
        ),
        Urgency::Critical => tracing::error!(
            what = %what, scope = %scope, name = %name, position = %position, subject = %subject,
            serial = %serial, pin = %pin, not_after = %not_after, days_left = days, detail = %detail,
            "certificate expires inside the critical window"
        ),
        Urgency::Expired => tracing::error!(
            what = %what, scope = %scope, name = %name, position = %position, subject = %subject,
            serial = %serial, pin = %pin, not_after = %not_after, days_left = days, detail = %detail,
            "certificate has EXPIRED"
        ),
    }
}

fn log_pin_set(s: &PinSetItem, u: Urgency, now: i64) {
    let days = (days_left(s.expires, now) * 10.0).round() / 10.0;
    let expires = fmt_time(s.expires);
    let (pin_set, description, detail) =
        (s.name.as_str(), s.description.as_str(), s.detail.as_str());
    match u {
        Urgency::Ok => {}
        Urgency::Warning => tracing::warn!(
            pin_set = %pin_set, description = %description, expires = %expires, days_left = days, detail = %detail,
            "pin set expires inside the warning window: apps that ship it stop pinning after that date"
        ),
        Urgency::Critical => tracing::error!(
            pin_set = %pin_set, description = %description, expires = %expires, days_left = days, detail = %detail,
            "pin set expires inside the critical window: apps that ship it stop pinning after that date"
        ),
        Urgency::Expired => tracing::error!(
            pin_set = %pin_set, description = %description, expires = %expires, days_left = days, detail = %detail,
            "pin set has EXPIRED: apps that ship it no longer pin; an upstream pin set is still enforced"
        ),
    }
}

fn remove_gone(g: &GaugeVec, before: &HashSet<Vec<String>>, now: &HashSet<Vec<String>>) {
    for labels in before.difference(now) {
        let _ = g.remove_label_values(labels);
    }
}

fn remove_gone_int(g: &IntGaugeVec, before: &HashSet<Vec<String>>, now: &HashSet<Vec<String>>) {
    for labels in before.difference(now) {
        let _ = g.remove_label_values(labels);
    }
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests;
