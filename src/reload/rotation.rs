//! What a key rotation leaves behind: when a reload moves a served certificate to another key,
//! which pins of each live pin set are now backups, and a warning when the only backup left is
//! the key just rotated away from — the apps then have no key to move to if the new one is lost.

use serde::Serialize;

use crate::clock::unix_now;
use crate::pin::Pin;
use crate::snapshot::Snapshot;

/// One served certificate that changed keys in a reload.
#[derive(Debug, Clone, Serialize)]
pub struct Rotation {
    pub listener: String,
    pub cert: String,
    pub from: String,
    pub to: String,
    pub at: String,
    pub pin_sets: Vec<SetAfter>,
}

/// A live pin set of the listener after the rotation.
#[derive(Debug, Clone, Serialize)]
pub struct SetAfter {
    pub pin_set: String,
    /// Labels of the pins no served chain uses now.
    pub backups: Vec<String>,
    pub warning: Option<String>,
}

/// The rotations between the running snapshot and the next one.
pub fn rotations(cur: &Snapshot, next: &Snapshot) -> Vec<Rotation> {
    let now = unix_now();
    let grace = next.config.expiry.pin_set_grace;
    let mut out = Vec::new();
    for (name, tls) in &next.listeners {
        let Some(old) = cur.listeners.get(name) else {
            continue;
        };
        for (i, cert) in tls.certs.iter().enumerate() {
            let Some(before) = old.certs.get(i).map(|o| o.path[0].pin) else {
                continue;
            };
            let after = cert.path[0].pin;
            if before == after {
                continue;
            }
            let Some(listener) = next.config.listeners.iter().find(|l| &l.name == name) else {
                continue;
            };
            let pin_sets = listener
                .pin_sets
                .iter()
                .filter_map(|n| next.config.pin_sets.get(n))
                .filter(|s| s.is_live(now, grace))
                .map(|set| {
                    let used: Vec<Pin> = next
                        .listeners
                        .values()
                        .flat_map(|t| t.certs.iter())
                        .flat_map(|c| c.path.iter().map(|i| i.pin))
                        .collect();
                    let spare: Vec<_> = set.pins.iter().filter(|p| !used.contains(&p.pin)).collect();
                    let warning = match spare.as_slice() {
                        [only] if only.pin == before => Some(format!(
                            "the only backup left in pin set {} is \"{}\", the key just rotated away from: make and ship \
                             a new backup (`pinproxy keygen`) in the next app release",
                            set.name, only.label
                        )),
                        _ => None,
                    };
                    SetAfter {
                        pin_set: set.name.clone(),
                        backups: spare.iter().map(|p| p.label.clone()).collect(),
                        warning,
                    }
                })
                .collect();
            out.push(Rotation {
                listener: name.clone(),
                cert: cert.field.clone(),
                from: before.to_prefixed(),
                to: after.to_prefixed(),
                at: crate::tls::fmt_time(now),
                pin_sets,
            });
        }
    }
    out
}

impl Rotation {
    /// One info line per pin set with its backups, and a warning where the backups ran out.
    pub fn log(&self) {
        for s in &self.pin_sets {
            tracing::info!(listener = %self.listener, cert = %self.cert, from = %self.from, to = %self.to,
                pin_set = %s.pin_set, backups = %crate::logfmt::LogList(&s.backups), "key rotated; these pins of the set are now backups");
            if let Some(w) = &s.warning {
                tracing::warn!(listener = %self.listener, pin_set = %s.pin_set, "{w}");
            }
        }
    }
}
