//! `export::render` with fixed pins and dates: golden files, real parsers, refusals.
//! Regenerate the golden files with `UPDATE_GOLDEN=1 cargo test --test toolkit` and review the diff.

use std::path::{Path, PathBuf};

use pinproxy::export::Format as ExportFormat;
use pinproxy::export::{Export, ExportError, ExportInput, ServedChain, render};
use pinproxy::pin::{KeyAlgorithm, Pin, PinEntry, PinKind, PinMode, PinSet};
use serde_json::json;

use crate::support::{have, parse_plist, parse_xml};

const LEAF: &str = "tM/u/k5HeJDvkIGDie9SHfQDQ7YyORlmFwn21Gyen0g=";
const BACKUP: &str = "ZHWbyPsLHYRcwbW4Jmib8fxi16zaENPKDS1DCV4tSqM=";
const CA: &str = "v6B3z7cacGR17Mj91GkcActHOe35KSbeP/UZaZCxg/4=";
const DOMAIN: &str = "api.example.com";

fn entry(pin: &str, kind: PinKind, label: &str) -> PinEntry {
    PinEntry {
        pin: pin.parse().expect("fixture pin"),
        label: label.to_string(),
        kind,
        source: None,
    }
}

/// A current key, a backup key and the issuing CA; the description and a label carry `--`, `<`
/// and `&` so escaping shows in the golden files.
fn pin_set(pins: Vec<PinEntry>) -> PinSet {
    PinSet {
        name: "app-4".to_string(),
        file: PathBuf::from("pins/app-4.toml"),
        description: "Shipped in app 4.2+ -- for <api> & co".to_string(),
        expires: time::Date::from_calendar_date(2027, time::Month::June, 30).expect("fixture date"),
        mode: PinMode::Enforce,
        pins,
        from: None,
        frozen: None,
        app_versions: None,
    }
}

fn full_set() -> PinSet {
    pin_set(vec![
        entry(LEAF, PinKind::Key, "current key, certs/api.key"),
        entry(BACKUP, PinKind::Key, "backup key #1 -- offline"),
        entry(CA, PinKind::Ca, "issuing CA"),
    ])
}

fn served(algorithm: KeyAlgorithm) -> Vec<ServedChain> {
    vec![ServedChain {
        origin: "`listener[0].cert[0]` (listener \"mobile\", certs/api.pem)".to_string(),
        leaf: LEAF.parse().expect("fixture pin"),
        leaf_algorithm: algorithm,
        ca: vec![CA.parse::<Pin>().expect("fixture pin")],
    }]
}

fn export(format: ExportFormat, set: &PinSet, subdomains: bool) -> Result<Export, ExportError> {
    let served = served(KeyAlgorithm::EcP256);
    render(
        format,
        &ExportInput {
            pin_set: set,
            domain: DOMAIN,
            include_subdomains: subdomains,
            served: &served,
        },
    )
}

fn rendered(format: ExportFormat, subdomains: bool) -> Export {
    export(format, &full_set(), subdomains).expect("the fixture renders")
}

fn golden(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).expect("write golden file");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run with UPDATE_GOLDEN=1 to create it",
            path.display()
        )
    });
    assert_eq!(actual, expected, "differs from {}", path.display());
}

fn assert_comments_have_no_double_dash(doc: &str) {
    for part in doc.split("<!--").skip(1) {
        let (inside, _) = part.split_once("-->").expect("comment is closed");
        assert!(
            !inside.contains("--"),
            "`--` inside an XML comment: {inside:?}"
        );
    }
}

#[test]
fn android_export_matches_the_golden_file_and_parses_with_every_pin() {
    let out = rendered(ExportFormat::Android, false);
    golden("android.xml", &out.text);
    assert!(out.warnings.is_empty(), "{:?}", out.warnings);
    assert_comments_have_no_double_dash(&out.text);
    if !have("python3") {
        return;
    }
    let pin =
        |p: &str| json!({"tag": "pin", "attrib": {"digest": "SHA-256"}, "text": p, "children": []});
    let expected = |subdomains: &str| {
        json!({"tag": "network-security-config", "attrib": {}, "text": "", "children": [
            {"tag": "domain-config", "attrib": {}, "text": "", "children": [
                {"tag": "domain", "attrib": {"includeSubdomains": subdomains}, "text": DOMAIN, "children": []},
                {"tag": "pin-set", "attrib": {"expiration": "2027-06-30"}, "text": "",
                 "children": [pin(LEAF), pin(BACKUP), pin(CA)]}
            ]}
        ]})
    };
    assert_eq!(parse_xml(&out.text), expected("false"));
    let with_subdomains = rendered(ExportFormat::Android, true);
    assert_eq!(parse_xml(&with_subdomains.text), expected("true"));
}

#[test]
fn trustkit_export_matches_the_golden_file_and_plistlib_reads_the_exact_keys() {
    let out = rendered(ExportFormat::Trustkit, false);
    golden("trustkit.plist", &out.text);
    assert_comments_have_no_double_dash(&out.text);
    if !have("python3") {
        return;
    }
    assert_eq!(
        parse_plist(&out.text),
        json!({"TSKConfiguration": {
            "TSKSwizzleNetworkDelegates": true,
            "TSKPinnedDomains": {DOMAIN: {
                "TSKPublicKeyHashes": [LEAF, BACKUP, CA],
                "TSKEnforcePinning": true,
                "TSKIncludeSubdomains": false,
                "TSKExpirationDate": "2027-06-30"
            }}
        }})
    );
    let with_subdomains = parse_plist(&rendered(ExportFormat::Trustkit, true).text);
    assert_eq!(
        with_subdomains["TSKConfiguration"]["TSKPinnedDomains"][DOMAIN]["TSKIncludeSubdomains"],
        json!(true)
    );
}

#[test]
fn apple_export_matches_the_golden_file_and_puts_key_pins_on_the_leaf_and_ca_pins_on_cas() {
    let out = rendered(ExportFormat::Apple, false);
    golden("apple.plist", &out.text);
    assert_comments_have_no_double_dash(&out.text);
    assert!(
        out.warnings.iter().any(|w| w.contains("never expire")),
        "{:?}",
        out.warnings
    );
    if !have("python3") {
        return;
    }
    let id = |p: &str| json!({"SPKI-SHA256-BASE64": p});
    assert_eq!(
        parse_plist(&out.text),
        json!({"NSAppTransportSecurity": {"NSPinnedDomains": {DOMAIN: {
            "NSIncludesSubdomains": false,
            "NSPinnedLeafIdentities": [id(LEAF), id(BACKUP)],
            "NSPinnedCAIdentities": [id(CA)]
        }}}})
    );
}

#[test]
fn apple_export_of_key_pins_only_has_no_ca_identities_array() {
    if !have("python3") {
        return;
    }
    let set = pin_set(vec![
        entry(LEAF, PinKind::Key, "current"),
        entry(BACKUP, PinKind::Key, "backup"),
    ]);
    let out = export(ExportFormat::Apple, &set, true).expect("renders");
    assert_eq!(
        parse_plist(&out.text),
        json!({"NSAppTransportSecurity": {"NSPinnedDomains": {DOMAIN: {
            "NSIncludesSubdomains": true,
            "NSPinnedLeafIdentities": [{"SPKI-SHA256-BASE64": LEAF}, {"SPKI-SHA256-BASE64": BACKUP}]
        }}}})
    );
}

#[test]
fn okhttp_export_matches_the_golden_file_with_one_add_per_pin() {
    let out = rendered(ExportFormat::Okhttp, false);
    golden("okhttp.kt", &out.text);
    let code: Vec<&str> = out.text.lines().filter(|l| !l.starts_with("//")).collect();
    assert_eq!(code.first(), Some(&"CertificatePinner.Builder()"));
    assert_eq!(code.last(), Some(&"    .build()"));
    for (line, pin) in code[1..code.len() - 1].iter().zip([LEAF, BACKUP, CA]) {
        assert!(
            line.starts_with(&format!("    .add(\"{DOMAIN}\", \"sha256/{pin}\")")),
            "{line}"
        );
    }
    assert_eq!(code.len(), 5, "{}", out.text);
    assert!(out.warnings.iter().any(|w| w.contains("never expire")));
}

#[test]
fn okhttp_export_with_subdomains_pins_the_apex_one_label_and_any_depth() {
    let out = rendered(ExportFormat::Okhttp, true);
    golden("okhttp-subdomains.kt", &out.text);
    for pattern in [
        DOMAIN.to_string(),
        format!("*.{DOMAIN}"),
        format!("**.{DOMAIN}"),
    ] {
        assert!(
            out.text
                .contains(&format!(".add(\"{pattern}\", \"sha256/{LEAF}\")")),
            "{pattern}: {}",
            out.text
        );
    }
}

#[test]
fn curl_export_matches_the_golden_file_and_lists_key_pins_only() {
    let out = rendered(ExportFormat::Curl, false);
    golden("curl.txt", &out.text);
    assert_eq!(
        out.text,
        format!("--pinnedpubkey 'sha256//{LEAF};sha256//{BACKUP}'\n")
    );
    assert!(
        out.warnings
            .iter()
            .any(|w| w.contains("1 kind = \"ca\" pin(s) left out")),
        "{:?}",
        out.warnings
    );
}

#[test]
fn envoy_export_matches_the_golden_file_and_its_list_parses_as_key_pins_only() {
    let out = rendered(ExportFormat::Envoy, false);
    golden("envoy.yaml", &out.text);
    let line = out
        .text
        .lines()
        .find(|l| !l.starts_with('#'))
        .expect("one YAML line");
    let list = line
        .strip_prefix("verify_certificate_spki: ")
        .expect("the Envoy field name");
    // A YAML flow sequence of double-quoted strings is also JSON.
    let pins: Vec<String> = serde_json::from_str(list).expect("a list of strings");
    assert_eq!(pins, vec![LEAF.to_string(), BACKUP.to_string()]);
}

#[test]
fn leaf_only_formats_refuse_a_set_without_a_key_pin_for_the_served_leaf() {
    let set = pin_set(vec![
        entry(BACKUP, PinKind::Key, "backup"),
        entry(CA, PinKind::Ca, "issuing CA"),
    ]);
    for format in [ExportFormat::Curl, ExportFormat::Envoy, ExportFormat::Apple] {
        let err = export(format, &set, false).expect_err("must refuse");
        assert!(
            matches!(err, ExportError::NoKeyPinForLeaf { .. }),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains("listener[0].cert[0]") && msg.contains("kind = \"key\""),
            "{msg}"
        );
    }
    for format in [
        ExportFormat::Android,
        ExportFormat::Okhttp,
        ExportFormat::Trustkit,
    ] {
        export(format, &set, false).expect("a ca pin is enough for chain-matching clients");
    }
}

#[test]
fn leaf_only_formats_refuse_when_no_listener_serves_the_set() {
    let set = full_set();
    for format in [ExportFormat::Curl, ExportFormat::Envoy, ExportFormat::Apple] {
        let err = render(
            format,
            &ExportInput {
                pin_set: &set,
                domain: DOMAIN,
                include_subdomains: false,
                served: &[],
            },
        )
        .expect_err("nothing to check against");
        assert!(matches!(err, ExportError::NothingServed { .. }), "{err:?}");
    }
}

#[test]
fn apple_export_refuses_ca_pins_that_match_no_served_ca() {
    let other_ca = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
    let set = pin_set(vec![
        entry(LEAF, PinKind::Key, "current"),
        entry(other_ca, PinKind::Ca, "another CA"),
    ]);
    let err = export(ExportFormat::Apple, &set, false).expect_err("both identity lists must match");
    assert!(
        matches!(err, ExportError::NoCaPinForChain { .. }),
        "{err:?}"
    );
}

#[test]
fn trustkit_export_refuses_a_set_with_a_single_pin() {
    let set = pin_set(vec![entry(LEAF, PinKind::Key, "current")]);
    let err = export(ExportFormat::Trustkit, &set, false).expect_err("TrustKit needs a backup");
    assert!(
        matches!(err, ExportError::TooFewPinsForTrustKit { count: 1, .. }),
        "{err:?}"
    );
}

#[test]
fn trustkit_export_refuses_a_served_key_type_trustkit_cannot_pin() {
    let set = full_set();
    let served = served(KeyAlgorithm::Ed25519);
    let err = render(
        ExportFormat::Trustkit,
        &ExportInput {
            pin_set: &set,
            domain: DOMAIN,
            include_subdomains: false,
            served: &served,
        },
    )
    .expect_err("Ed25519 is not pinnable by TrustKit");
    assert!(err.to_string().contains("Ed25519"), "{err}");
}
