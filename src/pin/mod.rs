//! Pins, pin sets and SPKI hashing: the vocabulary every other module speaks.
//!
//! A [`Pin`] is SHA-256 over a DER SubjectPublicKeyInfo, exactly 32 bytes, written in standard
//! base64 with padding. All x509-parser calls of the crate live below this module. Nothing here
//! knows about sockets, listeners or TLS configurations.

mod appfile;
mod material;
mod set_file;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};

pub use appfile::{AppFileError, AppFormat, AppPin, AppPins, read_app_pins};
pub(crate) use material::dns_name_matches;
pub use material::{
    CertInfo, KeyAlgorithm, Material, MaterialError, cert_info, material_from_bytes,
};
pub use set_file::{PIN_DIR, frozen_expiry_moves, load_pin_sets};

/// SHA-256 of a DER SubjectPublicKeyInfo.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pin([u8; 32]);

impl Pin {
    /// Hashes a full DER `SubjectPublicKeyInfo` SEQUENCE.
    pub fn of_spki(spki_der: &[u8]) -> Pin {
        Pin(Sha256::digest(spki_der).into())
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Pin {
        Pin(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Standard base64 with padding, 44 characters: the form apps ship.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }

    /// `sha256/<base64>`: OkHttp's form and the `pin` label of the metrics.
    pub fn to_prefixed(&self) -> String {
        format!("sha256/{}", self.to_base64())
    }

    /// A value someone typed to fill a slot: one repeated byte or a short repeated block.
    pub fn is_placeholder(&self) -> bool {
        [1usize, 2, 3, 4, 8, 16].iter().any(|&period| {
            self.0
                .iter()
                .enumerate()
                .all(|(i, b)| *b == self.0[i % period])
        })
    }
}

impl fmt::Display for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base64())
    }
}

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pin({})", self.to_base64())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PinParseError {
    #[error(
        "not standard base64 (expected 44 characters like \"tM/u/k5HeJDvkIGDie9SHfQDQ7YyORlmFwn21Gyen0g=\", without a \"sha256/\" prefix)"
    )]
    Base64,
    #[error("decodes to {0} bytes, a SHA-256 pin has 32")]
    Length(usize),
    #[error("is written with a \"sha256/\" prefix; write only the base64 value")]
    Prefixed,
}

impl FromStr for Pin {
    type Err = PinParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.starts_with("sha256/") {
            return Err(PinParseError::Prefixed);
        }
        let bytes = STANDARD
            .decode(s.trim())
            .map_err(|_| PinParseError::Base64)?;
        let len = bytes.len();
        <[u8; 32]>::try_from(bytes)
            .map(Pin)
            .map_err(|_| PinParseError::Length(len))
    }
}

/// Where on a chain a pin is meant to match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PinKind {
    /// A server's own key: matches the leaf.
    Key,
    /// An intermediate or root: matches above the leaf.
    Ca,
}

impl PinKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PinKind::Key => "key",
            PinKind::Ca => "ca",
        }
    }
}

/// What happens when an upstream's verified path matches no pin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PinMode {
    Enforce,
    Report,
}

impl PinMode {
    pub fn as_str(self) -> &'static str {
        match self {
            PinMode::Enforce => "enforce",
            PinMode::Report => "report",
        }
    }
}

/// One `[[pin]]` of a pin set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinEntry {
    pub pin: Pin,
    pub label: String,
    pub kind: PinKind,
    /// A CSR, public key or certificate whose SPKI must hash to `pin` (resolved path).
    pub source: Option<PathBuf>,
}

/// One `pins/NAME.toml`: what one app generation ships, or what one upstream must present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinSet {
    pub name: String,
    pub file: PathBuf,
    pub description: String,
    /// After this date (device-local) apps stop pinning.
    pub expires: time::Date,
    pub mode: PinMode,
    pub pins: Vec<PinEntry>,
    /// Set when the pins come from the app's own file (`from`, `domain`).
    pub from: Option<AppOrigin>,
    /// `frozen = "sha256:…"`: the digest the set shipped with, verified when loaded.
    pub frozen: Option<String>,
    /// `app_versions`: the app versions that ship this set (adoption counting).
    pub app_versions: Option<semver::VersionReq>,
}

/// The app file a pin set was read from, and the entry used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppOrigin {
    pub file: PathBuf,
    pub domain: String,
    pub format: AppFormat,
    /// The entry the pins come from, with its line in XML files.
    pub element: String,
}

impl PinSet {
    pub fn contains(&self, pin: &Pin) -> bool {
        self.pins.iter().any(|p| &p.pin == pin)
    }

    pub fn entry(&self, pin: &Pin) -> Option<&PinEntry> {
        self.pins.iter().find(|p| &p.pin == pin)
    }

    /// The backup pins of this set for a listener serving `served` (every pin on its served
    /// chains, leaf to anchor): the pins no served chain uses, decided by pin value as rule 2
    /// (DESIGN §4) does. The one definition the rules, `/status`, the status page, the reload's
    /// rotation record, adoption and check read. A pin set shared by listeners has backups per
    /// listener; its own `/status` entry passes the pins of every listener naming it.
    pub fn backups<'a>(&'a self, served: &'a [Pin]) -> impl Iterator<Item = &'a PinEntry> + 'a {
        self.pins.iter().filter(move |p| !served.contains(&p.pin))
    }

    /// Unix seconds of 00:00 UTC on `expires`.
    pub fn expires_unix(&self) -> i64 {
        self.expires.midnight().assume_utc().unix_timestamp()
    }

    /// `sha256:<hex>` over the pins and kinds: SHA-256 of one line `<kind> <base64>\n` per pin
    /// (kind `key` or `ca`), the lines sorted bytewise. Labels, order and expiry do not count:
    /// they are not what an app checks.
    pub fn digest(&self) -> String {
        let mut lines: Vec<String> = self
            .pins
            .iter()
            .map(|p| format!("{} {}\n", p.kind.as_str(), p.pin.to_base64()))
            .collect();
        lines.sort();
        let mut h = Sha256::new();
        for l in &lines {
            h.update(l.as_bytes());
        }
        let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        format!("sha256:{hex}")
    }

    /// Whether a pin's kind says where it must match. Android and TrustKit pins match anywhere
    /// on the chain, so a set read from their files has no kinds to hold the chain to.
    pub fn kinds_checked(&self) -> bool {
        self.from.as_ref().is_none_or(|o| o.format.has_kinds())
    }

    /// Live until `expires` + `grace` (device clocks and time zones differ).
    pub fn is_live(&self, now_unix: i64, grace: std::time::Duration) -> bool {
        now_unix < self.expires_unix() + 86_400 + grace.as_secs() as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_valid_pin_and_prints_it_back() {
        let s = "tM/u/k5HeJDvkIGDie9SHfQDQ7YyORlmFwn21Gyen0g=";
        let pin: Pin = s.parse().expect("valid pin");
        assert_eq!(pin.to_base64(), s);
        assert_eq!(pin.to_prefixed(), format!("sha256/{s}"));
        assert!(!pin.is_placeholder());
    }

    #[test]
    fn rejects_prefixed_short_and_non_base64_pins() {
        assert_eq!("sha256/abc".parse::<Pin>(), Err(PinParseError::Prefixed));
        assert_eq!("AAAA".parse::<Pin>(), Err(PinParseError::Length(3)));
        assert_eq!("not base64!".parse::<Pin>(), Err(PinParseError::Base64));
    }

    #[test]
    fn spots_placeholders() {
        let a: Pin = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
            .parse()
            .expect("32 bytes");
        assert!(a.is_placeholder());
        let mut block = [0u8; 32];
        for (i, b) in block.iter_mut().enumerate() {
            *b = (i % 4) as u8 + 7;
        }
        assert!(Pin::from_bytes(block).is_placeholder());
    }
}
