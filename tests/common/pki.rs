//! A throw-away PKI per test: a root, optionally an intermediate, and leaves, all minted with
//! rcgen. Pins are computed here from rcgen's own SPKI bytes — an oracle independent of the
//! code under test. [`Pki`] issues leaves for proxies and upstreams; [`Chain`] is a fixed
//! root → intermediate → leaf with the leaf on any key type, for the toolkit tests (which
//! know it as `support::Pki`).
#![allow(dead_code)]

use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384, PKCS_ED25519,
    PKCS_RSA_SHA256, PublicKeyData as _, RsaKeySize,
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

/// Key types the tests mint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    P256,
    P384,
    Rsa2048,
    Ed25519,
}

pub fn key(alg: Alg) -> KeyPair {
    match alg {
        Alg::P256 => KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256),
        Alg::P384 => KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384),
        Alg::Rsa2048 => KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_2048),
        Alg::Ed25519 => KeyPair::generate_for(&PKCS_ED25519),
    }
    .expect("rcgen generates every key type the tests use")
}

/// base64(sha256(SPKI)) from rcgen's own encoding of the public key.
pub fn spki_pin(key: &KeyPair) -> String {
    oracle_pin(&key.subject_public_key_info())
}

/// Root → intermediate → leaf, the leaf with the given key type and DNS names.
pub struct Chain {
    pub root_pem: String,
    pub inter_pem: String,
    pub leaf_pem: String,
    pub leaf_der: Vec<u8>,
    pub inter_der: Vec<u8>,
    pub leaf_key: KeyPair,
    /// Pins from rcgen's SPKI bytes, hashed here: an oracle independent of the code under test.
    pub leaf_pin: String,
    pub inter_pin: String,
    pub root_pin: String,
}

impl Chain {
    pub fn new(leaf_alg: Alg, names: &[&str]) -> Chain {
        Chain::with_leaf_key(key(leaf_alg), names)
    }

    pub fn with_leaf_key(leaf_key: KeyPair, names: &[&str]) -> Chain {
        // Plain CA parameters (no key usages), as the toolkit's golden files were made with.
        let plain_ca = |cn: &str| {
            let mut p = CertificateParams::new(Vec::<String>::new()).expect("no names");
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            p.distinguished_name.push(DnType::CommonName, cn);
            p
        };
        let root_key = key(Alg::P256);
        let root_params = plain_ca("pinproxy test root");
        let root = root_params.self_signed(&root_key).expect("root");
        let root_pin = spki_pin(&root_key);
        let root_issuer = Issuer::new(root_params, root_key);

        let inter_key = key(Alg::P256);
        let inter_params = plain_ca("pinproxy test intermediate");
        let inter = inter_params
            .signed_by(&inter_key, &root_issuer)
            .expect("intermediate");
        let inter_pin = spki_pin(&inter_key);
        let inter_issuer = Issuer::new(inter_params, inter_key);

        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut leaf_params = CertificateParams::new(names.clone()).expect("valid names");
        leaf_params.distinguished_name.push(
            DnType::CommonName,
            names.first().cloned().unwrap_or_else(|| "leaf".into()),
        );
        let leaf = leaf_params
            .signed_by(&leaf_key, &inter_issuer)
            .expect("leaf");
        Chain {
            root_pem: root.pem(),
            inter_pem: inter.pem(),
            leaf_pem: leaf.pem(),
            leaf_der: leaf.der().to_vec(),
            inter_der: inter.der().to_vec(),
            leaf_pin: spki_pin(&leaf_key),
            leaf_key,
            inter_pin,
            root_pin,
        }
    }

    /// What a listener serves: leaf, then intermediate.
    pub fn chain_pem(&self) -> String {
        format!("{}{}", self.leaf_pem, self.inter_pem)
    }
}
