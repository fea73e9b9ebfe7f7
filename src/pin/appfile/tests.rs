//! The readers against hand-written app files: nesting, subdomains, overrides, binary plists.

#![cfg(test)]

use std::io::Cursor;

use ::plist::Value;

use super::plist::export_labels;
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

/// A binary plist of `levels` arrays, each holding `refs` references to the next one (one
/// reference per level: plain nesting; two: every level doubles what the reader expands).
fn bplist_chain(levels: usize, refs: usize) -> Vec<u8> {
    let ref_size: usize = if levels < 255 { 1 } else { 4 };
    let be = |v: usize, n: usize| v.to_be_bytes()[8 - n..].to_vec();
    let mut out = b"bplist00".to_vec();
    let mut offsets = Vec::new();
    for i in 0..levels {
        offsets.push(out.len());
        out.push(0xa0 | refs as u8);
        for _ in 0..refs {
            out.extend(be(i + 1, ref_size));
        }
    }
    offsets.push(out.len());
    out.push(0x08); // false: the innermost value
    let table = out.len();
    for o in &offsets {
        out.extend(be(*o, 8));
    }
    out.extend([0u8; 6]);
    out.push(8);
    out.push(ref_size as u8);
    out.extend(be(offsets.len(), 8));
    out.extend(be(0, 8));
    out.extend(be(table, 8));
    out
}

fn refused_for(bytes: &[u8], limit: AppFileLimit) {
    let started = std::time::Instant::now();
    let err = read_app_pins(bytes, "localhost").expect_err("over a limit");
    assert_eq!(err.limit, Some(limit), "{} bytes: {err}", bytes.len());
    assert!(err.message.contains("over the app file limit of"), "{err}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn deep_plists_and_android_files_are_refused_at_the_depth_limit_without_recursing() {
    let xml = format!(
        "<?xml version=\"1.0\"?><plist version=\"1.0\">{}{}</plist>",
        "<array>".repeat(50_000),
        "</array>".repeat(50_000)
    );
    refused_for(xml.as_bytes(), AppFileLimit::Depth);
    refused_for(&bplist_chain(50_000, 1), AppFileLimit::Depth);
    let nsc = format!(
        "<network-security-config>{}{}</network-security-config>",
        "<domain-config>".repeat(30_000),
        "</domain-config>".repeat(30_000)
    );
    refused_for(nsc.as_bytes(), AppFileLimit::Depth);
}

#[test]
fn files_over_one_mib_are_refused_before_parsing() {
    let xml = format!(
        "<plist>{}{}</plist>",
        "<array>".repeat(1_000_000),
        "</array>".repeat(1_000_000)
    );
    refused_for(xml.as_bytes(), AppFileLimit::Size);
    refused_for(&bplist_chain(1_000_000, 1), AppFileLimit::Size);
    let nsc = format!(
        "<network-security-config>{}{}</network-security-config>",
        "<domain-config>".repeat(60_000),
        "</domain-config>".repeat(60_000)
    );
    refused_for(nsc.as_bytes(), AppFileLimit::Size);
}

#[test]
fn a_binary_plist_whose_shared_references_double_per_level_is_refused_at_the_value_limit() {
    for levels in [33, 40, 45] {
        let bomb = bplist_chain(levels, 2);
        assert!((350..=565).contains(&bomb.len()), "{}", bomb.len());
        refused_for(&bomb, AppFileLimit::Objects);
    }
    // Deeper than the depth limit: whichever limit comes first, it is refused.
    let deep_bomb = bplist_chain(200, 2);
    assert!(read_app_pins(&deep_bomb, "localhost").is_err());
}
