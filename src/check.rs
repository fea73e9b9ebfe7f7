//! `pinproxy check`: everything `run` would load and validate, as a report for a person —
//! problems with file and field, and which pin each served chain matches.

mod key_mode;

use std::fmt::Write as _;
use std::path::Path;

use crate::files::Files;
use crate::metrics::Metrics;
use crate::snapshot::{self, Shared};

/// The outcome of a check: `ok` is false when any error was found.
#[derive(Debug)]
pub struct Report {
    pub ok: bool,
    pub text: String,
}

pub fn check(config: &Path) -> Report {
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
            for l in &snap.config.listeners {
                let Some(tls) = snap.listeners.get(&l.name) else {
                    continue;
                };
                for c in &tls.certs {
                    let leaf = &c.path[0];
                    let _ = writeln!(
                        text,
                        "listener {} {}: {} key {}",
                        l.name,
                        c.field,
                        leaf.subject,
                        leaf.pin.to_prefixed()
                    );
                    for m in tls.matches.iter().filter(|m| m.cert == c.field) {
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
            Report { ok: true, text }
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
