//! Reading `pins/*.toml` into pin sets; every error names the file and field.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{Pin, PinEntry, PinKind, PinMode, PinSet};
use crate::diag::{Kind, Problem, Problems};
use crate::files::Files;

/// The directory beside the config file that holds the pin sets.
pub const PIN_DIR: &str = "pins";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPinSet {
    #[serde(default)]
    description: String,
    expires: toml::value::Datetime,
    #[serde(default = "default_mode")]
    mode: RawMode,
    #[serde(default)]
    pin: Vec<RawPin>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum RawMode {
    Enforce,
    Report,
}

fn default_mode() -> RawMode {
    RawMode::Enforce
}

#[derive(Deserialize, Clone, Copy, Default)]
#[serde(rename_all = "lowercase")]
enum RawKind {
    #[default]
    Key,
    Ca,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPin {
    sha256: String,
    #[serde(default)]
    label: String,
    #[serde(default)]
    kind: RawKind,
    source: Option<PathBuf>,
}

/// Loads every `*.toml` in `dir` as a pin set named after the file; other files are ignored.
/// `base` is the directory that `source` paths are relative to (the config file's).
pub fn load_pin_sets(
    dir: &Path,
    base: &Path,
    files: &mut Files,
) -> Result<BTreeMap<String, PinSet>, Problems> {
    let mut problems = Problems::default();
    let mut sets = BTreeMap::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            files.note_missing(dir);
            return Err(Problem::error(
                Kind::File,
                dir,
                "",
                format!("cannot read the pin directory: {e}"),
            )
            .into());
        }
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    paths.sort();
    for path in paths {
        let Some(name) = path.file_stem().map(|s| s.to_string_lossy().into_owned()) else {
            continue;
        };
        match load_one(&name, &path, base, files) {
            Ok(set) => {
                sets.insert(name, set);
            }
            Err(p) => problems.extend(p),
        }
    }
    if problems.has_errors() {
        Err(problems)
    } else {
        Ok(sets)
    }
}

fn load_one(name: &str, path: &Path, base: &Path, files: &mut Files) -> Result<PinSet, Problems> {
    let bytes = files
        .read(path)
        .map_err(|e| Problem::error(Kind::File, path, "", format!("cannot read: {e}")))?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| Problem::error(Kind::Parse, path, "", "not UTF-8 text"))?;
    let raw: RawPinSet = crate::config::parse_toml(text, path)?;

    let mut problems = Problems::default();
    let expires = match (raw.expires.date, raw.expires.time) {
        (Some(d), None) => time::Month::try_from(d.month)
            .ok()
            .and_then(|m| time::Date::from_calendar_date(i32::from(d.year), m, d.day).ok()),
        _ => None,
    };
    let Some(expires) = expires else {
        return Err(Problem::error(
            Kind::Validation,
            path,
            "expires",
            "must be a date like 2027-06-30 (no time)",
        )
        .into());
    };
    let mode = match raw.mode {
        RawMode::Enforce => PinMode::Enforce,
        RawMode::Report => PinMode::Report,
    };
    if raw.pin.is_empty() {
        problems.push(Problem::error(
            Kind::Validation,
            path,
            "pin",
            "a pin set needs at least one [[pin]]",
        ));
    }
    let mut pins = Vec::with_capacity(raw.pin.len());
    for (i, p) in raw.pin.into_iter().enumerate() {
        let field = format!("pin[{i}].sha256");
        let pin: Pin = match p.sha256.parse() {
            Ok(pin) => pin,
            Err(e) => {
                problems.push(Problem::error(
                    Kind::Validation,
                    path,
                    field,
                    format!("\"{}\" {e}", p.sha256),
                ));
                continue;
            }
        };
        if pin.is_placeholder() {
            problems.push(Problem::error(
                Kind::PinRules,
                path,
                field,
                format!("\"{pin}\" is a placeholder (one repeated byte or block), not a hash of a real key"),
            ));
            continue;
        }
        if pins.iter().any(|e: &PinEntry| e.pin == pin) {
            problems.push(Problem::error(
                Kind::Validation,
                path,
                field,
                format!("\"{pin}\" is listed twice"),
            ));
            continue;
        }
        pins.push(PinEntry {
            pin,
            label: if p.label.is_empty() {
                format!("pin[{i}]")
            } else {
                p.label
            },
            kind: match p.kind {
                RawKind::Key => PinKind::Key,
                RawKind::Ca => PinKind::Ca,
            },
            source: p.source.map(|s| base.join(s)),
        });
    }
    if problems.has_errors() {
        return Err(problems);
    }
    Ok(PinSet {
        name: name.to_string(),
        file: path.to_path_buf(),
        description: raw.description,
        expires,
        mode,
        pins,
    })
}
