//! The XML formats: Android's network security config and the two Info.plist policies (TrustKit
//! and Apple's `NSPinnedDomains`). Every string that reaches the document is escaped here.

use std::fmt::Write as _;

use super::{ExportInput, comment_safe, pins_of};
use crate::pin::PinKind;

const XML_DECL: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
const PLIST_DOCTYPE: &str = "<!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" \"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n";

/// `res/xml/network_security_config.xml`: every pin of the set, with the set's expiry.
pub(super) fn android(input: &ExportInput<'_>) -> String {
    let set = input.pin_set;
    let mut s = String::from(XML_DECL);
    s.push_str(&comment(0, &header(input, false)));
    s.push_str("<network-security-config>\n");
    s.push_str("    <domain-config>\n");
    let _ = writeln!(
        s,
        "        <domain includeSubdomains=\"{}\">{}</domain>",
        input.include_subdomains,
        escape(input.domain)
    );
    let _ = writeln!(s, "        <pin-set expiration=\"{}\">", set.expires);
    for p in &set.pins {
        s.push_str(&comment(12, &format!("{} ({})", p.label, p.kind.as_str())));
        let _ = writeln!(
            s,
            "            <pin digest=\"SHA-256\">{}</pin>",
            p.pin.to_base64()
        );
    }
    s.push_str("        </pin-set>\n");
    s.push_str("    </domain-config>\n");
    s.push_str("</network-security-config>\n");
    s
}

/// Info.plist `TSKConfiguration`: every pin of the set, enforced, with the set's expiry.
pub(super) fn trustkit(input: &ExportInput<'_>) -> String {
    let set = input.pin_set;
    let mut p = Plist::new(&header(input, true));
    p.key("TSKConfiguration");
    p.open("dict");
    p.key("TSKPinnedDomains");
    p.open("dict");
    p.key(input.domain);
    p.open("dict");
    p.key("TSKEnforcePinning");
    p.boolean(true);
    p.key("TSKExpirationDate");
    p.string(&set.expires.to_string());
    p.key("TSKIncludeSubdomains");
    p.boolean(input.include_subdomains);
    p.key("TSKPublicKeyHashes");
    p.open("array");
    for entry in &set.pins {
        p.string(&entry.pin.to_base64());
    }
    p.close("array");
    p.close("dict");
    p.close("dict");
    p.key("TSKSwizzleNetworkDelegates");
    p.boolean(true);
    p.close("dict");
    p.finish()
}

/// Info.plist `NSAppTransportSecurity`: key pins as leaf identities, ca pins as CA identities.
pub(super) fn apple(input: &ExportInput<'_>) -> String {
    let set = input.pin_set;
    let mut p = Plist::new(&header(input, true));
    p.key("NSAppTransportSecurity");
    p.open("dict");
    p.key("NSPinnedDomains");
    p.open("dict");
    p.key(input.domain);
    p.open("dict");
    p.key("NSIncludesSubdomains");
    p.boolean(input.include_subdomains);
    for (key, kind) in [
        ("NSPinnedCAIdentities", PinKind::Ca),
        ("NSPinnedLeafIdentities", PinKind::Key),
    ] {
        let pins: Vec<_> = pins_of(set, kind).collect();
        if pins.is_empty() {
            continue;
        }
        p.key(key);
        p.open("array");
        for pin in pins {
            p.open("dict");
            p.key("SPKI-SHA256-BASE64");
            p.string(&pin.to_base64());
            p.close("dict");
        }
        p.close("array");
    }
    p.close("dict");
    p.close("dict");
    p.close("dict");
    p.finish()
}

/// One line about where the document came from, optionally with the pin labels.
fn header(input: &ExportInput<'_>, labels: bool) -> String {
    let set = input.pin_set;
    let mut h = format!("pinproxy pin set \"{}\", expires {}", set.name, set.expires);
    if let Some(frozen) = &set.frozen {
        // The app repository records what shipped; the proxy refuses any change to it.
        let _ = write!(h, ", frozen {frozen}");
    }
    if !set.description.is_empty() {
        let _ = write!(h, ": {}", set.description);
    }
    if labels {
        let list: Vec<String> = set
            .pins
            .iter()
            .map(|p| format!("{} ({})", p.label, p.kind.as_str()))
            .collect();
        let _ = write!(h, "; pins in order: {}", list.join(", "));
    }
    h
}

/// A plist document written in the layout Xcode uses (tabs, keys in the order given).
struct Plist {
    out: String,
    depth: usize,
}

impl Plist {
    fn new(header: &str) -> Plist {
        let mut out = String::from(XML_DECL);
        out.push_str(PLIST_DOCTYPE);
        out.push_str(&comment(0, header));
        out.push_str("<plist version=\"1.0\">\n<dict>\n");
        Plist { out, depth: 1 }
    }

    fn line(&mut self, text: &str) {
        for _ in 0..self.depth {
            self.out.push('\t');
        }
        self.out.push_str(text);
        self.out.push('\n');
    }

    fn key(&mut self, k: &str) {
        self.line(&format!("<key>{}</key>", escape(k)));
    }

    fn string(&mut self, v: &str) {
        self.line(&format!("<string>{}</string>", escape(v)));
    }

    fn boolean(&mut self, v: bool) {
        self.line(if v { "<true/>" } else { "<false/>" });
    }

    fn open(&mut self, tag: &str) {
        self.line(&format!("<{tag}>"));
        self.depth += 1;
    }

    fn close(&mut self, tag: &str) {
        self.depth -= 1;
        self.line(&format!("</{tag}>"));
    }

    fn finish(mut self) -> String {
        self.out.push_str("</dict>\n</plist>\n");
        self.out
    }
}

/// `<!-- text -->` on its own line; the padding spaces keep a trailing `-` off the terminator.
fn comment(indent: usize, text: &str) -> String {
    format!("{:indent$}<!-- {} -->\n", "", comment_safe(text))
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(escape("a<b>&\"c'"), "a&lt;b&gt;&amp;&quot;c&apos;");
    }
}
