//! What a key rotation leaves behind: when a reload moves a served certificate to another key,
//! which pins of each live pin set are now backups, and a warning when the only backup left is
//! the key just rotated away from — the apps then have no key to move to if the new one is lost.

use serde::Serialize;

use crate::clock::unix_now;
use crate::pin::{Pin, PinSet};
use crate::snapshot::Snapshot;
use crate::tls::LoadedCert;

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

/// What a reload did to one served certificate, told by its identity (leaf key SPKI and
/// server names), never by its place in the `[[listener.cert]]` list: reordering the blocks
/// changes nothing.
#[derive(Debug, Clone, Copy)]
pub enum CertChange<'a> {
    /// The same leaf on the same key for the same names.
    Same,
    /// A new leaf on the key served before (no app release needed).
    Renewal,
    /// The names served before on `from`'s key now on another key (a shipped backup).
    Rotation { from: &'a LoadedCert },
    /// Neither its key nor its names were served before.
    New,
}

impl CertChange<'_> {
    /// The word the reload report uses.
    pub fn as_str(&self) -> &'static str {
        match self {
            CertChange::Same => "same",
            CertChange::Renewal => "renewal",
            CertChange::Rotation { .. } => "rotation",
            CertChange::New => "new",
        }
    }
}

/// How `cert` relates to the certificates the listener served before (`before`): first the
/// one with its key and names, then one on its key (names edited on renewal), then one for its
/// names on another key.
pub fn change<'a>(before: &'a [LoadedCert], cert: &LoadedCert) -> CertChange<'a> {
    let names = sorted_names(cert);
    let key = cert.path[0].pin;
    let same_key = |o: &&LoadedCert| o.path[0].pin == key;
    let old = before
        .iter()
        .filter(same_key)
        .find(|o| sorted_names(o) == names)
        .or_else(|| before.iter().find(same_key));
    if let Some(old) = old {
        // The whole leaf, not the serial: a CA may derive serials from the key.
        return if old.key.cert[0] == cert.key.cert[0] {
            CertChange::Same
        } else {
            CertChange::Renewal
        };
    }
    match before.iter().find(|o| sorted_names(o) == names) {
        Some(from) => CertChange::Rotation { from },
        None => CertChange::New,
    }
}

fn sorted_names(cert: &LoadedCert) -> Vec<&str> {
    let mut v: Vec<&str> = cert.server_names.iter().map(String::as_str).collect();
    v.sort_unstable();
    v
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
        let Some(listener) = next.config.listeners.iter().find(|l| &l.name == name) else {
            continue;
        };
        // Backups for this listener's served keys, as rule 2 counts them.
        let served = tls.served_pins();
        for cert in &tls.certs {
            let CertChange::Rotation { from } = change(&old.certs, cert) else {
                continue;
            };
            let before = from.path[0].pin;
            let after = cert.path[0].pin;
            let pin_sets = listener
                .pin_sets
                .iter()
                .filter_map(|n| next.config.pin_sets.get(n))
                .filter(|s| s.is_live(now, grace))
                .map(|set| set_after(set, &served, before))
                .collect();
            out.push(Rotation {
                listener: name.clone(),
                cert: cert.field.clone(),
                from: before.to_prefixed(),
                to: after.to_prefixed(),
                at: crate::clock::fmt_time(now),
                pin_sets,
            });
        }
    }
    out
}

fn set_after(set: &PinSet, served: &[Pin], before: Pin) -> SetAfter {
    let spare: Vec<_> = set.backups(served).collect();
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
