//! A throw-away PKI per test: a root, optionally an intermediate, and leaves, all minted with
//! rcgen. Pins are computed here from rcgen's own SPKI bytes — an oracle independent of the
//! code under test.

use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, PublicKeyData as _,
};
use sha2::{Digest, Sha256};

/// The pin of SPKI bytes: base64(sha256(spki)).
pub fn oracle_pin(spki_der: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(spki_der))
}

pub struct Pki {
    pub root: CertifiedIssuer<'static, KeyPair>,
    pub root_pin: String,
    pub intermediate: Option<CertifiedIssuer<'static, KeyPair>>,
    pub intermediate_pin: Option<String>,
}

/// A leaf with its chain and key.
#[derive(Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub cert_der: Vec<u8>,
    /// Intermediates sent after the leaf.
    pub chain_rest_pem: String,
    pub key_pem: String,
    pub pin: String,
}

impl Issued {
    pub fn chain_pem(&self) -> String {
        format!("{}{}", self.cert_pem, self.chain_rest_pem)
    }
}

impl Pki {
    pub fn new(name: &str) -> Self {
        let key = KeyPair::generate().expect("root key");
        let root_pin = oracle_pin(&key.subject_public_key_info());
        let root = CertifiedIssuer::self_signed(ca_params(&format!("{name} test root")), key)
            .expect("root cert");
        Pki {
            root,
            root_pin,
            intermediate: None,
            intermediate_pin: None,
        }
    }

    pub fn with_intermediate(name: &str) -> Self {
        let mut pki = Pki::new(name);
        let key = KeyPair::generate().expect("intermediate key");
        pki.intermediate_pin = Some(oracle_pin(&key.subject_public_key_info()));
        pki.intermediate = Some(
            CertifiedIssuer::signed_by(
                ca_params(&format!("{name} test intermediate")),
                key,
                &pki.root,
            )
            .expect("intermediate"),
        );
        pki
    }

    pub fn root_pem(&self) -> String {
        self.root.pem()
    }

    /// A leaf for `names` (DNS names or IPs) with a new key, valid from yesterday for `days`.
    pub fn leaf(&self, names: &[&str]) -> Issued {
        self.leaf_with_key(names, KeyPair::generate().expect("leaf key"), 90)
    }

    pub fn leaf_valid_days(&self, names: &[&str], days: i64) -> Issued {
        self.leaf_with_key(names, KeyPair::generate().expect("leaf key"), days)
    }

    /// A leaf on a given key: a renewal when the key is reused.
    pub fn leaf_with_key(&self, names: &[&str], key: KeyPair, days: i64) -> Issued {
        let mut params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .expect("leaf params");
        params
            .distinguished_name
            .push(DnType::CommonName, names.first().copied().unwrap_or("leaf"));
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::days(days);
        let issuer = self.intermediate.as_ref().unwrap_or(&self.root);
        let cert = params.signed_by(&key, issuer).expect("sign leaf");
        Issued {
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            chain_rest_pem: self
                .intermediate
                .as_ref()
                .map(|i| i.pem())
                .unwrap_or_default(),
            key_pem: key.serialize_pem(),
            pin: oracle_pin(&key.subject_public_key_info()),
        }
    }
}

fn ca_params(cn: &str) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    params.distinguished_name.push(DnType::CommonName, cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}
