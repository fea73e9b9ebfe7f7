//! The code and command-line formats: OkHttp's `CertificatePinner`, curl's `--pinnedpubkey` and
//! Envoy's `verify_certificate_spki`. curl and Envoy match the leaf only, so they get `key` pins only.

use std::fmt::Write as _;

use super::{ExportInput, comment_safe, pins_of};
use crate::pin::PinKind;

/// A Kotlin expression (Java: prefix `new`), one `.add` per pin of the set, key and ca alike.
///
/// With subdomains, one block per pattern, because OkHttp's patterns changed meaning: in 3.x
/// (Debian's libokhttp-java is 3.13.1) `*.api.example.com` matches one label below the domain and
/// `**.api.example.com` is accepted but matches nothing; from 4.x `**.` matches the domain and
/// every name below it. Pins of every matching pattern apply together, so listing the domain
/// itself, `*.` and `**.` pins the apex and the subdomains on every version.
pub(super) fn okhttp(input: &ExportInput<'_>) -> String {
    let set = input.pin_set;
    let patterns: Vec<(String, &str)> = if input.include_subdomains {
        vec![
            (input.domain.to_string(), "the domain itself"),
            (
                format!("*.{}", input.domain),
                "one label below it (every OkHttp version)",
            ),
            (
                format!("**.{}", input.domain),
                "any depth (OkHttp 4 and later; 3.x ignores it)",
            ),
        ]
    } else {
        vec![(input.domain.to_string(), "")]
    };
    let mut s = format!(
        "// pinproxy pin set \"{}\" (the set expires {}, OkHttp pins do not)\n",
        comment_safe(&set.name),
        set.expires
    );
    if let Some(frozen) = &set.frozen {
        let _ = writeln!(
            s,
            "// frozen {frozen}: the proxy refuses any change to this set"
        );
    }
    s.push_str("// Kotlin as is; in Java write `new CertificatePinner.Builder()`\n");
    s.push_str("CertificatePinner.Builder()\n");
    for (pattern, what) in &patterns {
        if !what.is_empty() {
            let _ = writeln!(s, "    // {what}");
        }
        for p in &set.pins {
            let _ = writeln!(
                s,
                "    .add(\"{pattern}\", \"{}\") // {} ({})",
                p.pin.to_prefixed(),
                comment_safe(&p.label),
                p.kind.as_str()
            );
        }
    }
    s.push_str("    .build()\n");
    s
}

/// One curl argument; base64 holds no `'`, so single quotes are safe in any POSIX shell.
pub(super) fn curl(input: &ExportInput<'_>) -> String {
    let pins: Vec<String> = pins_of(input.pin_set, PinKind::Key)
        .map(|p| format!("sha256//{}", p.to_base64()))
        .collect();
    format!("--pinnedpubkey '{}'\n", pins.join(";"))
}

/// The field of Envoy's `CertificateValidationContext`, as a YAML flow sequence.
pub(super) fn envoy(input: &ExportInput<'_>) -> String {
    let pins: Vec<String> = pins_of(input.pin_set, PinKind::Key)
        .map(|p| format!("\"{}\"", p.to_base64()))
        .collect();
    let frozen = input
        .pin_set
        .frozen
        .as_ref()
        .map(|f| format!(", frozen {f}"))
        .unwrap_or_default();
    format!(
        "# pinproxy pin set \"{}\"{frozen}: kind = \"key\" pins only (Envoy matches the peer's leaf)\n\
         verify_certificate_spki: [{}]\n",
        comment_safe(&input.pin_set.name),
        pins.join(", ")
    )
}
