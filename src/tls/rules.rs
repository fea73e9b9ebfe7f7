//! The rules that protect the apps (DESIGN.md §4), checked where certificates and pin sets meet.
//!
//! A live listener pin set must match every served chain (a `key` pin on the leaf, a `ca` pin
//! above it), must keep a backup pin that no chain uses, and every pin with a `source` must hash
//! to what is written. Breaking a rule is an error, never a warning.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use crate::config::{Config, Listener};
use crate::diag::{Kind, Problem, Problems};
use crate::files::Files;
use crate::pin::{CertInfo, Pin, PinKind, PinSet, material_from_bytes};

/// Where on a served chain a certificate stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Position {
    Leaf,
    Intermediate,
    Anchor,
}

impl Position {
    pub fn as_str(self) -> &'static str {
        match self {
            Position::Leaf => "leaf",
            Position::Intermediate => "intermediate",
            Position::Anchor => "anchor",
        }
    }

    /// Position of index `i` on a path of `len` certificates whose last one is the anchor when
    /// `has_anchor`.
    pub fn of(i: usize, len: usize, has_anchor: bool) -> Position {
        if i == 0 {
            Position::Leaf
        } else if has_anchor && i + 1 == len {
            Position::Anchor
        } else {
            Position::Intermediate
        }
    }
}

/// One pin of a pin set that matched a served chain, and where.
#[derive(Debug, Clone, Serialize)]
pub struct MatchedPin {
    pub label: String,
    pub pin: String,
    pub position: Position,
    pub subject: String,
}

/// How one pin set matches one served chain: the answer to "renewal or rotation?".
#[derive(Debug, Clone, Serialize)]
pub struct ChainMatch {
    pub cert: String,
    pub pin_set: String,
    pub live: bool,
    pub matched: Vec<MatchedPin>,
}

/// A served chain as the rules see it: leaf first, the anchor last when configured.
pub struct ServedPath<'a> {
    pub field: &'a str,
    pub path: &'a [CertInfo],
    pub has_anchor: bool,
}

/// Checks rules 1, 2 and 5 for one listener and reports which pins match where.
pub fn check_listener_pins(
    config: &Config,
    listener: &Listener,
    served: &[ServedPath<'_>],
    now: i64,
) -> (Problems, Vec<ChainMatch>) {
    let mut problems = Problems::default();
    let mut matches = Vec::new();
    let served_pins: Vec<Pin> = served
        .iter()
        .flat_map(|s| s.path.iter().map(|c| c.pin))
        .collect();
    for name in &listener.pin_sets {
        let Some(set) = config.pin_sets.get(name) else {
            continue;
        };
        // Expiry warnings come from the inventory's judge, for listener and upstream sets alike.
        let live = set.is_live(now, config.expiry.pin_set_grace);
        for s in served {
            let mut matched = Vec::new();
            for (i, cert) in s.path.iter().enumerate() {
                let pos = Position::of(i, s.path.len(), s.has_anchor);
                for (k, entry) in set.pins.iter().enumerate() {
                    if entry.pin != cert.pin {
                        continue;
                    }
                    let wrong_kind = match (entry.kind, pos) {
                        // Read from an Android or TrustKit file: the app accepts it anywhere.
                        _ if !set.kinds_checked() => None,
                        (PinKind::Key, Position::Leaf)
                        | (PinKind::Ca, Position::Intermediate | Position::Anchor) => None,
                        (PinKind::Key, _) => Some("ca"),
                        (PinKind::Ca, Position::Leaf) => Some("key"),
                    };
                    if let Some(kind) = wrong_kind {
                        problems.push(Problem::error(
                            Kind::PinRules,
                            &set.file,
                            format!("pin[{k}].kind"),
                            format!(
                                "pin \"{}\" matches the {} {} of {}, so write kind = \"{kind}\"",
                                entry.label,
                                pos.as_str(),
                                cert.subject,
                                s.field
                            ),
                        ));
                        continue;
                    }
                    matched.push(MatchedPin {
                        label: entry.label.clone(),
                        pin: entry.pin.to_base64(),
                        position: pos,
                        subject: cert.subject.clone(),
                    });
                }
            }
            if live && matched.is_empty() {
                let leaf = &s.path[0];
                problems.push(Problem::error(
                    Kind::PinRules,
                    &config.file,
                    format!("{}.chain", s.field),
                    format!(
                        "no pin of pin set \"{name}\" ({}) matches this chain: leaf {} has key {}; apps that ship \
                         \"{name}\" would refuse it. Serve a key those apps already pin: renew on the same key, or \
                         switch to a backup that shipped in the set ({}). Adding this key to {} would not help: it \
                         changes what the proxy checks, not what the installed apps pin",
                        set.file.display(),
                        leaf.subject,
                        leaf.pin.to_prefixed(),
                        shipped_keys(set),
                        set.file.display(),
                    ),
                ));
            }
            matches.push(ChainMatch {
                cert: s.field.to_string(),
                pin_set: name.clone(),
                live,
                matched,
            });
        }
        if live && set.backups(&served_pins).next().is_none() {
            problems.push(Problem::error(
                Kind::PinRules,
                &set.file,
                "pin",
                format!(
                    "every pin of \"{name}\" is used by a served chain of listener \"{}\"; add a backup pin for a \
                     key kept offline (pinproxy keygen), or a lost key bricks every app that ships this set",
                    listener.name
                ),
            ));
        }
    }
    (problems, matches)
}

/// The `key` pins of a set, by label, for the hint of rule 1.
fn shipped_keys(set: &PinSet) -> String {
    let keys: Vec<String> = set
        .pins
        .iter()
        .filter(|p| p.kind == PinKind::Key)
        .map(|p| format!("\"{}\"", p.label))
        .collect();
    if keys.is_empty() {
        "it has no kind = \"key\" pin".to_string()
    } else {
        keys.join(", ")
    }
}

/// Rule 2, last part: a pin with `source` must hash to the value written.
pub fn check_pin_sources(sets: &BTreeMap<String, PinSet>, files: &mut Files) -> Problems {
    let mut problems = Problems::default();
    for set in sets.values() {
        for (k, entry) in set.pins.iter().enumerate() {
            let Some(source) = &entry.source else {
                continue;
            };
            match source_pin(source, files) {
                Ok(pins) if pins.contains(&entry.pin) => {}
                Ok(pins) => problems.push(Problem::error(
                    Kind::PinRules,
                    &set.file,
                    format!("pin[{k}].sha256"),
                    format!(
                        "\"{}\" is not the pin of {} (which is {}); copy the value from `pinproxy pin {}`",
                        entry.pin,
                        source.display(),
                        pins.iter().map(Pin::to_base64).collect::<Vec<_>>().join(", "),
                        source.display()
                    ),
                )),
                Err(msg) => problems.push(Problem::error(
                    Kind::File,
                    &set.file,
                    format!("pin[{k}].source"),
                    format!("{}: {msg}", source.display()),
                )),
            }
        }
    }
    problems
}

fn source_pin(source: &Path, files: &mut Files) -> Result<Vec<Pin>, String> {
    let data = files
        .read(source)
        .map_err(|e| format!("cannot read: {e}"))?;
    let material = material_from_bytes(&data).map_err(|e| e.to_string())?;
    Ok(material.iter().map(|m| m.pin()).collect())
}
