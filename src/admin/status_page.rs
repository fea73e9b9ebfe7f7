//! The status page at `/` on the admin listener: the inventory for people — served
//! certificates with their pins and the pin-set entries they match, days left as a traffic
//! light, pin sets with expiry and backups, upstreams with their last verified chain and
//! mismatch counts, the last reload and the generation.
//!
//! Plain HTML and inline CSS: no script, no external asset, so it renders the same behind any
//! firewall and is safe to open. Every value is HTML-escaped. It reads the inventory only.

use std::fmt::Write as _;

use html_escape::encode_text as esc;

use crate::expiry::Urgency;
use crate::inventory::{CertView, Inventory};
use crate::reload::ReloadView;

/// The whole page.
pub fn render(inv: &Inventory, reload: &ReloadView) -> String {
    let mut h = String::with_capacity(16 * 1024);
    let _ = write!(
        h,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>pinproxy status</title><style>{CSS}</style></head><body>\
         <h1>pinproxy {} <small>generation {} · config sha256 {}</small></h1>",
        esc(inv.version),
        inv.generation,
        esc(&inv.config_sha256[..inv.config_sha256.len().min(16)]),
    );
    reload_section(&mut h, reload);
    if !inv.findings.is_empty() {
        h.push_str("<h2>Needs attention</h2><ul class=\"findings\">");
        for f in &inv.findings {
            let _ = write!(
                h,
                "<li class=\"{}\">{}</li>",
                light(Some(f.urgency)),
                esc(&f.message)
            );
        }
        h.push_str("</ul>");
    }
    certificates(&mut h, inv);
    pin_sets(&mut h, inv);
    upstreams(&mut h, inv);
    h.push_str("</body></html>\n");
    h
}

fn reload_section(h: &mut String, r: &ReloadView) {
    let (class, word) = if r.last_successful {
        ("ok", "successful")
    } else {
        ("critical", "FAILED")
    };
    let _ = write!(
        h,
        "<p class=\"reload\">Last reload: <span class=\"light {class}\">{word}</span> · last success {} · \
         last attempt {} ({}, {}) · {} attempt(s)</p>",
        esc(&r.last_success),
        esc(&r.last_attempt),
        esc(r.last_trigger.map_or("none yet", |t| t.as_str())),
        esc(r.last_outcome.map_or("-", |o| o.as_str())),
        r.attempts,
    );
    if let Some(e) = &r.last_error {
        let _ = write!(h, "<p class=\"critical\">Last error: {}</p>", esc(e));
    }
    for item in &r.needs_restart {
        let _ = write!(h, "<p class=\"warning\">Needs a restart: {}</p>", esc(item));
    }
}

fn certificates(h: &mut String, inv: &Inventory) {
    h.push_str("<h2>Served certificates</h2>");
    for l in &inv.listeners {
        for c in &l.certs {
            let _ = write!(
                h,
                "<h3>listener {} <small>{} · {} · {}</small></h3><table><tr><th>position</th><th>subject</th>\
                 <th>serial</th><th>not after</th><th>days left</th><th>pin</th></tr>",
                esc(&l.name),
                esc(&l.listen),
                esc(&c.field),
                esc(&c.server_names.join(", ")),
            );
            for v in &c.path {
                cert_row(h, v, "");
            }
            h.push_str("</table><ul class=\"matches\">");
            for m in &c.pin_sets {
                let what: Vec<String> = m
                    .matched
                    .iter()
                    .map(|p| format!("“{}” on the {}", p.label, p.position.as_str()))
                    .collect();
                let _ = write!(
                    h,
                    "<li>pin set <b>{}</b>{}: {}</li>",
                    esc(&m.pin_set),
                    if m.live { "" } else { " (expired)" },
                    esc(&if what.is_empty() {
                        "no pin matches".to_string()
                    } else {
                        what.join(", ")
                    })
                );
            }
            h.push_str("</ul>");
        }
    }
}

fn cert_row(h: &mut String, v: &CertView, extra: &str) {
    let _ = write!(
        h,
        "<tr><td>{}</td><td>{}</td><td class=\"mono\">{}</td><td>{}</td><td>{}</td><td class=\"mono\">{}</td>{extra}</tr>",
        v.position.as_str(),
        esc(&v.subject),
        esc(v.serial.as_deref().unwrap_or("-")),
        esc(v.not_after.as_deref().unwrap_or("-")),
        days_cell(v.days_left, v.urgency),
        esc(&v.pin),
    );
}

fn pin_sets(h: &mut String, inv: &Inventory) {
    h.push_str(
        "<h2>Pin sets</h2><table><tr><th>pin set</th><th>used by</th><th>mode</th><th>expires</th>\
         <th>days left</th><th>live</th><th>pins</th></tr>",
    );
    for s in &inv.pin_sets {
        let pins: Vec<String> = s
            .pins
            .iter()
            .map(|p| {
                format!(
                    "<li>{} <small>({}, {})</small> <span class=\"tag {}\">{}</span></li>",
                    esc(&p.label),
                    p.kind,
                    esc(&p.sha256),
                    if p.in_use { "used" } else { "backup" },
                    if p.in_use { "in use" } else { "backup" },
                )
            })
            .collect();
        let role = serde_json::to_value(s.role)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let _ = write!(
            h,
            "<tr><td><b>{}</b><br><small>{}</small></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><ul>{}</ul></td></tr>",
            esc(&s.name),
            esc(&s.description),
            esc(&role),
            s.mode,
            esc(&s.expires),
            days_cell(Some(s.days_left), Some(s.urgency)),
            if s.live { "yes" } else { "no" },
            pins.join(""),
        );
    }
    h.push_str("</table>");
}

fn upstreams(h: &mut String, inv: &Inventory) {
    h.push_str("<h2>Upstreams</h2>");
    for u in &inv.upstreams {
        let errors: Vec<String> = u.errors.iter().map(|(k, n)| format!("{k} {n}")).collect();
        let _ = write!(
            h,
            "<h3>upstream {} <small>{} · pin set {} · pin mismatches {} · errors {}</small></h3>",
            esc(&u.name),
            esc(&u.url),
            esc(u.pin_set.as_deref().unwrap_or("none")),
            u.pin_mismatches,
            esc(&if errors.is_empty() {
                "none".to_string()
            } else {
                errors.join(", ")
            }),
        );
        match &u.last_verified_path {
            None => h.push_str("<p>No verified chain seen yet.</p>"),
            Some(path) => {
                let _ = write!(
                    h,
                    "<p>Last verified chain, seen {}{}:</p><table><tr><th>position</th><th>subject</th><th>serial</th>\
                     <th>not after</th><th>days left</th><th>pin</th><th>matches</th></tr>",
                    esc(u.last_seen.as_deref().unwrap_or("-")),
                    if u.stale == Some(true) {
                        " (stale)"
                    } else {
                        ""
                    },
                );
                for c in path {
                    let matched = format!("<td>{}</td>", esc(&c.matched_pins.join(", ")));
                    cert_row(h, &c.cert, &matched);
                }
                h.push_str("</table>");
            }
        }
    }
}

fn days_cell(days: Option<f64>, urgency: Option<Urgency>) -> String {
    match days {
        Some(d) => format!("<span class=\"light {}\">{d:.0}</span>", light(urgency)),
        None => "-".to_string(),
    }
}

/// The traffic-light class: green ok, amber warning, red critical or expired.
fn light(u: Option<Urgency>) -> &'static str {
    match u {
        Some(Urgency::Ok) => "ok",
        Some(Urgency::Warning) => "warning",
        Some(Urgency::Critical | Urgency::Expired) => "critical",
        None => "",
    }
}

const CSS: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}\
h1 small,h3 small{font-weight:normal;color:#666;font-size:.75em}\
table{border-collapse:collapse;margin:.4em 0 1em;max-width:100%}td,th{border:1px solid #ddd;padding:.25em .5em;text-align:left;vertical-align:top}\
th{background:#f4f4f4}.mono{font-family:monospace;font-size:.85em;word-break:break-all}ul{margin:.2em 0;padding-left:1.2em}\
.light{display:inline-block;min-width:2.5em;text-align:center;border-radius:1em;padding:0 .5em;color:#fff;font-weight:bold}\
.light.ok{background:#2e7d32}.light.warning{background:#f9a825;color:#222}.light.critical{background:#c62828}\
li.warning{color:#8a6d00}li.critical,p.critical{color:#c62828;font-weight:bold}p.warning{color:#8a6d00}\
.tag{border-radius:.3em;padding:0 .4em;font-size:.8em}.tag.used{background:#e3f2fd}.tag.backup{background:#fff3e0}";
