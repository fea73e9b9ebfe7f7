//! The expiry sweep: every served certificate, every pin set and every certificate last seen
//! on an upstream's verified path becomes a gauge with its expiry time, and items inside the
//! warning or critical window are logged — once per sweep, never per request.
//!
//! Series of certificates no longer served disappear at the next sweep (which runs after every
//! swap); an upstream's observed series go when the upstream is removed or was not seen for
//! 2 × `check_every`.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use prometheus::{GaugeVec, IntGaugeVec};

use crate::pin::{CertInfo, Pin};
use crate::snapshot::{Live, unix_now};
use crate::tls::Position;

/// Remembers which series the last sweep set, to remove the ones that went away.
#[derive(Debug, Default)]
pub struct Sweeper {
    last: Mutex<Seen>,
}

#[derive(Debug, Default)]
struct Seen {
    not_after: HashSet<Vec<String>>,
    pinned: HashSet<Vec<String>>,
    pin_sets: HashSet<Vec<String>>,
}

/// What one sweep found, for logs and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SweepSummary {
    pub certificates: usize,
    pub pin_sets: usize,
    pub warnings: usize,
    pub critical: usize,
}

impl Sweeper {
    pub fn new() -> Self {
        Sweeper::default()
    }

    /// Sets every expiry gauge from the current snapshot and logs what is close to expiring.
    pub fn sweep(&self, live: &Live) -> SweepSummary {
        let snap = live.current();
        let m = &live.shared.metrics;
        let now = unix_now();
        let exp = &snap.config.expiry;
        let mut seen = Seen::default();
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
        }

        let cert_window = Window::new(now, exp.warn_before, exp.critical_before);
        for l in &snap.config.listeners {
            let Some(tls) = snap.listeners.get(&l.name) else {
                continue;
            };
            for c in &tls.certs {
                for (i, info) in c.path.iter().enumerate() {
                    let pos = Position::of(i, c.path.len(), c.has_anchor);
                    sum.certificates += 1;
                    set_cert(&m.cert_not_after, &mut seen, "listener", &l.name, pos, info);
                    cert_window.log(
                        &mut sum,
                        "served certificate",
                        &l.name,
                        pos,
                        &info.subject,
                        info.not_after,
                    );
                    for set in l
                        .pin_sets
                        .iter()
                        .filter_map(|n| snap.config.pin_sets.get(n))
                    {
                        set_pinned(
                            &m.cert_pinned,
                            &mut seen,
                            "listener",
                            &l.name,
                            &set.name,
                            pos,
                            &info.pin,
                            set.contains(&info.pin),
                        );
                    }
                }
            }
        }

        let stale_after = exp.check_every * 2;
        for (name, client) in &snap.upstreams {
            let Some((at, path)) = client.observer.last_path() else {
                continue;
            };
            if SystemTime::now().duration_since(at).unwrap_or_default() > stale_after {
                client.observer.clear_path();
                continue;
            }
            let set = client
                .config
                .pin_set
                .as_ref()
                .and_then(|n| snap.config.pin_sets.get(n));
            for c in &path {
                if let Some(info) = &c.info {
                    sum.certificates += 1;
                    set_cert(
                        &m.cert_not_after,
                        &mut seen,
                        "upstream",
                        name,
                        c.position,
                        info,
                    );
                    cert_window.log(
                        &mut sum,
                        "upstream certificate",
                        name,
                        c.position,
                        &info.subject,
                        info.not_after,
                    );
                }
                if let Some(set) = set {
                    set_pinned(
                        &m.cert_pinned,
                        &mut seen,
                        "upstream",
                        name,
                        &set.name,
                        c.position,
                        &c.pin,
                        set.contains(&c.pin),
                    );
                }
            }
        }

        let pin_window = Window::new(now, exp.pin_set_warn_before, exp.pin_set_critical_before);
        for set in snap.config.pin_sets.values() {
            sum.pin_sets += 1;
            let labels = vec![set.name.clone()];
            m.pin_set_expiry
                .with_label_values(&labels)
                .set(set.expires_unix() as f64);
            seen.pin_sets.insert(labels);
            pin_window.log(
                &mut sum,
                "pin set",
                &set.name,
                Position::Leaf,
                &set.description,
                set.expires_unix(),
            );
        }

        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        remove_gone(&m.cert_not_after, &last.not_after, &seen.not_after);
        remove_gone_int(&m.cert_pinned, &last.pinned, &seen.pinned);
        remove_gone(&m.pin_set_expiry, &last.pin_sets, &seen.pin_sets);
        *last = seen;
        sum
    }
}

/// Runs a sweep at start, whenever `kick` fires (after a swap, a new upstream path), and every
/// `check_every`.
pub async fn run(
    live: std::sync::Arc<Live>,
    sweeper: std::sync::Arc<Sweeper>,
    kick: std::sync::Arc<tokio::sync::Notify>,
) {
    loop {
        let started = std::time::Instant::now();
        let s = sweeper.sweep(&live);
        tracing::debug!(certificates = s.certificates, pin_sets = s.pin_sets, took = ?started.elapsed(), "expiry sweep");
        let every = live.current().config.expiry.check_every;
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = kick.notified() => {}
            _ = live.shared.upstream_seen.notified() => {}
        }
    }
}

/// Whether a snapshot's pin sets or certificates are close to expiring; used at start-up too.
pub fn days_left(unix: i64, now: i64) -> f64 {
    (unix - now) as f64 / 86_400.0
}

struct Window {
    now: i64,
    warn: i64,
    critical: i64,
}

impl Window {
    fn new(now: i64, warn: Duration, critical: Duration) -> Self {
        Window {
            now,
            warn: warn.as_secs() as i64,
            critical: critical.as_secs() as i64,
        }
    }

    fn log(
        &self,
        sum: &mut SweepSummary,
        what: &str,
        name: &str,
        pos: Position,
        subject: &str,
        at: i64,
    ) {
        let left = at - self.now;
        let days = days_left(at, self.now);
        if left <= self.critical {
            sum.critical += 1;
            tracing::error!(
                what,
                name,
                position = pos.as_str(),
                subject,
                days_left = format!("{days:.1}"),
                "expires inside the critical window"
            );
        } else if left <= self.warn {
            sum.warnings += 1;
            tracing::warn!(
                what,
                name,
                position = pos.as_str(),
                subject,
                days_left = format!("{days:.1}"),
                "expires inside the warning window"
            );
        }
    }
}

fn set_cert(
    g: &GaugeVec,
    seen: &mut Seen,
    scope: &str,
    name: &str,
    pos: Position,
    info: &CertInfo,
) {
    let labels = vec![
        scope.to_string(),
        name.to_string(),
        pos.as_str().to_string(),
        info.subject.clone(),
        info.serial.clone(),
        info.pin.to_prefixed(),
    ];
    g.with_label_values(&labels).set(info.not_after as f64);
    seen.not_after.insert(labels);
}

#[allow(clippy::too_many_arguments)]
fn set_pinned(
    g: &IntGaugeVec,
    seen: &mut Seen,
    scope: &str,
    name: &str,
    set: &str,
    pos: Position,
    pin: &Pin,
    yes: bool,
) {
    let labels = vec![
        scope.to_string(),
        name.to_string(),
        set.to_string(),
        pos.as_str().to_string(),
        pin.to_prefixed(),
    ];
    g.with_label_values(&labels).set(i64::from(yes));
    seen.pinned.insert(labels);
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
