//! `pinproxy check`: everything `run` would load and validate, as a report for a person —
//! problems with file and field, and which pin each served chain matches; with `--probe`, a
//! dry-run handshake with every HTTPS upstream.

mod key_mode;
pub mod probe;
pub mod remote;
pub mod service;

use std::fmt::Write as _;
use std::path::Path;

use crate::clock::unix_now;
use crate::files::Files;
use crate::inventory::{CertView, Inventory};
use crate::metrics::Metrics;
use crate::snapshot::{self, Shared};

/// The outcome of a check: `ok` is false when any error was found.
#[derive(Debug)]
pub struct Report {
    pub ok: bool,
    pub text: String,
}

/// Checks `config`; with `probe`, also completes one handshake with every HTTPS upstream.
pub async fn check(config: &Path, probe: bool) -> Report {
    let mut text = String::new();
    let shared = match Metrics::new() {
        Ok(m) => Shared::new(m),
        Err(e) => {
            return Report {
                ok: false,
                text: format!("error: cannot set up metrics: {e}\n"),
            };
        }
    };
    match snapshot::build(config, &shared, None, 0, &mut Files::new()) {
        Ok(snap) => {
            for w in snap.warnings.warnings() {
                let _ = writeln!(text, "warning: {w}");
            }
            for w in key_mode::warnings(&snap.config) {
                let _ = writeln!(text, "warning: {w}");
            }
            let inv = Inventory::of(&snap, &shared.metrics, unix_now());
            for f in &inv.findings {
                let _ = writeln!(text, "warning: {}", f.message);
            }
            write_inventory(&mut text, &inv);
            text.push_str(&pin_set_origins(&snap.config));
            let adoption = crate::check::remote::adoption_lines(&snap.config).await;
            text.push_str(&adoption);
            let c = &snap.config;
            let _ = writeln!(
                text,
                "ok: {} listener(s), {} route(s), {} upstream(s), {} pin set(s) in {}",
                c.listeners.len(),
                c.routes.len(),
                c.upstreams.len(),
                c.pin_sets.len(),
                config.display()
            );
            let mut ok = true;
            if probe {
                for r in crate::check::probe::probe_all(&snap, &shared).await {
                    let verdict = if r.ok { "ok" } else { "FAILED" };
                    let _ = writeln!(text, "probe upstream {}: {verdict}: {}", r.upstream, r.text);
                    ok &= r.ok;
                }
            }
            Report { ok, text }
        }
        Err(problems) => {
            for p in problems.errors() {
                let _ = writeln!(text, "error: {p}");
            }
            for w in problems.warnings() {
                let _ = writeln!(text, "warning: {w}");
            }
            let n = problems.errors().count();
            let _ = writeln!(
                text,
                "{n} error(s) in {} — `run` would refuse to start",
                config.display()
            );
            Report { ok: false, text }
        }
    }
}

/// The served chains (serial and not_after of every certificate, so a renewal can be
/// confirmed before it is served) and which pin of each pin set matches where.
fn write_inventory(text: &mut String, inv: &Inventory) {
    for l in &inv.listeners {
        for c in &l.certs {
            let Some(leaf) = c.path.first() else {
                continue;
            };
            let _ = writeln!(
                text,
                "listener {} {}: {} key {}",
                l.name, c.field, leaf.subject, leaf.pin
            );
            for v in &c.path {
                let _ = writeln!(text, "  {}", cert_line(v));
            }
            for m in &c.pin_sets {
                let what: Vec<String> = m
                    .matched
                    .iter()
                    .map(|p| {
                        format!(
                            "\"{}\" on the {} ({})",
                            p.label,
                            p.position.as_str(),
                            p.subject
                        )
                    })
                    .collect();
                let live = if m.live { "" } else { " [expired]" };
                let _ = writeln!(
                    text,
                    "  pin set {}{live}: {}",
                    m.pin_set,
                    if what.is_empty() {
                        "no pin matches".to_string()
                    } else {
                        what.join(", ")
                    }
                );
            }
        }
    }
}

fn cert_line(v: &CertView) -> String {
    format!(
        "{} {} serial {} not_after {} ({} days left)",
        v.position.as_str(),
        v.subject,
        v.serial.as_deref().unwrap_or("-"),
        v.not_after.as_deref().unwrap_or("-"),
        v.days_left.map_or("-".to_string(), |d| format!("{d:.0}")),
    )
}

/// Where each pin set's pins come from, whether it shipped frozen and which app versions carry
/// it: one line per set that says more than "listed in its TOML file".
fn pin_set_origins(config: &crate::config::Config) -> String {
    let mut text = String::new();
    for set in config.pin_sets.values() {
        let mut parts = Vec::new();
        if let Some(o) = &set.from {
            parts.push(format!(
                "pins, kinds and expiry from {} ({} {}, domain {})",
                o.file.display(),
                o.format.as_str(),
                o.element,
                o.domain
            ));
        }
        if let Some(f) = &set.frozen {
            parts.push(format!(
                "frozen {f} (shipped; `expires` {} is what the proxy checks — moving it changes nothing in the apps)",
                set.expires
            ));
        }
        if let Some(v) = &set.app_versions {
            parts.push(format!("app versions {v}"));
        }
        if !parts.is_empty() {
            let _ = writeln!(text, "pin set {}: {}", set.name, parts.join("; "));
        }
    }
    text
}
