//! Reading `pins/*.toml` into pin sets; every error names the file and field.
//!
//! A set lists its pins, or names the app's own file (`from`, `domain`) and takes pins, kinds
//! and expiry from there. A frozen set (`frozen = "sha256:…"`, written by `export --freeze`)
//! must still hash to its digest: a shipped set cannot change.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::appfile::{AppFileLimit, MAX_APP_FILE_BYTES, read_app_pins};
use super::{AppOrigin, Pin, PinEntry, PinKind, PinMode, PinSet};
use crate::diag::{Kind, Problem, Problems};
use crate::files::Files;

/// The directory beside the config file that holds the pin sets.
pub const PIN_DIR: &str = "pins";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPinSet {
    #[serde(default)]
    description: String,
    expires: Option<toml::value::Datetime>,
    #[serde(default = "default_mode")]
    mode: RawMode,
    #[serde(default)]
    pin: Vec<RawPin>,
    from: Option<PathBuf>,
    domain: Option<String>,
    frozen: Option<String>,
    app_versions: Option<String>,
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
/// `base` is the directory that `source` and `from` paths are relative to (the config file's).
/// Warnings come back beside the sets.
pub fn load_pin_sets(
    dir: &Path,
    base: &Path,
    files: &mut Files,
) -> Result<(BTreeMap<String, PinSet>, Problems), Problems> {
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
            Ok((set, warnings)) => {
                problems.extend(warnings);
                sets.insert(name, set);
            }
            Err(p) => problems.extend(p),
        }
    }
    if problems.has_errors() {
        Err(problems)
    } else {
        Ok((sets, problems))
    }
}

/// One pin set and the warnings about it (from its app file).
fn load_one(
    name: &str,
    path: &Path,
    base: &Path,
    files: &mut Files,
) -> Result<(PinSet, Problems), Problems> {
    let bytes = files
        .read(path)
        .map_err(|e| Problem::error(Kind::File, path, "", format!("cannot read: {e}")))?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| Problem::error(Kind::Parse, path, "", "not UTF-8 text"))?;
    let raw: RawPinSet = crate::tomlfile::parse_toml(text, path)?;

    let mut problems = Problems::default();
    let toml_expires = match raw.expires {
        None => None,
        Some(dt) => match (dt.date, dt.time) {
            (Some(d), None) => time::Month::try_from(d.month)
                .ok()
                .and_then(|m| time::Date::from_calendar_date(i32::from(d.year), m, d.day).ok())
                .map(Some)
                .ok_or(()),
            _ => Err(()),
        }
        .map_err(|()| {
            Problem::error(
                Kind::Validation,
                path,
                "expires",
                "must be a date like 2027-06-30 (no time)",
            )
        })?,
    };
    let mode = match raw.mode {
        RawMode::Enforce => PinMode::Enforce,
        RawMode::Report => PinMode::Report,
    };
    let app_versions = match &raw.app_versions {
        None => None,
        Some(v) => match semver::VersionReq::parse(v) {
            Ok(r) => Some(r),
            Err(e) => {
                problems.push(Problem::error(
                    Kind::Validation,
                    path,
                    "app_versions",
                    format!("\"{v}\" is not a version range like \">=4.2.0, <5.0.0\": {e}"),
                ));
                None
            }
        },
    };

    // (pin, label, kind, source, file and field for messages)
    let mut candidates: Vec<(Pin, String, PinKind, Option<PathBuf>, PathBuf, String)> = Vec::new();
    let mut from = None;
    let expires;
    match (&raw.from, &raw.domain) {
        (Some(rel), Some(domain)) => {
            if !raw.pin.is_empty() {
                problems.push(Problem::error(
                    Kind::Validation,
                    path,
                    "pin",
                    format!(
                        "the pins come from `from` ({}); remove the [[pin]] entries or `from`",
                        rel.display()
                    ),
                ));
            }
            let app_file = base.join(rel);
            let domain = domain.trim_end_matches('.').to_ascii_lowercase();
            let data = match files.read_at_most(&app_file, MAX_APP_FILE_BYTES) {
                Ok(d) => d,
                Err(e) if e.kind() == std::io::ErrorKind::FileTooLarge => {
                    return Err(Problem::error(
                        Kind::Validation,
                        &app_file,
                        "",
                        format!(
                            "{e}: over the app file limit of {}",
                            AppFileLimit::Size.describe()
                        ),
                    )
                    .into());
                }
                Err(e) => {
                    return Err(Problem::error(
                        Kind::File,
                        path,
                        "from",
                        format!("cannot read {}: {e}", app_file.display()),
                    )
                    .into());
                }
            };
            let app = read_app_pins(&data, &domain).map_err(|e| {
                Problems::from(Problem::error(
                    Kind::Validation,
                    &app_file,
                    e.element,
                    e.message,
                ))
            })?;
            for w in &app.warnings {
                problems.push(Problem::warning(Kind::PinRules, &app_file, "", w.clone()));
            }
            expires = match (app.expires, toml_expires) {
                (Some(d), Some(_)) => {
                    problems.push(Problem::error(
                        Kind::Validation,
                        path,
                        "expires",
                        format!(
                            "the expiry comes from {} ({}: {d}); remove `expires` here",
                            app_file.display(),
                            app.element
                        ),
                    ));
                    d
                }
                (Some(d), None) | (None, Some(d)) => d,
                (None, None) => NEVER,
            };
            for p in app.pins {
                candidates.push((p.pin, p.label, p.kind, None, app_file.clone(), p.element));
            }
            from = Some(AppOrigin {
                file: app_file,
                domain,
                format: app.format,
                element: app.element,
            });
        }
        (Some(_), None) => {
            return Err(Problem::error(
                Kind::Validation,
                path,
                "domain",
                "is needed with `from`: the host name whose entry in the app file holds the pins",
            )
            .into());
        }
        (None, Some(_)) => {
            return Err(Problem::error(
                Kind::Validation,
                path,
                "from",
                "is needed with `domain`: the app file (network security config or Info.plist) to read the pins from",
            )
            .into());
        }
        (None, None) => {
            let Some(d) = toml_expires else {
                return Err(Problem::error(
                    Kind::Validation,
                    path,
                    "expires",
                    "must be a date like 2027-06-30 (no time)",
                )
                .into());
            };
            expires = d;
            if raw.pin.is_empty() {
                problems.push(Problem::error(
                    Kind::Validation,
                    path,
                    "pin",
                    "a pin set needs at least one [[pin]] (or `from` and `domain`: the app's own file)",
                ));
            }
            for (i, p) in raw.pin.into_iter().enumerate() {
                let field = format!("pin[{i}].sha256");
                match p.sha256.parse::<Pin>() {
                    Ok(pin) => candidates.push((
                        pin,
                        if p.label.is_empty() {
                            format!("pin[{i}]")
                        } else {
                            p.label
                        },
                        match p.kind {
                            RawKind::Key => PinKind::Key,
                            RawKind::Ca => PinKind::Ca,
                        },
                        p.source.map(|s| base.join(s)),
                        path.to_path_buf(),
                        field,
                    )),
                    Err(e) => problems.push(Problem::error(
                        Kind::Validation,
                        path,
                        field,
                        format!("\"{}\" {e}", p.sha256),
                    )),
                }
            }
        }
    }

    let mut pins: Vec<PinEntry> = Vec::with_capacity(candidates.len());
    for (pin, label, kind, source, file, field) in candidates {
        if pin.is_placeholder() {
            problems.push(Problem::error(
                Kind::PinRules,
                &file,
                field,
                format!("\"{pin}\" is a placeholder (one repeated byte or block), not a hash of a real key"),
            ));
            continue;
        }
        if pins.iter().any(|e| e.pin == pin) {
            problems.push(Problem::error(
                Kind::Validation,
                &file,
                field,
                format!("\"{pin}\" is listed twice"),
            ));
            continue;
        }
        pins.push(PinEntry {
            pin,
            label,
            kind,
            source,
        });
    }
    if problems.has_errors() {
        return Err(problems);
    }
    let set = PinSet {
        name: name.to_string(),
        file: path.to_path_buf(),
        description: raw.description,
        expires,
        mode,
        pins,
        from,
        frozen: raw.frozen,
        app_versions,
    };
    if let Some(frozen) = &set.frozen {
        check_frozen(&set, frozen, path)?;
    }
    Ok((set, problems))
}

/// "Never expires": Apple's NSPinnedDomains and an Android pin-set without `expiration`.
pub const NEVER: time::Date = time::macros::date!(9999 - 12 - 31);

/// A frozen set must still hash to the digest it shipped with.
fn check_frozen(set: &PinSet, frozen: &str, path: &Path) -> Result<(), Problems> {
    let well_formed = frozen.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    });
    if !well_formed {
        return Err(Problem::error(
            Kind::Validation,
            path,
            "frozen",
            format!("\"{frozen}\" is not \"sha256:\" and 64 lower-case hex digits (as `pinproxy export --freeze` writes it)"),
        )
        .into());
    }
    let now = set.digest();
    if now != frozen {
        let next = next_name(&set.name);
        return Err(Problem::error(
            Kind::PinRules,
            path,
            "frozen",
            format!(
                "pin set {} shipped with digest {frozen} (its pins and kinds now give {now}); a shipped set \
                 cannot change — the installed apps keep what they shipped: put the pins back, and make \
                 {}/{next}.toml for the next release",
                set.name,
                PIN_DIR
            ),
        )
        .into());
    }
    Ok(())
}

/// `app-4` → `app-5`; otherwise `NAME-next`.
fn next_name(name: &str) -> String {
    let digits = name.len() - name.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    let (stem, num) = name.split_at(name.len() - digits);
    match num.parse::<u64>() {
        Ok(n) if digits > 0 => format!("{stem}{}", n + 1),
        _ => format!("{name}-next"),
    }
}

/// Warnings for frozen sets whose `expires` moved between two loads: the apps keep the date
/// they shipped with, so only the proxy's own checks see the new one.
pub fn frozen_expiry_moves(
    running: &BTreeMap<String, PinSet>,
    next: &BTreeMap<String, PinSet>,
) -> Problems {
    let mut out = Problems::default();
    for (name, set) in next {
        let Some(old) = running.get(name) else {
            continue;
        };
        if set.frozen.is_some() && old.expires != set.expires {
            out.push(Problem::warning(
                Kind::PinRules,
                &set.file,
                "expires",
                format!(
                    "moved from {} to {} on frozen (shipped) pin set {name}: the installed apps keep the date they \
                     shipped with, so this changes only the proxy's expiry checks and alerts",
                    old.expires, set.expires
                ),
            ));
        }
    }
    out
}
