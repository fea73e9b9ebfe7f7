//! Unit tests of the sweep: series, log lines and windows.

#![cfg(test)]
use std::io::Write;
use std::sync::{Arc, Mutex};

use super::*;
use crate::inventory::{
    CertView, ExpiryView, ListenerView, PinnedIn, ServedChain, UpstreamCertView, UpstreamView,
};

/// tracing caches per-callsite interest globally: a sweep on another test thread with no
/// subscriber can race the capturing test's subscriber, so the tests that sweep take turns.
static SWEEPS: Mutex<()> = Mutex::new(());

fn turn() -> std::sync::MutexGuard<'static, ()> {
    SWEEPS.lock().unwrap_or_else(|p| p.into_inner())
}

const DAY: i64 = 86_400;
const NOW: i64 = 1_800_000_000;

fn expiry() -> Expiry {
    let d = |days: u64| Duration::from_secs(days * DAY as u64);
    Expiry {
        warn_before: d(28),
        critical_before: d(14),
        pin_set_warn_before: d(60),
        pin_set_critical_before: d(21),
        pin_set_grace: d(2),
        check_every: Duration::from_secs(3600),
    }
}

fn cert(name: &str, position: Position, serial: &str, days: i64) -> CertItem {
    CertItem {
        scope: "listener",
        name: name.into(),
        position,
        subject: format!("CN={serial}"),
        serial: serial.into(),
        pin: format!("sha256/{serial}"),
        not_after: NOW + days * DAY,
    }
}

fn pin_set(name: &str, days: i64) -> PinSetItem {
    PinSetItem {
        name: name.into(),
        description: String::new(),
        expires: NOW + days * DAY,
        detail: String::new(),
    }
}

/// Two chains of one listener that share an intermediate in the critical window, a leaf in
/// the warning window, a healthy leaf, and an expired pin set.
fn shared_intermediate() -> Found {
    Found {
        certs: vec![
            cert("mobile", Position::Leaf, "01", 20),
            cert("mobile", Position::Intermediate, "ca", 5),
            cert("mobile", Position::Leaf, "02", 80),
            cert("mobile", Position::Intermediate, "ca", 5),
        ],
        pinned: vec![],
        pin_sets: vec![pin_set("app-4", -3), pin_set("app-5", 400)],
    }
}

#[test]
fn urgency_follows_the_windows_like_the_alert_rules() {
    let _turn = turn();
    let e = expiry();
    let u = |days_left: i64| Urgency::of(NOW + days_left, NOW, e.warn_before, e.critical_before);
    assert_eq!(u(29 * DAY), Urgency::Ok);
    assert_eq!(u(28 * DAY), Urgency::Ok, "the rules compare with <");
    assert_eq!(u(28 * DAY - 1), Urgency::Warning);
    assert_eq!(u(14 * DAY), Urgency::Warning);
    assert_eq!(u(14 * DAY - 1), Urgency::Critical);
    assert_eq!(u(1), Urgency::Critical);
    assert_eq!(u(0), Urgency::Expired);
    assert_eq!(u(-DAY), Urgency::Expired);
}

#[test]
fn a_certificate_shared_by_two_chains_is_one_series_and_one_log_line() {
    let _turn = turn();
    let m = Metrics::new().expect("metrics");
    let s = Sweeper::new();
    let sum = s.apply(
        &m,
        &expiry(),
        &shared_intermediate(),
        NOW,
        Reason::Scheduled,
    );
    assert_eq!(
        sum.certificates, 3,
        "leaf 01, leaf 02, the intermediate once"
    );
    assert_eq!(sum.pin_sets, 2);
    assert_eq!(sum.warnings, 1, "leaf 01");
    assert_eq!(sum.critical, 2, "the intermediate, the expired pin set");
    assert_eq!(sum.logged, 3, "one line per item in a window");
    assert_eq!(sum.series, 4 + 3 + 2);
}

#[test]
fn each_scheduled_sweep_logs_again_and_upstream_sightings_log_only_new_items() {
    let _turn = turn();
    let m = Metrics::new().expect("metrics");
    let s = Sweeper::new();
    let e = expiry();
    let found = shared_intermediate();
    assert_eq!(s.apply(&m, &e, &found, NOW, Reason::Scheduled).logged, 3);
    assert_eq!(
        s.apply(&m, &e, &found, NOW, Reason::UpstreamSeen).logged,
        0,
        "nothing new since the scheduled sweep"
    );
    let mut more = shared_intermediate();
    more.certs.push(CertItem {
        scope: "upstream",
        ..cert("payments", Position::Leaf, "up", 3)
    });
    let sum = s.apply(&m, &e, &more, NOW, Reason::UpstreamSeen);
    assert_eq!(
        (sum.logged, sum.critical),
        (1, 3),
        "only the new upstream leaf"
    );
    assert_eq!(s.apply(&m, &e, &more, NOW, Reason::UpstreamSeen).logged, 0);
    assert_eq!(s.apply(&m, &e, &more, NOW, Reason::Scheduled).logged, 4);
}

#[test]
fn series_that_went_away_are_removed_and_the_rest_stay() {
    let _turn = turn();
    let m = Metrics::new().expect("metrics");
    let s = Sweeper::new();
    let e = expiry();
    s.apply(&m, &e, &shared_intermediate(), NOW, Reason::Scheduled);
    let text = String::from_utf8(m.encode()).expect("utf-8");
    assert!(text.contains("serial=\"01\""), "{text}");
    assert!(text.contains("pin_set=\"app-4\""), "{text}");

    let mut renewed = shared_intermediate();
    renewed.certs[0] = cert("mobile", Position::Leaf, "03", 90);
    renewed.pin_sets.remove(0);
    s.apply(&m, &e, &renewed, NOW, Reason::Scheduled);
    let text = String::from_utf8(m.encode()).expect("utf-8");
    assert!(!text.contains("serial=\"01\""), "old leaf removed: {text}");
    assert!(
        !text.contains("pin_set=\"app-4\""),
        "old pin set removed: {text}"
    );
    assert!(text.contains("serial=\"03\""), "{text}");
    assert!(text.contains("serial=\"ca\""), "{text}");
}

/// Collects what the fmt subscriber writes.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("capture").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn log_lines_match_the_summary_with_one_level_per_window() {
    let _turn = turn();
    let cap = Capture::default();
    let w = cap.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || w.clone())
        .with_ansi(false)
        .finish();
    let m = Metrics::new().expect("metrics");
    let s = Sweeper::new();
    let sum = tracing::subscriber::with_default(subscriber, || {
        tracing::callsite::rebuild_interest_cache();
        s.apply(
            &m,
            &expiry(),
            &shared_intermediate(),
            NOW,
            Reason::Scheduled,
        )
    });
    let out = String::from_utf8(cap.0.lock().expect("capture").clone()).expect("utf-8");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), sum.logged, "{out}");
    let with = |needle: &str| lines.iter().filter(|l| l.contains(needle)).count();
    assert_eq!(with("serial=ca"), 1, "shared intermediate once: {out}");
    assert_eq!(with("WARN"), 1, "{out}");
    assert_eq!(with("ERROR"), 2, "{out}");
    assert_eq!(with("pin set has EXPIRED"), 1, "{out}");
}

fn view(position: Position, serial: &str, days: Option<i64>, pinned: &[(&str, bool)]) -> CertView {
    CertView {
        position,
        subject: format!("CN={serial}"),
        serial: days.map(|_| serial.into()),
        pin: format!("sha256/{serial}"),
        key: None,
        not_after: None,
        days_left: None,
        urgency: None,
        not_after_unix: days.map(|d| NOW + d * DAY),
        pinned: pinned
            .iter()
            .map(|(s, p)| PinnedIn {
                pin_set: (*s).into(),
                pinned: *p,
            })
            .collect(),
    }
}

fn upstream(name: &str, tls: bool, stale: bool, path: Vec<CertView>) -> UpstreamView {
    UpstreamView {
        name: name.into(),
        url: format!("https://{name}"),
        tls,
        pin_set: Some("up".into()),
        pin_match: None,
        mode: None,
        last_verified_path: Some(
            path.into_iter()
                .map(|cert| UpstreamCertView {
                    cert,
                    matched_pins: vec![],
                })
                .collect(),
        ),
        last_seen: None,
        stale: Some(stale),
        pin_mismatches: 0,
        errors: vec![],
    }
}

/// The sweep reads the inventory: served chains and fresh TLS upstream paths become series,
/// a root known by its key only has a pinned series but no expiry, stale paths are left out.
#[test]
fn the_items_are_read_from_the_inventory() {
    let d = String::new;
    let inv = Inventory {
        version: "test",
        generation: 1,
        config: d(),
        config_sha256: d(),
        listeners: vec![ListenerView {
            name: "mobile".into(),
            listen: d(),
            pin_sets: vec!["app".into()],
            certs: vec![ServedChain {
                field: d(),
                server_names: vec![],
                path: vec![
                    view(Position::Leaf, "01", Some(20), &[("app", false)]),
                    view(Position::Intermediate, "ca", Some(90), &[("app", true)]),
                ],
                pin_sets: vec![],
            }],
            backups: vec![],
            adoption: None,
        }],
        pin_sets: vec![],
        upstreams: vec![
            upstream(
                "payments",
                true,
                false,
                vec![
                    view(Position::Leaf, "p1", Some(5), &[("up", false)]),
                    view(Position::Anchor, "root", None, &[("up", true)]),
                ],
            ),
            upstream(
                "gone",
                true,
                true,
                vec![view(Position::Leaf, "g", Some(5), &[])],
            ),
            upstream(
                "plain",
                false,
                false,
                vec![view(Position::Leaf, "h", Some(5), &[])],
            ),
        ],
        expiry: ExpiryView {
            warn_before: d(),
            critical_before: d(),
            pin_set_warn_before: d(),
            pin_set_critical_before: d(),
            pin_set_grace: d(),
            check_every: d(),
        },
        findings: vec![],
    };
    let found = collect(&inv);
    let certs: Vec<Vec<String>> = found.certs.iter().map(CertItem::labels).collect();
    assert_eq!(
        certs,
        [
            ["listener", "mobile", "leaf", "CN=01", "01", "sha256/01"],
            [
                "listener",
                "mobile",
                "intermediate",
                "CN=ca",
                "ca",
                "sha256/ca"
            ],
            ["upstream", "payments", "leaf", "CN=p1", "p1", "sha256/p1"],
        ]
    );
    assert_eq!(found.certs[2].not_after, NOW + 5 * DAY);
    let pinned: Vec<(&[String; 5], bool)> =
        found.pinned.iter().map(|p| (&p.labels, p.pinned)).collect();
    assert_eq!(pinned.len(), 4, "{pinned:?}");
    assert_eq!(
        pinned[3],
        (
            &[
                "upstream".to_string(),
                "payments".into(),
                "up".into(),
                "anchor".into(),
                "sha256/root".into()
            ],
            true
        ),
        "a root without a certificate is still pinned"
    );
}
