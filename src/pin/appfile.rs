//! Pins read from the file an app is built from, so the proxy checks the pins the apps carry
//! rather than a copy that can drift: Android's network security config, and an Info.plist with
//! TrustKit's `TSKConfiguration` or Apple's `NSAppTransportSecurity` → `NSPinnedDomains` (XML or
//! binary).
//!
//! [`read_app_pins`] picks the entry an app uses for one domain (exact name first, then the
//! longest parent that includes subdomains, as Android and TrustKit do) and returns its pins,
//! their kinds where the format says them, and the expiry. Every error names the element, with
//! its line in XML files. Pure: bytes in, pins out; the caller reads the file.

use std::io::Cursor;

use plist::{Dictionary, Value};
use roxmltree::{Document, Node};

use super::{Pin, PinKind};

/// The client format a pin set was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppFormat {
    /// `res/xml/network_security_config.xml`.
    Android,
    /// Info.plist `TSKConfiguration`.
    TrustKit,
    /// Info.plist `NSAppTransportSecurity` → `NSPinnedDomains`.
    Apple,
}

impl AppFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            AppFormat::Android => "android",
            AppFormat::TrustKit => "trustkit",
            AppFormat::Apple => "apple",
        }
    }

    /// Whether the file says which pins are leaf keys and which are CAs. Android and TrustKit
    /// accept a pin anywhere on the chain, so their pins carry no kind to check.
    pub fn has_kinds(self) -> bool {
        self == AppFormat::Apple
    }
}

/// One pin as the app file has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppPin {
    pub pin: Pin,
    pub kind: PinKind,
    pub label: String,
    /// The element it was read from, for messages.
    pub element: String,
}

/// The pins an app uses for one domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppPins {
    pub format: AppFormat,
    /// The entry the pins come from, e.g. `network-security-config.domain-config[1]` (line 4).
    pub element: String,
    pub pins: Vec<AppPin>,
    /// After this date the app stops pinning; `None`: the pins never expire.
    pub expires: Option<time::Date>,
    /// Things the operator should know (a trust anchor that overrides the pins, reporting only).
    pub warnings: Vec<String>,
}

/// What is wrong with an app file, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct AppFileError {
    /// Dotted path of the element, empty for the whole file.
    pub element: String,
    pub message: String,
}

impl AppFileError {
    fn new(element: impl Into<String>, message: impl Into<String>) -> Self {
        AppFileError {
            element: element.into(),
            message: message.into(),
        }
    }
}

/// The pins the app built from `bytes` uses for `domain` (lower-case DNS name).
pub fn read_app_pins(bytes: &[u8], domain: &str) -> Result<AppPins, AppFileError> {
    if bytes.starts_with(b"bplist") {
        return plist_pins(bytes, "", domain);
    }
    let text = std::str::from_utf8(bytes)
        .map_err(|_| AppFileError::new("", "neither UTF-8 XML nor a binary property list"))?;
    if text.contains("<network-security-config") {
        android(text, domain)
    } else if text.contains("<plist") {
        plist_pins(bytes, text, domain)
    } else {
        Err(AppFileError::new(
            "",
            "neither an Android network security config (<network-security-config>) nor an Info.plist (<plist>)",
        ))
    }
}

// ---- Android -------------------------------------------------------------------------------

fn android(text: &str, domain: &str) -> Result<AppPins, AppFileError> {
    let doc = Document::parse(text)
        .map_err(|e| AppFileError::new("", format!("not well-formed XML: {e}")))?;
    let root = doc.root_element();
    if root.tag_name().name() != "network-security-config" {
        return Err(AppFileError::new(
            "",
            format!(
                "the root element is <{}>, not <network-security-config>",
                root.tag_name().name()
            ),
        ));
    }
    // (exact match, matched name length, the <domain-config>): exact beats subdomain, then longest.
    let mut best: Option<(bool, usize, Node<'_, '_>)> = None;
    let mut names = Vec::new();
    for config in root
        .descendants()
        .filter(|n| n.has_tag_name("domain-config"))
        .filter(|n| !n.ancestors().any(|a| a.has_tag_name("debug-overrides")))
    {
        for d in config.children().filter(|n| n.has_tag_name("domain")) {
            let name = d
                .text()
                .unwrap_or("")
                .trim()
                .trim_end_matches('.')
                .to_ascii_lowercase();
            let subdomains = d.attribute("includeSubdomains") == Some("true");
            let exact = name == domain;
            let under = subdomains && domain.ends_with(&format!(".{name}"));
            names.push(name.clone());
            if !(exact || under) {
                continue;
            }
            let better = match &best {
                None => true,
                Some((e, len, _)) => (exact, name.len()) > (*e, *len),
            };
            if better {
                best = Some((exact, name.len(), config));
            }
        }
    }
    let Some((_, _, config)) = best else {
        return Err(no_entry(domain, &names, "<domain-config>"));
    };
    let entry = element_path(&doc, config);
    // A nested <domain-config> inherits what it does not set from the one around it.
    let Some(pin_set) = config
        .ancestors()
        .filter(|n| n.has_tag_name("domain-config"))
        .find_map(|c| c.children().find(|n| n.has_tag_name("pin-set")))
    else {
        return Err(AppFileError::new(
            entry,
            format!(
                "the <domain-config> for \"{domain}\" has no <pin-set>, nor has one around it: the app does not pin this domain"
            ),
        ));
    };
    let set_path = element_path(&doc, pin_set);
    let expires = match pin_set.attribute("expiration") {
        None => None,
        Some(v) => Some(parse_date(v).ok_or_else(|| {
            AppFileError::new(
                &set_path,
                format!("expiration=\"{v}\" is not a date like 2027-06-30"),
            )
        })?),
    };
    let mut pins = Vec::new();
    for (i, p) in pin_set
        .children()
        .filter(|n| n.has_tag_name("pin"))
        .enumerate()
    {
        let at = element_path(&doc, p);
        let digest = p.attribute("digest").unwrap_or("");
        if !digest.eq_ignore_ascii_case("SHA-256") {
            return Err(AppFileError::new(
                at,
                format!("digest=\"{digest}\": Android pins are SHA-256 only"),
            ));
        }
        let value = p.text().unwrap_or("").trim();
        let pin: Pin = value
            .parse()
            .map_err(|e| AppFileError::new(&at, format!("\"{value}\" {e}")))?;
        // `pinproxy export` writes "<!-- label (kind) -->" before each pin: take both back.
        let (label, kind) = preceding_comment(p)
            .and_then(|c| label_and_kind(c.trim()))
            .unwrap_or_else(|| (format!("pin[{i}] (line {})", line(&doc, p)), PinKind::Key));
        pins.push(AppPin {
            pin,
            kind,
            label,
            element: at,
        });
    }
    if pins.is_empty() {
        return Err(AppFileError::new(set_path, "the <pin-set> holds no <pin>"));
    }
    let mut warnings = Vec::new();
    let anchors = config
        .ancestors()
        .filter(|n| n.has_tag_name("domain-config"))
        .find_map(|c| c.children().find(|n| n.has_tag_name("trust-anchors")))
        .or_else(|| {
            root.children()
                .find(|n| n.has_tag_name("base-config"))
                .and_then(|b| b.children().find(|n| n.has_tag_name("trust-anchors")))
        });
    for c in anchors
        .into_iter()
        .flat_map(|a| a.children())
        .filter(|n| n.has_tag_name("certificates"))
        .filter(|n| n.attribute("overridePins") == Some("true"))
    {
        warnings.push(format!(
            "{} (line {}): overridePins=\"true\": the app accepts chains to the CAs of src=\"{}\" without checking these pins",
            element_path(&doc, c),
            line(&doc, c),
            c.attribute("src").unwrap_or("")
        ));
    }
    Ok(AppPins {
        format: AppFormat::Android,
        element: format!("{entry} (line {})", line(&doc, config)),
        pins,
        expires,
        warnings,
    })
}

/// `network-security-config.domain-config[1].pin-set.pin[0]`: tag names with their index among
/// siblings of the same name where there can be several.
fn element_path(_doc: &Document<'_>, node: Node<'_, '_>) -> String {
    let mut parts: Vec<String> = Vec::new();
    for n in node.ancestors().filter(Node::is_element) {
        let tag = n.tag_name().name();
        let repeatable = matches!(tag, "domain-config" | "pin" | "certificates" | "domain");
        if repeatable {
            let i = n
                .prev_siblings()
                .filter(|s| s.is_element() && s.tag_name().name() == tag)
                .count()
                - 1;
            parts.push(format!("{tag}[{i}]"));
        } else {
            parts.push(tag.to_string());
        }
    }
    parts.reverse();
    parts.join(".")
}

fn line(doc: &Document<'_>, node: Node<'_, '_>) -> u32 {
    doc.text_pos_at(node.range().start).row
}

/// The comment right before `node`, whitespace between them skipped.
fn preceding_comment<'a>(node: Node<'a, 'a>) -> Option<&'a str> {
    node.prev_siblings()
        .skip(1)
        .find(|n| !(n.is_text() && n.text().is_some_and(|t| t.trim().is_empty())))
        .filter(Node::is_comment)
        .and_then(|n| n.text())
}

/// "label (key)" or "label (ca)", as `pinproxy export` writes them.
fn label_and_kind(text: &str) -> Option<(String, PinKind)> {
    if let Some(label) = text.strip_suffix(" (key)") {
        Some((label.to_string(), PinKind::Key))
    } else {
        text.strip_suffix(" (ca)")
            .map(|label| (label.to_string(), PinKind::Ca))
    }
}

// ---- Info.plist ------------------------------------------------------------------------------

fn plist_pins(bytes: &[u8], text: &str, domain: &str) -> Result<AppPins, AppFileError> {
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
        let mut names = labels
            .into_iter()
            .flatten()
            .filter(|(_, k)| *k == kind)
            .map(|(l, _)| l.clone());
        let names: Vec<String> = names.by_ref().collect();
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
                    .map(|n| n[i].clone())
                    .unwrap_or_else(|| format!("{key}[{i}]")),
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
fn export_labels(text: &str) -> Option<Vec<(String, PinKind)>> {
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

fn no_entry(domain: &str, names: &[String], what: &str) -> AppFileError {
    let list = if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    };
    AppFileError::new(
        "",
        format!("no {what} entry covers \"{domain}\" (entries for: {list})"),
    )
}

fn parse_date(s: &str) -> Option<time::Date> {
    time::Date::parse(
        s.trim(),
        time::macros::format_description!("[year]-[month]-[day]"),
    )
    .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "tM/u/k5HeJDvkIGDie9SHfQDQ7YyORlmFwn21Gyen0g=";
    const B: &str = "ZHWbyPsLHYRcwbW4Jmib8fxi16zaENPKDS1DCV4tSqM=";

    #[test]
    fn nested_android_domain_config_inherits_the_pin_set_and_exact_beats_subdomains() {
        let xml = format!(
            r#"<?xml version="1.0" encoding="utf-8"?>
<network-security-config>
  <base-config><trust-anchors><certificates src="system"/></trust-anchors></base-config>
  <domain-config>
    <domain includeSubdomains="true">example.com</domain>
    <trust-anchors><certificates src="user" overridePins="true"/></trust-anchors>
    <pin-set expiration="2027-06-30"><pin digest="SHA-256">{A}</pin><pin digest="SHA-256">{B}</pin></pin-set>
    <domain-config>
      <domain>api.example.com</domain>
    </domain-config>
  </domain-config>
  <domain-config><domain includeSubdomains="true">other.org</domain>
    <pin-set><pin digest="SHA-256">{B}</pin></pin-set></domain-config>
</network-security-config>"#
        );
        let got = read_app_pins(xml.as_bytes(), "api.example.com").expect("pins");
        assert_eq!(got.format, AppFormat::Android);
        assert!(
            got.element
                .starts_with("network-security-config.domain-config[0].domain-config[0]"),
            "{}",
            got.element
        );
        assert_eq!(got.pins.len(), 2);
        assert_eq!(
            got.expires.map(|d| d.to_string()).as_deref(),
            Some("2027-06-30")
        );
        assert!(
            got.warnings[0].contains("overridePins"),
            "{:?}",
            got.warnings
        );
        let sub = read_app_pins(xml.as_bytes(), "x.other.org").expect("subdomain");
        assert_eq!(sub.pins.len(), 1);
        assert_eq!(sub.expires, None);
        let err = read_app_pins(xml.as_bytes(), "example.net").expect_err("no entry");
        assert!(
            err.message
                .contains("example.com, api.example.com, other.org"),
            "{err}"
        );
    }

    #[test]
    fn a_bad_android_pin_names_its_element() {
        let xml = format!(
            r#"<network-security-config><domain-config><domain>a.example</domain>
<pin-set><pin digest="SHA-256">{A}</pin><pin digest="SHA-1">{B}</pin></pin-set></domain-config></network-security-config>"#
        );
        let err = read_app_pins(xml.as_bytes(), "a.example").expect_err("sha-1");
        assert_eq!(
            err.element,
            "network-security-config.domain-config[0].pin-set.pin[1]"
        );
        assert!(err.message.contains("SHA-256 only"), "{err}");
    }

    #[test]
    fn export_header_labels_split_on_kinds() {
        let text = "<!-- pinproxy pin set \"a\", expires 2027-06-30; pins in order: current key, certs/api.key (key), backup (key), root (ca) -->";
        let got = export_labels(text).expect("labels");
        assert_eq!(
            got,
            vec![
                ("current key, certs/api.key".to_string(), PinKind::Key),
                ("backup".to_string(), PinKind::Key),
                ("root".to_string(), PinKind::Ca)
            ]
        );
    }

    #[test]
    fn trustkit_picks_the_longest_parent_with_subdomains_and_reads_binary_plists() {
        let xml = format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<plist version="1.0"><dict>
<key>TSKConfiguration</key><dict><key>TSKPinnedDomains</key><dict>
  <key>example.com</key><dict><key>TSKIncludeSubdomains</key><true/>
    <key>TSKPublicKeyHashes</key><array><string>{A}</string></array></dict>
  <key>api.example.com</key><dict><key>TSKIncludeSubdomains</key><true/><key>TSKEnforcePinning</key><false/>
    <key>TSKExpirationDate</key><string>2027-06-30</string>
    <key>TSKPublicKeyHashes</key><array><string>{A}</string><string>{B}</string></array></dict>
</dict></dict>
<key>NSAppTransportSecurity</key><dict><key>NSPinnedDomains</key><dict>
  <key>cdn.example.org</key><dict><key>NSPinnedCAIdentities</key><array><dict><key>SPKI-SHA256-BASE64</key><string>{B}</string></dict></array></dict>
</dict></dict>
</dict></plist>"#
        );
        let got = read_app_pins(xml.as_bytes(), "v2.api.example.com").expect("pins");
        assert_eq!(got.format, AppFormat::TrustKit);
        assert_eq!(
            got.element,
            "TSKConfiguration.TSKPinnedDomains.\"api.example.com\""
        );
        assert_eq!(got.pins.len(), 2);
        assert!(got.warnings[0].contains("TSKEnforcePinning is false"));

        let ns = read_app_pins(xml.as_bytes(), "cdn.example.org").expect("ATS entry");
        assert_eq!(ns.format, AppFormat::Apple);
        assert_eq!(ns.pins[0].kind, PinKind::Ca);
        assert_eq!(ns.expires, None);

        let value = Value::from_reader(Cursor::new(xml.as_bytes())).expect("xml plist");
        let mut binary = Vec::new();
        value.to_writer_binary(&mut binary).expect("binary plist");
        let got = read_app_pins(&binary, "api.example.com").expect("binary");
        assert_eq!(got.pins[1].label, "TSKPublicKeyHashes[1]");
        let err = read_app_pins(&binary, "example.net").expect_err("no entry");
        assert!(
            err.message
                .contains("example.com, api.example.com, cdn.example.org"),
            "{err}"
        );
    }
}
