//! Key material in PEM or DER files: certificates, private keys, public keys and CSRs, each
//! reduced to its SubjectPublicKeyInfo, plus the certificate facts the rest of the crate needs.

use std::net::IpAddr;

use rcgen::PublicKeyData as _;
use rustls::pki_types::pem::{PemObject, SectionKind};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer};
use x509_parser::prelude::*;

use super::Pin;

/// One piece of key material found in a file.
#[derive(Debug, Clone)]
pub enum Material {
    Certificate { subject: String, spki: Vec<u8> },
    PrivateKey { form: &'static str, spki: Vec<u8> },
    PublicKey { spki: Vec<u8> },
    Csr { subject: String, spki: Vec<u8> },
}

impl Material {
    pub fn spki(&self) -> &[u8] {
        match self {
            Material::Certificate { spki, .. }
            | Material::PrivateKey { spki, .. }
            | Material::PublicKey { spki }
            | Material::Csr { spki, .. } => spki,
        }
    }

    pub fn pin(&self) -> Pin {
        Pin::of_spki(self.spki())
    }

    /// What it is, for a human: `certificate CN=api.example.com`, `private key (PKCS#8)`, ….
    pub fn describe(&self) -> String {
        match self {
            Material::Certificate { subject, .. } => format!("certificate {subject}"),
            Material::PrivateKey { form, .. } => format!("private key ({form})"),
            Material::PublicKey { .. } => "public key".to_string(),
            Material::Csr { subject, .. } => format!("CSR {subject}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MaterialError {
    #[error("no certificate, key or CSR found (PEM or DER)")]
    Nothing,
    #[error("bad PEM: {0}")]
    Pem(String),
    #[error("a {what} could not be parsed: {detail}")]
    Parse { what: &'static str, detail: String },
}

/// The key algorithm of an SPKI, as far as clients care.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyAlgorithm {
    Rsa(usize),
    EcP256,
    EcP384,
    Ed25519,
    Other(String),
}

impl KeyAlgorithm {
    /// TrustKit pins RSA 2048/3072/4096 and EC P-256/P-384 keys only.
    pub fn trustkit_supported(&self) -> bool {
        matches!(
            self,
            KeyAlgorithm::Rsa(2048 | 3072 | 4096) | KeyAlgorithm::EcP256 | KeyAlgorithm::EcP384
        )
    }
}

impl std::fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyAlgorithm::Rsa(bits) => write!(f, "RSA-{bits}"),
            KeyAlgorithm::EcP256 => f.write_str("ECDSA P-256"),
            KeyAlgorithm::EcP384 => f.write_str("ECDSA P-384"),
            KeyAlgorithm::Ed25519 => f.write_str("Ed25519"),
            KeyAlgorithm::Other(s) => f.write_str(s),
        }
    }
}

/// Facts about one certificate.
#[derive(Debug, Clone)]
pub struct CertInfo {
    pub subject: String,
    pub issuer: String,
    pub serial: String,
    pub not_before: i64,
    pub not_after: i64,
    pub dns_names: Vec<String>,
    pub ip_addrs: Vec<IpAddr>,
    pub spki: Vec<u8>,
    pub pin: Pin,
    pub key_algorithm: KeyAlgorithm,
    pub is_ca: bool,
}

impl CertInfo {
    /// Whether `host` (no port) is covered by the certificate's SANs, wildcards included.
    pub fn covers_host(&self, host: &str) -> bool {
        if let Ok(ip) = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            return self.ip_addrs.contains(&ip);
        }
        let host = host.trim_end_matches('.');
        self.dns_names
            .iter()
            .any(|name| dns_name_matches(name, host))
    }
}

/// `*.example.com` covers exactly one extra label; otherwise names compare case-insensitively.
pub(crate) fn dns_name_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(suffix) => host
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest.eq_ignore_ascii_case(suffix)),
        None => pattern.eq_ignore_ascii_case(host),
    }
}

/// Parses one DER certificate.
pub fn cert_info(der: &[u8]) -> Result<CertInfo, MaterialError> {
    let (_, cert) = parse_x509_certificate(der).map_err(|e| MaterialError::Parse {
        what: "certificate",
        detail: e.to_string(),
    })?;
    let mut dns_names = Vec::new();
    let mut ip_addrs = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(n) => dns_names.push(n.to_string()),
                GeneralName::IPAddress(b) => {
                    if let Ok(a) = <[u8; 4]>::try_from(*b) {
                        ip_addrs.push(IpAddr::from(a));
                    } else if let Ok(a) = <[u8; 16]>::try_from(*b) {
                        ip_addrs.push(IpAddr::from(a));
                    }
                }
                _ => {}
            }
        }
    }
    let spki = cert.tbs_certificate.subject_pki.raw.to_vec();
    Ok(CertInfo {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        serial: cert.raw_serial_as_string(),
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        dns_names,
        ip_addrs,
        pin: Pin::of_spki(&spki),
        key_algorithm: key_algorithm(&cert.tbs_certificate.subject_pki),
        is_ca: cert.is_ca(),
        spki,
    })
}

/// Reads every certificate, key and CSR in `data`, which is PEM (any number of sections) or a
/// single DER object.
pub fn material_from_bytes(data: &[u8]) -> Result<Vec<Material>, MaterialError> {
    if data.windows(11).any(|w| w == b"-----BEGIN ") {
        let mut out = Vec::new();
        for section in AnySection::pem_slice_iter(data) {
            let AnySection(kind, der) = section.map_err(|e| MaterialError::Pem(e.to_string()))?;
            if let Some(m) = from_section(kind, &der)? {
                out.push(m);
            }
        }
        return if out.is_empty() {
            Err(MaterialError::Nothing)
        } else {
            Ok(out)
        };
    }
    from_der_guess(data)
        .map(|m| vec![m])
        .ok_or(MaterialError::Nothing)
}

fn from_section(kind: SectionKind, der: &[u8]) -> Result<Option<Material>, MaterialError> {
    Ok(Some(match kind {
        SectionKind::Certificate => certificate(der)?,
        SectionKind::PublicKey => public_key(der)?,
        SectionKind::Csr => csr(der)?,
        SectionKind::PrivateKey => {
            private_key(PrivatePkcs8KeyDer::from(der.to_vec()).into(), "PKCS#8")?
        }
        SectionKind::EcPrivateKey => {
            private_key(PrivateSec1KeyDer::from(der.to_vec()).into(), "SEC1")?
        }
        SectionKind::RsaPrivateKey => {
            private_key(PrivatePkcs1KeyDer::from(der.to_vec()).into(), "PKCS#1")?
        }
        _ => return Ok(None),
    }))
}

/// DER carries no label: try each form in turn.
fn from_der_guess(der: &[u8]) -> Option<Material> {
    certificate(der)
        .or_else(|_| csr(der))
        .or_else(|_| public_key(der))
        .or_else(|_| private_key(PrivatePkcs8KeyDer::from(der.to_vec()).into(), "PKCS#8"))
        .or_else(|_| private_key(PrivateSec1KeyDer::from(der.to_vec()).into(), "SEC1"))
        .or_else(|_| private_key(PrivatePkcs1KeyDer::from(der.to_vec()).into(), "PKCS#1"))
        .ok()
}

fn certificate(der: &[u8]) -> Result<Material, MaterialError> {
    let info = cert_info(der)?;
    Ok(Material::Certificate {
        subject: info.subject,
        spki: info.spki,
    })
}

fn csr(der: &[u8]) -> Result<Material, MaterialError> {
    let (rest, req) =
        X509CertificationRequest::from_der(der).map_err(|e| MaterialError::Parse {
            what: "CSR",
            detail: e.to_string(),
        })?;
    if !rest.is_empty() {
        return Err(MaterialError::Parse {
            what: "CSR",
            detail: "trailing data".into(),
        });
    }
    Ok(Material::Csr {
        subject: req.certification_request_info.subject.to_string(),
        spki: req.certification_request_info.subject_pki.raw.to_vec(),
    })
}

fn public_key(der: &[u8]) -> Result<Material, MaterialError> {
    let (rest, spki) = SubjectPublicKeyInfo::from_der(der).map_err(|e| MaterialError::Parse {
        what: "public key",
        detail: e.to_string(),
    })?;
    if !rest.is_empty() || spki.parsed().is_err() {
        return Err(MaterialError::Parse {
            what: "public key",
            detail: "not a SubjectPublicKeyInfo".into(),
        });
    }
    Ok(Material::PublicKey {
        spki: spki.raw.to_vec(),
    })
}

fn private_key(key: PrivateKeyDer<'_>, form: &'static str) -> Result<Material, MaterialError> {
    let pair = rcgen::KeyPair::try_from(&key).map_err(|e| MaterialError::Parse {
        what: "private key",
        detail: e.to_string(),
    })?;
    Ok(Material::PrivateKey {
        form,
        spki: pair.subject_public_key_info(),
    })
}

/// The algorithm (and size or curve) of an SPKI.
pub(crate) fn key_algorithm(spki: &SubjectPublicKeyInfo<'_>) -> KeyAlgorithm {
    let alg = &spki.algorithm.algorithm;
    if *alg == x509_parser::oid_registry::OID_PKCS1_RSAENCRYPTION {
        return match spki.parsed() {
            Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => KeyAlgorithm::Rsa(rsa.key_size()),
            _ => KeyAlgorithm::Other("RSA (unparsable)".into()),
        };
    }
    if *alg == x509_parser::oid_registry::OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok());
        return match curve {
            Some(c) if c == x509_parser::oid_registry::OID_EC_P256 => KeyAlgorithm::EcP256,
            Some(c) if c == x509_parser::oid_registry::OID_NIST_EC_P384 => KeyAlgorithm::EcP384,
            Some(c) => KeyAlgorithm::Other(format!("EC curve {c}")),
            None => KeyAlgorithm::Other("EC (no curve)".into()),
        };
    }
    if *alg == x509_parser::oid_registry::OID_SIG_ED25519 {
        return KeyAlgorithm::Ed25519;
    }
    KeyAlgorithm::Other(format!("algorithm {alg}"))
}

/// A PEM section of any kind, so one pass sees everything a file holds.
struct AnySection(SectionKind, Vec<u8>);

impl PemObject for AnySection {
    fn from_pem(kind: SectionKind, der: Vec<u8>) -> Option<Self> {
        Some(AnySection(kind, der))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_covers_one_label_only() {
        assert!(dns_name_matches("*.example.com", "api.example.com"));
        assert!(!dns_name_matches("*.example.com", "example.com"));
        assert!(!dns_name_matches("*.example.com", "a.b.example.com"));
        assert!(dns_name_matches("API.example.com", "api.EXAMPLE.com"));
    }
}
