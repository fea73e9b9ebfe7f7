//! Key files → typed verification keys, each with the algorithms it may verify.
//!
//! A key's algorithms are the policy's algorithms of the key's own type (and, in a JWKS, its
//! `alg` if it names one), so an RSA public key can never act as an HMAC secret and a P-256 key
//! never verifies ES384. Keys for encryption (`use: enc`) are left out.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, Validation};

/// One verification key.
#[derive(Debug)]
pub struct VerifyKey {
    /// The JWK's `kid`; `None` for a key file, which stands for whatever `kid` a token names.
    pub kid: Option<String>,
    pub key: DecodingKey,
    /// Never empty.
    pub algorithms: Vec<Algorithm>,
    /// The checks for tokens this key verifies, set once by the policy (not per request).
    pub validation: Validation,
}

#[derive(Debug)]
pub struct KeySet {
    keys: Vec<VerifyKey>,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("not a JWKS (a JSON object with \"keys\"): {0}")]
    Json(#[from] serde_json::Error),
    #[error("key {kid}: {what}")]
    Jwk { kid: String, what: String },
    #[error("two keys have kid \"{0}\"")]
    DuplicateKid(String),
    #[error("no key can verify any of the configured algorithms")]
    NoUsableKey,
    #[error(
        "HS* keys are a base64 secret (e.g. `openssl rand -base64 64`); this file is not base64"
    )]
    NotBase64,
    #[error("the secret is {0} bytes; {1} needs at least {2} (RFC 7518 §3.2)")]
    ShortSecret(usize, &'static str, usize),
    #[error("HS* algorithms with a PEM key: a public key must never be used as an HMAC secret")]
    PemForHmac,
    #[error(
        "not a PEM public key for the configured algorithms (\"PUBLIC KEY\" or \"RSA PUBLIC KEY\")"
    )]
    NotPublicKey,
}

impl KeySet {
    /// Parses a JWKS; notes name keys left out because no configured algorithm fits them.
    pub fn from_jwks(
        bytes: &[u8],
        allowed: &[Algorithm],
    ) -> Result<(KeySet, Vec<String>), KeyError> {
        let set: JwkSet = serde_json::from_slice(bytes)?;
        let mut keys: Vec<VerifyKey> = Vec::new();
        let mut notes = Vec::new();
        for (i, jwk) in set.keys.iter().enumerate() {
            let kid = jwk.common.key_id.clone();
            let label = kid.clone().unwrap_or_else(|| format!("#{i}"));
            if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
                continue;
            }
            let (family, curve) = match &jwk.algorithm {
                AlgorithmParameters::RSA(_) => (AlgorithmFamily::Rsa, None),
                AlgorithmParameters::EllipticCurve(p) => (AlgorithmFamily::Ec, Some(&p.curve)),
                AlgorithmParameters::OctetKeyPair(_) => (AlgorithmFamily::Ed, None),
                AlgorithmParameters::OctetKey(_) => (AlgorithmFamily::Hmac, None),
                _ => {
                    notes.push(format!("key {label} has an unsupported key type; left out"));
                    continue;
                }
            };
            let named = match jwk.common.key_algorithm.map(Algorithm::try_from) {
                Some(Ok(a)) => Some(a),
                Some(Err(_)) => {
                    notes.push(format!("key {label} names an unsupported alg; left out"));
                    continue;
                }
                None => None,
            };
            let algorithms: Vec<Algorithm> = allowed
                .iter()
                .copied()
                .filter(|a| a.family() == family)
                .filter(|a| named.is_none_or(|n| n == *a))
                .filter(|a| curve_fits(*a, curve))
                .collect();
            if algorithms.is_empty() {
                notes.push(format!(
                    "key {label} fits none of the configured algorithms; left out"
                ));
                continue;
            }
            can_verify(&jwk.algorithm).map_err(|what| KeyError::Jwk {
                kid: label.clone(),
                what,
            })?;
            let key = DecodingKey::from_jwk(jwk).map_err(|e| KeyError::Jwk {
                kid: label.clone(),
                what: e.to_string(),
            })?;
            if let Some(k) = &kid
                && keys.iter().any(|o| o.kid.as_deref() == Some(k))
            {
                return Err(KeyError::DuplicateKid(k.clone()));
            }
            keys.push(VerifyKey {
                kid,
                key,
                validation: Validation::new(algorithms[0]),
                algorithms,
            });
        }
        if keys.is_empty() {
            return Err(KeyError::NoUsableKey);
        }
        Ok((KeySet { keys }, notes))
    }

    /// Parses a key file: a base64 secret for HS*, else a PEM public key.
    pub fn from_key_file(
        bytes: &[u8],
        allowed: &[Algorithm],
    ) -> Result<(KeySet, Vec<String>), KeyError> {
        let hmac = allowed.iter().all(|a| a.family() == AlgorithmFamily::Hmac);
        let key = if hmac {
            if bytes.windows(5).any(|w| w == b"-----") {
                return Err(KeyError::PemForHmac);
            }
            let secret = decode_secret(bytes).ok_or(KeyError::NotBase64)?;
            for a in allowed {
                let (name, min) = match a {
                    Algorithm::HS384 => ("HS384", 48),
                    Algorithm::HS512 => ("HS512", 64),
                    _ => ("HS256", 32),
                };
                if secret.len() < min {
                    return Err(KeyError::ShortSecret(secret.len(), name, min));
                }
            }
            VerifyKey {
                kid: None,
                key: DecodingKey::from_secret(&secret).map_err(|_| KeyError::NotBase64)?,
                validation: Validation::new(allowed[0]),
                algorithms: allowed.to_vec(),
            }
        } else {
            let families = [
                (AlgorithmFamily::Rsa, DecodingKey::from_rsa_pem(bytes)),
                (AlgorithmFamily::Ec, DecodingKey::from_ec_pem(bytes)),
                (AlgorithmFamily::Ed, DecodingKey::from_ed_pem(bytes)),
            ];
            let mut found = None;
            for (family, parsed) in families {
                let algorithms: Vec<Algorithm> = allowed
                    .iter()
                    .copied()
                    .filter(|a| a.family() == family)
                    .collect();
                if let (Ok(key), false) = (parsed, algorithms.is_empty()) {
                    found = Some(VerifyKey {
                        kid: None,
                        key,
                        validation: Validation::new(algorithms[0]),
                        algorithms,
                    });
                    break;
                }
            }
            found.ok_or(KeyError::NotPublicKey)?
        };
        Ok((KeySet { keys: vec![key] }, Vec::new()))
    }

    pub fn keys_mut(&mut self) -> impl Iterator<Item = &mut VerifyKey> {
        self.keys.iter_mut()
    }

    /// The key for a token's `kid`. A key file answers any `kid`; a JWKS needs the token's
    /// `kid` unless it holds a single key.
    pub fn find(&self, kid: Option<&str>) -> Option<&VerifyKey> {
        if let [only] = self.keys.as_slice()
            && (only.kid.is_none() || kid.is_none())
        {
            return Some(only);
        }
        let kid = kid?;
        self.keys.iter().find(|k| k.kid.as_deref() == Some(kid))
    }
}

/// RSA moduli this many bits long verify (the verifier takes 2048 to 8192 bits).
const RSA_BITS: std::ops::RangeInclusive<usize> = 2048..=8192;

/// Whether a JWK is a key that can verify a signature: an RSA modulus of 2048–8192 bits with
/// an odd exponent above 1, an EC point of the curve's length that lies on the curve, an
/// Ed25519 key. A key that fails here would only ever answer 401, so the file is refused.
fn can_verify(params: &AlgorithmParameters) -> Result<(), String> {
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, ECDSA_P384_SHA384_FIXED, ED25519};
    use aws_lc_rs::signature::{ParsedPublicKey, VerificationAlgorithm};
    let b64 = |field: &str, v: &str| {
        URL_SAFE_NO_PAD
            .decode(v.trim_end_matches('='))
            .map_err(|_| format!("`{field}` is not base64url"))
    };
    match params {
        AlgorithmParameters::RSA(p) => {
            let n = b64("n", &p.n)?;
            let e = b64("e", &p.e)?;
            let n = trim_zeros(&n);
            let bits = n
                .first()
                .map_or(0, |b| n.len() * 8 - b.leading_zeros() as usize);
            if !RSA_BITS.contains(&bits) {
                return Err(format!(
                    "the RSA modulus `n` is {bits} bits; keys of {} to {} bits are accepted",
                    RSA_BITS.start(),
                    RSA_BITS.end()
                ));
            }
            let e = trim_zeros(&e);
            if e.len() > 8 || e.last().is_none_or(|b| b & 1 == 0) || e == [1] {
                return Err("the RSA exponent `e` is not an odd number above 1".into());
            }
            Ok(())
        }
        AlgorithmParameters::EllipticCurve(p) => {
            let (alg, len): (&'static dyn VerificationAlgorithm, usize) = match p.curve {
                EllipticCurve::P256 => (&ECDSA_P256_SHA256_FIXED, 32),
                EllipticCurve::P384 => (&ECDSA_P384_SHA384_FIXED, 48),
                _ => return Ok(()), // no configured algorithm fits it: left out with a note
            };
            let (x, y) = (b64("x", &p.x)?, b64("y", &p.y)?);
            if x.len() != len || y.len() != len {
                return Err(format!(
                    "`x` and `y` are {} and {} bytes; {:?} needs {len} each",
                    x.len(),
                    y.len(),
                    p.curve
                ));
            }
            let point = [&[4u8][..], &x, &y].concat();
            ParsedPublicKey::new(alg, point)
                .map(drop)
                .map_err(|_| format!("the point (`x`, `y`) is not on {:?}", p.curve))
        }
        AlgorithmParameters::OctetKeyPair(p) => {
            if p.curve != EllipticCurve::Ed25519 {
                return Err(format!(
                    "crv {:?} cannot sign: EdDSA needs Ed25519",
                    p.curve
                ));
            }
            ParsedPublicKey::new(&ED25519, b64("x", &p.x)?)
                .map(drop)
                .map_err(|_| "`x` is not an Ed25519 public key".into())
        }
        _ => Ok(()),
    }
}

fn trim_zeros(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    &b[start..]
}

/// ES256 is P-256 only and ES384 P-384 only (RFC 7518 §3.4).
fn curve_fits(a: Algorithm, curve: Option<&EllipticCurve>) -> bool {
    match (a, curve) {
        (Algorithm::ES256, Some(c)) => *c == EllipticCurve::P256,
        (Algorithm::ES384, Some(c)) => *c == EllipticCurve::P384,
        _ => true,
    }
}

/// Base64 in any of its common spellings, whitespace (a trailing newline) ignored.
fn decode_secret(bytes: &[u8]) -> Option<Vec<u8>> {
    let text: Vec<u8> = bytes
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    [STANDARD, URL_SAFE, STANDARD_NO_PAD, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|e| e.decode(&text).ok())
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_rsa_jwk_never_verifies_hmac_and_a_named_alg_narrows_it() {
        // A 2048-bit modulus: shorter ones are refused.
        let n = URL_SAFE_NO_PAD.encode([0xc3u8; 256]);
        let jwks = format!(
            r#"{{"keys":[
            {{"kty":"RSA","kid":"r1","alg":"RS256","n":"{n}","e":"AQAB"}},
            {{"kty":"RSA","kid":"enc","use":"enc","n":"{n}","e":"AQAB"}}]}}"#
        );
        let jwks = jwks.as_bytes();
        let (set, notes) =
            KeySet::from_jwks(jwks, &[Algorithm::RS256, Algorithm::RS512]).expect("jwks");
        assert!(notes.is_empty(), "{notes:?}");
        let k = set.find(Some("r1")).expect("r1");
        assert_eq!(k.algorithms, [Algorithm::RS256]);
        assert!(set.find(Some("enc")).is_none() || set.keys.len() == 1);
        let err = KeySet::from_jwks(jwks, &[Algorithm::HS256]).expect_err("no hmac key");
        assert!(matches!(err, KeyError::NoUsableKey));
    }

    #[test]
    fn degenerate_rsa_ec_and_ed_keys_are_refused_naming_their_kid() {
        let refused = |jwk: &str, alg: Algorithm| {
            let jwks = format!("{{\"keys\":[{jwk}]}}");
            match KeySet::from_jwks(jwks.as_bytes(), &[alg]) {
                Err(KeyError::Jwk { kid, what }) => format!("{kid}: {what}"),
                other => panic!("{jwk}: {other:?}"),
            }
        };
        let e = refused(
            r#"{"kty":"RSA","kid":"tiny","n":"sQ","e":"AQAB"}"#,
            Algorithm::RS256,
        );
        assert!(e.starts_with("tiny: the RSA modulus `n` is 8 bits"), "{e}");
        let n = URL_SAFE_NO_PAD.encode([0xc3u8; 256]);
        let e = refused(
            &format!(r#"{{"kty":"RSA","kid":"e1","n":"{n}","e":"AQ"}}"#),
            Algorithm::RS256,
        );
        assert!(e.contains("e1: the RSA exponent"), "{e}");
        let x = URL_SAFE_NO_PAD.encode([1u8; 32]);
        let e = refused(
            &format!(r#"{{"kty":"EC","kid":"off","crv":"P-256","x":"{x}","y":"{x}"}}"#),
            Algorithm::ES256,
        );
        assert!(e.contains("off: the point (`x`, `y`) is not on"), "{e}");
        let short = URL_SAFE_NO_PAD.encode([1u8; 31]);
        let e = refused(
            &format!(r#"{{"kty":"EC","kid":"short","crv":"P-256","x":"{short}","y":"{x}"}}"#),
            Algorithm::ES256,
        );
        assert!(e.contains("short: `x` and `y` are 31 and 32 bytes"), "{e}");
        assert!(
            KeySet::from_jwks(
                format!(r#"{{"keys":[{{"kty":"RSA","kid":"ok","n":"{n}","e":"AQAB"}}]}}"#)
                    .as_bytes(),
                &[Algorithm::RS256]
            )
            .is_ok()
        );
    }

    #[test]
    fn hmac_secrets_are_base64_long_enough_and_never_pem() {
        let long = STANDARD.encode([7u8; 32]);
        assert!(KeySet::from_key_file(format!("{long}\n").as_bytes(), &[Algorithm::HS256]).is_ok());
        let short = STANDARD.encode([7u8; 16]);
        assert!(matches!(
            KeySet::from_key_file(short.as_bytes(), &[Algorithm::HS256]),
            Err(KeyError::ShortSecret(16, "HS256", 32))
        ));
        assert!(matches!(
            KeySet::from_key_file(b"-----BEGIN PUBLIC KEY-----\nAAAA\n", &[Algorithm::HS256]),
            Err(KeyError::PemForHmac)
        ));
    }
}
