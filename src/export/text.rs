//! The code and command-line formats: OkHttp's `CertificatePinner`, curl's `--pinnedpubkey` and
//! Envoy's `verify_certificate_spki`. curl and Envoy match the leaf only, so they get `key` pins only.

use std::fmt::Write as _;

use super::{ExportInput, comment_safe, pins_of};
use crate::pin::PinKind;

/// A Kotlin expression (Java: prefix `new`), one `.add` per pin of the set, key and ca alike.
pub(super) fn okhttp(input: &ExportInput<'_>) -> String {
    let set = input.pin_set;
    let pattern = if input.include_subdomains {
        format!("**.{}", input.domain)
    } else {
        input.domain.to_string()
    };
    let mut s = format!(
        "// pinproxy pin set \"{}\" (the set expires {}, OkHttp pins do not)\n",
        comment_safe(&set.name),
        set.expires
    );
    s.push_str("// Kotlin as is; in Java write `new CertificatePinner.Builder()`\n");
    s.push_str("CertificatePinner.Builder()\n");
    for p in &set.pins {
        let _ = writeln!(
            s,
            "    .add(\"{pattern}\", \"{}\") // {} ({})",
            p.pin.to_prefixed(),
            comment_safe(&p.label),
            p.kind.as_str()
        );
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
    format!(
        "# pinproxy pin set \"{}\": kind = \"key\" pins only (Envoy matches the peer's leaf)\n\
         verify_certificate_spki: [{}]\n",
        comment_safe(&input.pin_set.name),
        pins.join(", ")
    )
}
