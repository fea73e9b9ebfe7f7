//! Pins read from the file an app is built from, so the proxy checks the pins the apps carry
//! rather than a copy that can drift: Android's network security config, and an Info.plist with
//! TrustKit's `TSKConfiguration` or Apple's `NSAppTransportSecurity` → `NSPinnedDomains` (XML or
//! binary).
//!
//! [`read_app_pins`] picks the entry an app uses for one domain (exact name first, then the
//! longest parent that includes subdomains, as Android and TrustKit do) and returns its pins,
//! their kinds where the format says them, and the expiry. Every error names the element, with
//! its line in XML files. Pure: bytes in, pins out; the caller reads the file.

mod android;
mod limits;
mod plist;
#[cfg(test)]
mod tests;

use super::{Pin, PinKind};
pub use limits::{AppFileLimit, MAX_APP_FILE_BYTES};

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
    /// The limit the file is over, if that is what is wrong with it.
    pub limit: Option<AppFileLimit>,
}

impl AppFileError {
    pub(super) fn new(element: impl Into<String>, message: impl Into<String>) -> Self {
        AppFileError {
            element: element.into(),
            message: message.into(),
            limit: None,
        }
    }

    pub(super) fn over(limit: AppFileLimit, found: impl std::fmt::Display) -> Self {
        AppFileError {
            element: String::new(),
            message: format!("{found}: over the app file limit of {}", limit.describe()),
            limit: Some(limit),
        }
    }
}

/// The pins the app built from `bytes` uses for `domain` (lower-case DNS name).
pub fn read_app_pins(bytes: &[u8], domain: &str) -> Result<AppPins, AppFileError> {
    if bytes.len() > MAX_APP_FILE_BYTES {
        return Err(AppFileError::over(
            AppFileLimit::Size,
            format!("{} bytes", bytes.len()),
        ));
    }
    if bytes.starts_with(b"bplist") {
        return plist::plist_pins(bytes, "", domain);
    }
    let text = std::str::from_utf8(bytes)
        .map_err(|_| AppFileError::new("", "neither UTF-8 XML nor a binary property list"))?;
    if text.contains("<network-security-config") {
        android::android(text, domain)
    } else if text.contains("<plist") {
        plist::plist_pins(bytes, text, domain)
    } else {
        Err(AppFileError::new(
            "",
            "neither an Android network security config (<network-security-config>) nor an Info.plist (<plist>)",
        ))
    }
}

pub(super) fn no_entry(domain: &str, names: &[String], what: &str) -> AppFileError {
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

pub(super) fn parse_date(s: &str) -> Option<time::Date> {
    time::Date::parse(
        s.trim(),
        time::macros::format_description!("[year]-[month]-[day]"),
    )
    .ok()
}

/// "label (key)" or "label (ca)", as `pinproxy export` writes them.
pub(super) fn label_and_kind(text: &str) -> Option<(String, PinKind)> {
    if let Some(label) = text.strip_suffix(" (key)") {
        Some((label.to_string(), PinKind::Key))
    } else {
        text.strip_suffix(" (ca)")
            .map(|label| (label.to_string(), PinKind::Ca))
    }
}
