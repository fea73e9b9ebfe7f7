//! A pin set rendered for the client side: the six formats of DESIGN.md §2, as pure functions.
//!
//! [`render`] takes everything it needs in an [`ExportInput`] (the pin set, the domain and what the
//! proxy serves for it) and returns the text plus warnings for the operator, or refuses when the
//! result would make apps reject the proxy. A wrong encoding bricks an app, so the literals here
//! are fixed and covered by golden tests. This module reads no files and knows no config: the
//! caller (`tool::export_cmd`) gathers the served chains.

mod text;
mod xml;

use crate::pin::{KeyAlgorithm, Pin, PinKind, PinSet};

/// What a client format is rendered from.
#[derive(Debug, Clone)]
pub struct ExportInput<'a> {
    pub pin_set: &'a PinSet,
    /// Lower-case DNS name, no wildcard.
    pub domain: &'a str,
    pub include_subdomains: bool,
    /// The chains the proxy serves for `domain` on the listeners that name the pin set.
    pub served: &'a [ServedChain],
}

/// One chain the proxy serves, reduced to what the client-side checks need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedChain {
    /// Where it comes from, for messages: `listener "mobile" cert[0] (certs/api.pem)`.
    pub origin: String,
    pub leaf: Pin,
    pub leaf_algorithm: KeyAlgorithm,
    /// Intermediates sent after the leaf, then the configured anchor, if any.
    pub ca: Vec<Pin>,
}

/// The rendered configuration and what the operator should know about it (for stderr).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    pub text: String,
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExportError {
    #[error(
        "pin set \"{pin_set}\" has no kind = \"key\" pin for the leaf of {origin}: {format} matches the \
         server's own key, so the app would reject the proxy. Export the set in a format that pins the whole \
         chain (android, trustkit, okhttp), or serve a key the set already pins as kind = \"key\""
    )]
    NoKeyPinForLeaf {
        format: &'static str,
        pin_set: String,
        origin: String,
    },
    #[error(
        "pin set \"{pin_set}\" lists kind = \"ca\" pins but none matches a CA of {origin}: Apple requires a \
         match among the CA identities as well as the leaf identities when both are listed, so the app would \
         reject the proxy; pin a CA of the served chain or move the ca pins to another pin set"
    )]
    NoCaPinForChain { pin_set: String, origin: String },
    #[error(
        "no listener serves pin set \"{pin_set}\" for the domain, so {format} pins cannot be checked against a \
         served leaf; name the pin set in a listener's `pin_sets` first"
    )]
    NothingServed {
        format: &'static str,
        pin_set: String,
    },
    #[error(
        "TrustKit refuses an enforcing policy with fewer than 2 pins (no backup); pin set \"{pin_set}\" has \
         {count}: add a backup key (`pinproxy keygen`)"
    )]
    TooFewPinsForTrustKit { pin_set: String, count: usize },
    #[error(
        "TrustKit pins RSA 2048/3072/4096 and ECDSA P-256/P-384 keys only; the leaf of {origin} is {algorithm}: \
         serve a key of a supported type"
    )]
    UnsupportedKeyForTrustKit { origin: String, algorithm: String },
}

/// The client formats a pin set exports to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Android,
    Trustkit,
    Apple,
    Okhttp,
    Curl,
    Envoy,
}

/// The `--format` value as the operator types it.
pub fn format_name(format: Format) -> &'static str {
    match format {
        Format::Android => "android",
        Format::Trustkit => "trustkit",
        Format::Apple => "apple",
        Format::Okhttp => "okhttp",
        Format::Curl => "curl",
        Format::Envoy => "envoy",
    }
}

/// Renders `input` for `format`, or refuses when the result would lock apps out of the proxy.
pub fn render(format: Format, input: &ExportInput<'_>) -> Result<Export, ExportError> {
    let mut warnings = Vec::new();
    match format {
        Format::Curl | Format::Envoy | Format::Apple => check_leaf_keys(format, input)?,
        Format::Trustkit => check_trustkit(input)?,
        Format::Android | Format::Okhttp => {}
    }
    for chain in input
        .served
        .iter()
        .filter(|c| !matches_any(input.pin_set, c))
    {
        warnings.push(format!(
            "no pin of pin set \"{}\" matches the chain of {}: apps shipping this would reject the proxy \
             (`pinproxy check` reports it)",
            input.pin_set.name, chain.origin
        ));
    }
    let text = match format {
        Format::Android => xml::android(input),
        Format::Trustkit => {
            warnings.push(
                "TSKSwizzleNetworkDelegates is true (TrustKit hooks NSURLSession delegates itself); set it to \
                 false if the app calls TSKPinningValidator in its own delegates. Needs TrustKit 1.6 or later"
                    .to_string(),
            );
            xml::trustkit(input)
        }
        Format::Apple => {
            if input.pin_set.pins.iter().any(|p| p.kind == PinKind::Ca) {
                check_apple_ca(input)?;
            }
            warnings.push(format!(
                "NSPinnedDomains pins never expire (pin set \"{}\" says {}): ship an app update that drops them \
                 before you serve a key not listed here. Needs iOS 14 / macOS 11 or later",
                input.pin_set.name, input.pin_set.expires
            ));
            xml::apple(input)
        }
        Format::Okhttp => {
            warnings.push(format!(
                "OkHttp pins never expire (pin set \"{}\" says {}): ship an app update before you serve a key not \
                 listed here",
                input.pin_set.name, input.pin_set.expires
            ));
            text::okhttp(input)
        }
        Format::Curl | Format::Envoy => {
            let left_out = input
                .pin_set
                .pins
                .iter()
                .filter(|p| p.kind == PinKind::Ca)
                .count();
            if left_out > 0 {
                warnings.push(format!(
                    "{left_out} kind = \"ca\" pin(s) left out: {} matches the leaf key only",
                    format_name(format)
                ));
            }
            if format == Format::Curl {
                text::curl(input)
            } else {
                text::envoy(input)
            }
        }
    };
    Ok(Export { text, warnings })
}

/// The pins of `kind`, in file order.
fn pins_of(set: &PinSet, kind: PinKind) -> impl Iterator<Item = &Pin> {
    set.pins
        .iter()
        .filter(move |p| p.kind == kind)
        .map(|p| &p.pin)
}

fn matches_any(set: &PinSet, chain: &ServedChain) -> bool {
    set.contains(&chain.leaf) || chain.ca.iter().any(|p| set.contains(p))
}

/// Leaf-only clients (and Apple's leaf identities) need a `key` pin for every served leaf.
fn check_leaf_keys(format: Format, input: &ExportInput<'_>) -> Result<(), ExportError> {
    let set = input.pin_set;
    if input.served.is_empty() {
        return Err(ExportError::NothingServed {
            format: format_name(format),
            pin_set: set.name.clone(),
        });
    }
    for chain in input.served {
        if !pins_of(set, PinKind::Key).any(|p| *p == chain.leaf) {
            return Err(ExportError::NoKeyPinForLeaf {
                format: format_name(format),
                pin_set: set.name.clone(),
                origin: chain.origin.clone(),
            });
        }
    }
    Ok(())
}

/// With both arrays present, Apple requires a CA match too.
fn check_apple_ca(input: &ExportInput<'_>) -> Result<(), ExportError> {
    for chain in input.served {
        if !pins_of(input.pin_set, PinKind::Ca).any(|p| chain.ca.contains(p)) {
            return Err(ExportError::NoCaPinForChain {
                pin_set: input.pin_set.name.clone(),
                origin: chain.origin.clone(),
            });
        }
    }
    Ok(())
}

fn check_trustkit(input: &ExportInput<'_>) -> Result<(), ExportError> {
    let count = input.pin_set.pins.len();
    if count < 2 {
        return Err(ExportError::TooFewPinsForTrustKit {
            pin_set: input.pin_set.name.clone(),
            count,
        });
    }
    if let Some(chain) = input
        .served
        .iter()
        .find(|c| !c.leaf_algorithm.trustkit_supported())
    {
        return Err(ExportError::UnsupportedKeyForTrustKit {
            origin: chain.origin.clone(),
            algorithm: chain.leaf_algorithm.to_string(),
        });
    }
    Ok(())
}

/// A label made safe for a one-line comment in any of the formats: no control characters, no
/// `--` (ends an XML comment), no `\u` (a Java unicode escape is decoded even inside comments).
pub(crate) fn comment_safe(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    while out.contains("--") {
        out = out.replace("--", "- -");
    }
    out.replace('\\', "/").trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comment_text_never_holds_a_double_dash_or_a_newline() {
        let s = comment_safe("a---b\n--> \\u000a end-");
        assert!(!s.contains("--"), "{s}");
        assert!(!s.contains('\n'));
        assert!(!s.contains('\\'));
    }
}
