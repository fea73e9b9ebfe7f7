//! The inventory: one typed account of what a snapshot serves and what pins it — listeners and
//! their served chains with the pin-set entries each chain matches, pin sets with their
//! standing and backups, upstreams with the last verified path and which pins matched it.
//!
//! Built in one place from a snapshot and the upstream observers; `check`, the start-up log,
//! `/status` (serde straight from these structs), the status page and the expiry sweep's
//! gauges and log lines all read it, and every expiry sentence comes from [`judge`]. It
//! changes nothing. A new fact about a pin set or a chain is one field here, and every reader
//! gets it; what only the sweep needs is `#[serde(skip)]`, so `/status` does not change.

pub mod judge;

use std::collections::BTreeSet;
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus::IntCounterVec;
use prometheus::core::Collector as _;
use serde::Serialize;

use crate::clock::fmt_time;
use crate::config::{Config, Expiry};
use crate::expiry::{Urgency, days_left, is_stale};
use crate::metrics::Metrics;
use crate::pin::{CertInfo, Pin, PinSet};
use crate::snapshot::Snapshot;
use crate::tls::{ChainMatch, Position};
use judge::{PinSetStanding, Role};

/// Everything one snapshot serves, as facts.
#[derive(Debug, Clone, Serialize)]
pub struct Inventory {
    pub version: &'static str,
    pub generation: u64,
    pub config: String,
    pub config_sha256: String,
    pub listeners: Vec<ListenerView>,
    pub pin_sets: Vec<PinSetView>,
    pub upstreams: Vec<UpstreamView>,
    pub expiry: ExpiryView,
    /// Every expiry sentence that applies now, pin sets first: what `check` prints and the
    /// sweep logs.
    pub findings: Vec<Finding>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ListenerView {
    pub name: String,
    pub listen: String,
    pub pin_sets: Vec<String>,
    pub certs: Vec<ServedChain>,
    /// For each pin set the listener names, its backup pins for this listener's served keys
    /// ([`PinSet::backups`]): the keys this listener can rotate to.
    pub backups: Vec<SetBackups>,
    /// Requests per pin set over the last day, when the listener maps app versions to sets.
    pub adoption: Option<serde_json::Value>,
}

/// The backup pins of one pin set for one listener, by label.
#[derive(Debug, Clone, Serialize)]
pub struct SetBackups {
    pub pin_set: String,
    pub backups: Vec<String>,
}

/// One `[[listener.cert]]` as clients see it: leaf, intermediates, then the anchor when
/// configured (each entry says its `position`), and how each of the listener's pin sets
/// matches it.
#[derive(Debug, Clone, Serialize)]
pub struct ServedChain {
    pub field: String,
    pub server_names: Vec<String>,
    pub path: Vec<CertView>,
    pub pin_sets: Vec<ChainMatch>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CertView {
    pub position: Position,
    pub subject: String,
    pub serial: Option<String>,
    pub pin: String,
    pub key: Option<String>,
    pub not_after: Option<String>,
    /// Two decimals: enough to read, and stable between two requests a second apart.
    pub days_left: Option<f64>,
    pub urgency: Option<Urgency>,
    /// `not_after` as unix seconds, for the expiry sweep's gauges. Not in `/status`, which
    /// shows the date and `days_left` (the metrics carry the timestamp).
    #[serde(skip)]
    pub not_after_unix: Option<i64>,
    /// Whether this key is in each pin set its owner names (the listener's sets, the
    /// upstream's set): `pinproxy_certificate_pinned`. Not in `/status`, where the chain's
    /// `pin_sets` and the path's `matched_pins` already say it by label.
    #[serde(skip)]
    pub pinned: Vec<PinnedIn>,
}

/// One pin set named by a certificate's listener or upstream, and whether it holds the key.
#[derive(Debug, Clone)]
pub struct PinnedIn {
    pub pin_set: String,
    pub pinned: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct PinSetView {
    pub name: String,
    pub description: String,
    pub role: Role,
    pub mode: &'static str,
    pub expires: String,
    pub days_left: f64,
    pub urgency: Urgency,
    /// `expires` (00:00 UTC) as unix seconds, for the sweep's gauge; `/status` shows the date.
    #[serde(skip)]
    pub expires_unix: i64,
    pub live: bool,
    pub message: Option<String>,
    pub pins: Vec<PinView>,
    /// Labels of the pins no served chain (listener sets) or last verified upstream path
    /// (upstream sets) uses — decided by pin value, as rule 2 does.
    pub backups: Vec<String>,
    /// Digest of the pins and kinds (what `frozen` records).
    pub digest: String,
    /// The digest the set shipped with, when frozen.
    pub frozen: Option<String>,
    /// The app file the pins, kinds and expiry were read from.
    pub from: Option<PinSourceView>,
    pub app_versions: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PinSourceView {
    pub file: String,
    pub format: &'static str,
    pub domain: String,
    pub element: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct PinView {
    pub label: String,
    pub kind: &'static str,
    pub sha256: String,
    pub in_use: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct UpstreamView {
    pub name: String,
    pub url: String,
    /// Whether the proxy speaks TLS to it (the `url`'s scheme): only then does the sweep
    /// report its path.
    #[serde(skip)]
    pub tls: bool,
    pub pin_set: Option<String>,
    pub pin_match: Option<&'static str>,
    pub mode: Option<&'static str>,
    pub last_verified_path: Option<Vec<UpstreamCertView>>,
    pub last_seen: Option<String>,
    /// Not seen for 2 × check_every: the path is kept here but no longer in the metrics.
    pub stale: Option<bool>,
    /// `pinproxy_upstream_pin_mismatches_total` for this upstream, both modes.
    pub pin_mismatches: u64,
    /// `pinproxy_upstream_errors_total` by kind, kinds with a count only.
    pub errors: Vec<(String, u64)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct UpstreamCertView {
    #[serde(flatten)]
    pub cert: CertView,
    /// Labels of the upstream pin set's entries this certificate's key matches.
    pub matched_pins: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ExpiryView {
    pub warn_before: String,
    pub critical_before: String,
    pub pin_set_warn_before: String,
    pub pin_set_critical_before: String,
    pub pin_set_grace: String,
    pub check_every: String,
}

/// One sentence about something close to (or past) its expiry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub urgency: Urgency,
    pub message: String,
}

/// What every part of one inventory reads: the time and the expiry thresholds.
struct Ctx<'a> {
    now: i64,
    exp: &'a Expiry,
}

/// Pins on what each pin set's owners present — the served chains of the listeners naming
/// it, the last verified path of the upstreams naming it — by set name: rule 2's "used".
type UsedPins = Vec<(String, Pin)>;

impl Ctx<'_> {
    /// Two decimals: enough to read, and stable between two requests a second apart.
    fn days(&self, t: i64) -> f64 {
        (days_left(t, self.now) * 100.0).round() / 100.0
    }

    /// `pin` is the key the chain presented (for an upstream, the one its pin set was checked
    /// against); `sets` the pin sets its listener or upstream names.
    fn cert_view(
        &self,
        position: Position,
        info: &CertInfo,
        pin: &Pin,
        sets: &[&PinSet],
    ) -> CertView {
        CertView {
            position,
            subject: info.subject.clone(),
            serial: Some(info.serial.clone()),
            pin: pin.to_prefixed(),
            key: Some(info.key_algorithm.to_string()),
            not_after: Some(fmt_time(info.not_after)),
            days_left: Some(self.days(info.not_after)),
            urgency: Some(judge::certificate(info.not_after, self.now, self.exp)),
            not_after_unix: Some(info.not_after),
            pinned: pinned(pin, sets),
        }
    }
}

fn pinned(pin: &Pin, sets: &[&PinSet]) -> Vec<PinnedIn> {
    sets.iter()
        .map(|s| PinnedIn {
            pin_set: s.name.clone(),
            pinned: s.contains(pin),
        })
        .collect()
}

impl Inventory {
    /// The inventory of `snap` at `now` (unix seconds).
    /// Counters (mismatches, errors) are read from `metrics`.
    pub fn of(snap: &Snapshot, metrics: &Metrics, now: i64) -> Inventory {
        let cfg = &snap.config;
        let exp = &cfg.expiry;
        let ctx = Ctx { now, exp };
        let mut used = UsedPins::new();
        let listeners = listener_views(snap, &ctx, &mut used);
        let upstreams = upstream_views(snap, metrics, &ctx, &mut used);
        let mut findings = Vec::new();
        let pin_sets = cfg
            .pin_sets
            .values()
            .map(|s| pin_set_view(cfg, s, &ctx, &used, &mut findings))
            .collect();
        served_findings(snap, &ctx, &mut findings);
        Inventory {
            version: env!("CARGO_PKG_VERSION"),
            generation: snap.generation,
            config: cfg.file.display().to_string(),
            config_sha256: snap.digest.clone(),
            listeners,
            pin_sets,
            upstreams,
            expiry: ExpiryView {
                warn_before: duration_text(exp.warn_before),
                critical_before: duration_text(exp.critical_before),
                pin_set_warn_before: duration_text(exp.pin_set_warn_before),
                pin_set_critical_before: duration_text(exp.pin_set_critical_before),
                pin_set_grace: duration_text(exp.pin_set_grace),
                check_every: duration_text(exp.check_every),
            },
            findings,
        }
    }
}

fn listener_views(snap: &Snapshot, ctx: &Ctx<'_>, used: &mut UsedPins) -> Vec<ListenerView> {
    let cfg = &snap.config;
    let mut listeners = Vec::new();
    for l in &cfg.listeners {
        let Some(tls) = snap.listeners.get(&l.name) else {
            continue;
        };
        let sets: Vec<&PinSet> = l
            .pin_sets
            .iter()
            .filter_map(|n| cfg.pin_sets.get(n))
            .collect();
        let served = tls.served_pins();
        for set in &l.pin_sets {
            used.extend(served.iter().map(|p| (set.clone(), *p)));
        }
        let certs = tls
            .certs
            .iter()
            .map(|c| ServedChain {
                field: c.field.clone(),
                server_names: c.server_names.clone(),
                path: c
                    .path
                    .iter()
                    .enumerate()
                    .map(|(i, info)| {
                        let position = Position::of(i, c.path.len(), c.has_anchor);
                        ctx.cert_view(position, info, &info.pin, &sets)
                    })
                    .collect(),
                pin_sets: tls
                    .matches
                    .iter()
                    .filter(|m| m.cert == c.field)
                    .cloned()
                    .collect(),
            })
            .collect();
        listeners.push(ListenerView {
            name: l.name.clone(),
            listen: l.listen.to_string(),
            pin_sets: l.pin_sets.clone(),
            certs,
            backups: sets
                .iter()
                .map(|s| SetBackups {
                    pin_set: s.name.clone(),
                    backups: s.backups(&served).map(|p| p.label.clone()).collect(),
                })
                .collect(),
            adoption: snap.adoption.get(&l.name).map(|a| a.to_json()),
        });
    }
    listeners
}

fn upstream_views(
    snap: &Snapshot,
    metrics: &Metrics,
    ctx: &Ctx<'_>,
    used: &mut UsedPins,
) -> Vec<UpstreamView> {
    let cfg = &snap.config;
    let mut upstreams = Vec::new();
    let wall = SystemTime::now();
    for u in cfg.upstreams.values() {
        let set = u.pin_set.as_ref().and_then(|n| cfg.pin_sets.get(n));
        let sets: Vec<&PinSet> = set.into_iter().collect();
        let client = snap.upstreams.get(&u.name);
        let observed = client.and_then(|c| c.observer.last_path());
        if let (Some(set), Some((_, path))) = (set, &observed) {
            for c in path {
                used.push((set.name.clone(), c.pin));
            }
        }
        let pin_mismatches = counts(&metrics.upstream_pin_mismatches, &u.name, "mode")
            .iter()
            .map(|(_, n)| n)
            .sum();
        let errors = counts(&metrics.upstream_errors, &u.name, "kind")
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .collect();
        upstreams.push(UpstreamView {
            name: u.name.clone(),
            url: format!(
                "{}://{}{}",
                if u.tls { "https" } else { "http" },
                u.authority,
                u.base_path
            ),
            tls: u.tls,
            pin_set: u.pin_set.clone(),
            pin_match: u.pin_set.as_ref().map(|_| u.pin_match.as_str()),
            mode: set.map(|s| s.mode.as_str()),
            last_verified_path: observed.as_ref().map(|(_, path)| {
                path.iter()
                    .map(|c| UpstreamCertView {
                        cert: match &c.info {
                            Some(info) => ctx.cert_view(c.position, info, &c.pin, &sets),
                            // A compiled-in or OS root is known by its key only.
                            None => CertView {
                                position: c.position,
                                subject: c.subject.clone(),
                                serial: None,
                                pin: c.pin.to_prefixed(),
                                key: None,
                                not_after: None,
                                days_left: None,
                                urgency: None,
                                not_after_unix: None,
                                pinned: pinned(&c.pin, &sets),
                            },
                        },
                        matched_pins: set
                            .map(|s| {
                                s.pins
                                    .iter()
                                    .filter(|p| p.pin == c.pin)
                                    .map(|p| p.label.clone())
                                    .collect()
                            })
                            .unwrap_or_default(),
                    })
                    .collect()
            }),
            last_seen: observed.as_ref().map(|(t, _)| {
                fmt_time(
                    t.duration_since(UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs() as i64),
                )
            }),
            stale: observed
                .as_ref()
                .map(|(t, _)| is_stale(*t, wall, ctx.exp.check_every)),
            pin_mismatches,
            errors,
        });
    }
    upstreams
}

fn pin_set_view(
    cfg: &Config,
    s: &PinSet,
    ctx: &Ctx<'_>,
    used: &UsedPins,
    findings: &mut Vec<Finding>,
) -> PinSetView {
    let role = Role::of(
        cfg.listeners.iter().any(|l| l.pin_sets.contains(&s.name)),
        cfg.upstreams
            .values()
            .any(|u| u.pin_set.as_ref() == Some(&s.name)),
    );
    let PinSetStanding {
        urgency,
        live,
        message,
    } = judge::pin_set(s, role, ctx.now, ctx.exp);
    if let Some(m) = &message {
        findings.push(Finding {
            urgency,
            message: m.clone(),
        });
    }
    let used: Vec<Pin> = used
        .iter()
        .filter(|(n, _)| *n == s.name)
        .map(|(_, p)| *p)
        .collect::<BTreeSet<Pin>>()
        .into_iter()
        .collect();
    PinSetView {
        name: s.name.clone(),
        description: s.description.clone(),
        role,
        mode: s.mode.as_str(),
        expires: s.expires.to_string(),
        days_left: ctx.days(s.expires_unix()),
        urgency,
        expires_unix: s.expires_unix(),
        live,
        message,
        pins: s
            .pins
            .iter()
            .map(|p| PinView {
                label: p.label.clone(),
                kind: p.kind.as_str(),
                sha256: p.pin.to_base64(),
                in_use: used.contains(&p.pin),
            })
            .collect(),
        // Backups for every owner at once: the same definition with all their keys.
        backups: s.backups(&used).map(|p| p.label.clone()).collect(),
        digest: s.digest(),
        frozen: s.frozen.clone(),
        from: s.from.as_ref().map(|o| PinSourceView {
            file: o.file.display().to_string(),
            format: o.format.as_str(),
            domain: o.domain.clone(),
            element: o.element.clone(),
        }),
        app_versions: s.app_versions.as_ref().map(ToString::to_string),
    }
}

/// Served certificates close to or past their expiry.
fn served_findings(snap: &Snapshot, ctx: &Ctx<'_>, findings: &mut Vec<Finding>) {
    for l in &snap.config.listeners {
        let Some(tls) = snap.listeners.get(&l.name) else {
            continue;
        };
        for c in &tls.certs {
            for (i, info) in c.path.iter().enumerate() {
                let u = judge::certificate(info.not_after, ctx.now, ctx.exp);
                if u != Urgency::Ok {
                    let position = Position::of(i, c.path.len(), c.has_anchor);
                    findings.push(Finding {
                        urgency: u,
                        message: judge::certificate_message(
                            "served certificate",
                            &info.subject,
                            position.as_str(),
                            &format!("listener {}", l.name),
                            &info.serial,
                            info.not_after,
                            ctx.now,
                        ),
                    });
                }
            }
        }
    }
}

impl Inventory {
    /// Logs each listener's served certificates (subject, serial, not_after, pin) and which
    /// pin of each pin set matches them: the start-up log an on-call engineer reads first.
    pub fn log_served(&self) {
        for l in &self.listeners {
            for c in &l.certs {
                for v in &c.path {
                    tracing::info!(
                        listener = %l.name, cert = %c.field, position = v.position.as_str(),
                        subject = %v.subject, serial = v.serial.as_deref().unwrap_or("-"),
                        not_after = v.not_after.as_deref().unwrap_or("-"), pin = %v.pin,
                        "serving certificate"
                    );
                }
                for m in &c.pin_sets {
                    let matched: Vec<String> = m
                        .matched
                        .iter()
                        .map(|p| format!("\"{}\" on the {}", p.label, p.position.as_str()))
                        .collect();
                    tracing::info!(
                        listener = %l.name, cert = %c.field, pin_set = %m.pin_set, live = m.live,
                        matched = %crate::logfmt::LogList(&matched), "pin set matches"
                    );
                }
            }
        }
    }
}

/// The samples of a counter with `upstream = name`, by the value of label `by`. Reads what
/// exists; never creates a series.
fn counts(vec: &IntCounterVec, name: &str, by: &str) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for family in vec.collect() {
        for m in family.get_metric() {
            let label = |k: &str| {
                m.get_label()
                    .iter()
                    .find(|l| l.name() == k)
                    .map(|l| l.value().to_string())
            };
            if label("upstream").as_deref() == Some(name)
                && let Some(v) = label(by)
            {
                out.push((v, m.get_counter().get_value() as u64));
            }
        }
    }
    out
}

/// A config duration as an operator writes it: whole days as `60d` (humantime would say
/// "1month 29days 13h…"), anything else in humantime's form.
pub fn duration_text(d: std::time::Duration) -> String {
    let secs = d.as_secs();
    if secs > 0 && secs.is_multiple_of(86_400) && d.subsec_nanos() == 0 {
        format!("{}d", secs / 86_400)
    } else {
        humantime::format_duration(d).to_string()
    }
}
