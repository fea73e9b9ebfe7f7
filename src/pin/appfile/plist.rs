//! Info.plist (XML or binary): TrustKit's `TSKConfiguration` → `TSKPinnedDomains` and Apple's
//! `NSAppTransportSecurity` → `NSPinnedDomains`, with the labels `pinproxy export` wrote.

use std::io::Cursor;

use plist::stream::{Event, Reader};
use plist::{Dictionary, Value};

use super::limits::Bounds;
use super::{AppFileError, AppFormat, AppPin, AppPins, no_entry, parse_date};
use crate::pin::{Pin, PinKind};

pub(super) fn plist_pins(bytes: &[u8], text: &str, domain: &str) -> Result<AppPins, AppFileError> {
    within_bounds(bytes)?;
    let value = Value::from_reader(Cursor::new(bytes))
        .map_err(|e| AppFileError::new("", format!("not a property list: {e}")))?;
    let root = value.as_dictionary().ok_or_else(|| {
        AppFileError::new("", "the top level of the property list is not a <dict>")
    })?;
    let labels = export_labels(text);
    let trustkit = root
        .get("TSKConfiguration")
        .map(|v| dict(v, "TSKConfiguration"))
        .transpose()?
        .and_then(|c| c.get("TSKPinnedDomains"))
        .map(|v| dict(v, "TSKConfiguration.TSKPinnedDomains"))
        .transpose()?;
    let apple = root
        .get("NSAppTransportSecurity")
        .map(|v| dict(v, "NSAppTransportSecurity"))
        .transpose()?
        .and_then(|c| c.get("NSPinnedDomains"))
        .map(|v| dict(v, "NSAppTransportSecurity.NSPinnedDomains"))
        .transpose()?;
    let tk = trustkit
        .map(|d| pick(d, domain, "TSKIncludeSubdomains"))
        .transpose()?
        .flatten();
    let ns = apple
        .map(|d| pick(d, domain, "NSIncludesSubdomains"))
        .transpose()?
        .flatten();
    match (tk, ns) {
        (Some(_), Some(_)) => Err(AppFileError::new(
            "",
            format!(
                "both TSKConfiguration and NSPinnedDomains pin \"{domain}\"; the app checks both, so give each its own pin set file"
            ),
        )),
        (Some((name, entry)), None) => trustkit_entry(name, entry, labels.as_deref()),
        (None, Some((name, entry))) => apple_entry(name, entry, labels.as_deref()),
        (None, None) => {
            let mut names: Vec<String> = Vec::new();
            names.extend(trustkit.into_iter().flat_map(|d| d.keys().cloned()));
            names.extend(apple.into_iter().flat_map(|d| d.keys().cloned()));
            Err(no_entry(
                domain,
                &names,
                "TSKConfiguration.TSKPinnedDomains or NSAppTransportSecurity.NSPinnedDomains",
            ))
        }
    }
}

/// Walks the plist's event stream (the `plist` readers keep their own stack, they do not
/// recurse) counting nesting and values, so a file nested too deep or a binary plist whose
/// shared references expand to too many values is refused before any `Value` is built. Once
/// it passes, building the `Value` (and dropping it, which recurses) stays within the depth.
fn within_bounds(bytes: &[u8]) -> Result<(), AppFileError> {
    let mut bounds = Bounds::default();
    for event in Reader::new(Cursor::new(bytes)) {
        match event {
            Err(e) => return Err(AppFileError::new("", format!("not a property list: {e}"))),
            Ok(Event::EndCollection) => bounds.close(),
            Ok(Event::StartArray(_) | Event::StartDictionary(_)) => bounds.value(true)?,
            Ok(_) => bounds.value(false)?,
        }
    }
    Ok(())
}

fn dict<'a>(v: &'a Value, at: &str) -> Result<&'a Dictionary, AppFileError> {
    v.as_dictionary()
        .ok_or_else(|| AppFileError::new(at, "is not a <dict>"))
}

/// The entry of `domains` the app uses for `domain`: the exact key, else the longest parent
/// whose `subdomains_key` is true.
fn pick<'a>(
    domains: &'a Dictionary,
    domain: &str,
    subdomains_key: &str,
) -> Result<Option<(&'a str, &'a Dictionary)>, AppFileError> {
    let mut best: Option<(bool, usize, &str, &Dictionary)> = None;
    for (name, v) in domains {
        let lower = name.trim_end_matches('.').to_ascii_lowercase();
        let entry = dict(v, name)?;
        let subdomains = entry
            .get(subdomains_key)
            .and_then(Value::as_boolean)
            .unwrap_or(false);
        let exact = lower == domain;
        if !(exact || (subdomains && domain.ends_with(&format!(".{lower}")))) {
            continue;
        }
        if best
            .as_ref()
            .is_none_or(|(e, len, _, _)| (exact, lower.len()) > (*e, *len))
        {
            best = Some((exact, lower.len(), name.as_str(), entry));
        }
    }
    Ok(best.map(|(_, _, n, d)| (n, d)))
}

fn trustkit_entry(
    name: &str,
    entry: &Dictionary,
    labels: Option<&[(String, PinKind)]>,
) -> Result<AppPins, AppFileError> {
    let at = format!("TSKConfiguration.TSKPinnedDomains.\"{name}\"");
    let hashes = entry
        .get("TSKPublicKeyHashes")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            AppFileError::new(
                &at,
                "has no TSKPublicKeyHashes array: the app does not pin this domain",
            )
        })?;
    let labels = labels.filter(|l| l.len() == hashes.len());
    let mut pins = Vec::new();
    for (i, h) in hashes.iter().enumerate() {
        let el = format!("{at}.TSKPublicKeyHashes[{i}]");
        let value = h
            .as_string()
            .ok_or_else(|| AppFileError::new(&el, "is not a <string>"))?;
        let pin: Pin = value
            .trim()
            .parse()
            .map_err(|e| AppFileError::new(&el, format!("\"{value}\" {e}")))?;
        let (label, kind) = labels
            .map(|l| l[i].clone())
            .unwrap_or_else(|| (format!("TSKPublicKeyHashes[{i}]"), PinKind::Key));
        pins.push(AppPin {
            pin,
            kind,
            label,
            element: el,
        });
    }
    if pins.is_empty() {
        return Err(AppFileError::new(
            format!("{at}.TSKPublicKeyHashes"),
            "is empty",
        ));
    }
    let expires = match entry.get("TSKExpirationDate") {
        None => None,
        Some(v) => {
            let s = v.as_string().unwrap_or("");
            Some(parse_date(s).ok_or_else(|| {
                AppFileError::new(
                    format!("{at}.TSKExpirationDate"),
                    format!("\"{s}\" is not a date like 2027-06-30"),
                )
            })?)
        }
    };
    let mut warnings = Vec::new();
    if entry.get("TSKEnforcePinning").and_then(Value::as_boolean) == Some(false) {
        warnings.push(format!(
            "{at}.TSKEnforcePinning is false: the app reports a pin mismatch but still connects"
        ));
    }
    Ok(AppPins {
        format: AppFormat::TrustKit,
        element: at,
        pins,
        expires,
        warnings,
    })
}

fn apple_entry(
    name: &str,
    entry: &Dictionary,
    labels: Option<&[(String, PinKind)]>,
) -> Result<AppPins, AppFileError> {
    let at = format!("NSAppTransportSecurity.NSPinnedDomains.\"{name}\"");
    let mut pins = Vec::new();
    for (key, kind) in [
        ("NSPinnedCAIdentities", PinKind::Ca),
        ("NSPinnedLeafIdentities", PinKind::Key),
    ] {
        let Some(list) = entry.get(key) else { continue };
        let list = list
            .as_array()
            .ok_or_else(|| AppFileError::new(format!("{at}.{key}"), "is not an <array>"))?;
        // The export's header lists the labels in pin set order; each array keeps that order.
        let names: Vec<&str> = labels
            .into_iter()
            .flatten()
            .filter(|(_, k)| *k == kind)
            .map(|(l, _)| l.as_str())
            .collect();
        let names = Some(names).filter(|n| n.len() == list.len());
        for (i, item) in list.iter().enumerate() {
            let el = format!("{at}.{key}[{i}]");
            let value = item
                .as_dictionary()
                .and_then(|d| d.get("SPKI-SHA256-BASE64"))
                .and_then(Value::as_string)
                .ok_or_else(|| {
                    AppFileError::new(&el, "is not a <dict> with a SPKI-SHA256-BASE64 <string>")
                })?;
            let pin: Pin = value
                .trim()
                .parse()
                .map_err(|e| AppFileError::new(&el, format!("\"{value}\" {e}")))?;
            pins.push(AppPin {
                pin,
                kind,
                label: names
                    .as_ref()
                    .map_or_else(|| format!("{key}[{i}]"), |n| n[i].to_string()),
                element: el,
            });
        }
    }
    if pins.is_empty() {
        return Err(AppFileError::new(
            &at,
            "has neither NSPinnedLeafIdentities nor NSPinnedCAIdentities: the app does not pin this domain",
        ));
    }
    Ok(AppPins {
        format: AppFormat::Apple,
        element: at,
        pins,
        expires: None,
        warnings: Vec::new(),
    })
}

/// The labels and kinds of the header comment `pinproxy export` writes into a plist:
/// "…; pins in order: label (key), label (ca)".
pub(super) fn export_labels(text: &str) -> Option<Vec<(String, PinKind)>> {
    let start = text.find("<!-- pinproxy pin set ")?;
    let comment = &text[start..start + text[start..].find("-->")?];
    let list = comment[comment.find("; pins in order: ")? + "; pins in order: ".len()..].trim();
    let mut out = Vec::new();
    let mut rest = list;
    while !rest.is_empty() {
        let (k, kind) = [(" (key)", PinKind::Key), (" (ca)", PinKind::Ca)]
            .into_iter()
            .filter_map(|(m, kind)| rest.find(m).map(|i| (i, m, kind)))
            .min_by_key(|(i, _, _)| *i)
            .map(|(i, m, kind)| ((i, m.len()), kind))?;
        out.push((rest[..k.0].to_string(), kind));
        rest = rest[k.0 + k.1..].trim_start_matches(", ");
    }
    Some(out)
}
