//! JWT verification with the `jsonwebtoken` crate: key by `kid`, signature with the key's own
//! algorithms, then `exp`/`nbf` (with leeway), `iss`, `aud`, the token's age from `iat`,
//! required claim values and the Approov `pay` binding.
//!
//! `alg: none` cannot even be expressed: the crate's algorithm type has no such value, so such a
//! header fails to parse and counts as a bad signature.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::header::{HeaderMap, HeaderName};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Validation, decode, decode_header};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::keys::KeySet;
use super::{AuthResult, ClaimHeaders, Failure};
use crate::config::JwtPolicy;

#[derive(Debug)]
pub struct JwtVerifier {
    keys: KeySet,
    leeway: u64,
    max_token_age: Option<u64>,
    bind_header: Option<HeaderName>,
    required_claims: Vec<(String, String)>,
    claims_to_headers: Vec<(String, HeaderName)>,
}

impl JwtVerifier {
    pub fn new(p: &JwtPolicy, mut keys: KeySet) -> Self {
        for k in keys.keys_mut() {
            k.validation = validation(p, &k.algorithms);
        }
        JwtVerifier {
            keys,
            leeway: p.leeway.as_secs(),
            max_token_age: p.max_token_age.map(|d| d.as_secs()),
            bind_header: p.bind_header.clone(),
            required_claims: p
                .required_claims
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            claims_to_headers: p.claims_to_headers.clone(),
        }
    }

    /// Verifies `token`; `headers` are the request's (for the binding), `now` Unix seconds.
    pub fn verify(
        &self,
        token: &str,
        headers: &HeaderMap,
        now: u64,
    ) -> Result<ClaimHeaders, Failure> {
        let header = decode_header(token).map_err(|_| {
            Failure::new(
                AuthResult::BadSignature,
                "not a signed JWT (malformed, or an algorithm such as none that is never accepted)",
            )
        })?;
        let key = self.keys.find(header.kid.as_deref()).ok_or_else(|| {
            Failure::new(
                AuthResult::UnknownKey,
                match &header.kid {
                    // The kid is client input: quoted with escapes and cut short for the log.
                    Some(k) => format!(
                        "no key with kid {:?}",
                        k.chars().take(64).collect::<String>()
                    ),
                    None => "token names no kid and the JWKS holds several keys".into(),
                },
            )
        })?;
        if !key.algorithms.contains(&header.alg) {
            return Err(Failure::new(
                AuthResult::BadSignature,
                format!("algorithm {:?} is not accepted for this key", header.alg),
            ));
        }
        let data = decode::<Map<String, Value>>(token, &key.key, &key.validation)
            .map_err(|e| classify(e.kind()))?;
        let claims = data.claims;
        if let Some(max) = self.max_token_age {
            let iat = claims.get("iat").and_then(Value::as_u64).ok_or_else(|| {
                Failure::new(AuthResult::BadClaim, "no iat (max_token_age is set)")
            })?;
            if iat > now + self.leeway {
                return Err(Failure::new(AuthResult::BadClaim, "iat is in the future"));
            }
            if now.saturating_sub(iat) > max + self.leeway {
                return Err(Failure::new(
                    AuthResult::Expired,
                    "issued longer ago than max_token_age",
                ));
            }
        }
        for (name, want) in &self.required_claims {
            if claims.get(name).and_then(Value::as_str) != Some(want.as_str()) {
                return Err(Failure::new(
                    AuthResult::BadClaim,
                    format!("claim {name} does not have the required value"),
                ));
            }
        }
        if let Some(bind) = &self.bind_header {
            self.check_binding(bind, &claims, headers)?;
        }
        Ok(self
            .claims_to_headers
            .iter()
            .filter_map(|(claim, h)| {
                let v = match claims.get(claim)? {
                    Value::String(s) => s.clone(),
                    v @ (Value::Number(_) | Value::Bool(_)) => v.to_string(),
                    _ => return None,
                };
                Some((h.clone(), v))
            })
            .collect())
    }

    /// Approov token binding: `pay` is base64(SHA-256(value of the bound header)).
    fn check_binding(
        &self,
        bind: &HeaderName,
        claims: &Map<String, Value>,
        headers: &HeaderMap,
    ) -> Result<(), Failure> {
        let pay = claims
            .get("pay")
            .and_then(Value::as_str)
            .ok_or_else(|| Failure::new(AuthResult::Binding, "no pay claim"))?;
        let value = headers.get(bind).ok_or_else(|| {
            Failure::new(AuthResult::Binding, format!("no {bind} header to bind"))
        })?;
        let want = STANDARD.encode(Sha256::digest(value.as_bytes()));
        if pay.trim_end_matches('=') != want.trim_end_matches('=') {
            return Err(Failure::new(
                AuthResult::Binding,
                format!("pay claim does not match the {bind} header"),
            ));
        }
        Ok(())
    }
}

/// The registered claims checked for tokens a key with `algorithms` verifies.
fn validation(p: &JwtPolicy, algorithms: &[jsonwebtoken::Algorithm]) -> Validation {
    let mut v = Validation::new(algorithms[0]);
    v.algorithms = algorithms.to_vec();
    v.leeway = p.leeway.as_secs();
    v.validate_exp = true;
    v.validate_nbf = true;
    let mut required = vec!["exp"];
    if let Some(iss) = &p.issuer {
        v.set_issuer(&[iss]);
        required.push("iss");
    }
    if p.audience.is_empty() {
        v.validate_aud = false;
    } else {
        v.set_audience(&p.audience);
        required.push("aud");
    }
    v.set_required_spec_claims(&required);
    v
}

/// The counted result of a `jsonwebtoken` error, with a reason for the log.
fn classify(kind: &ErrorKind) -> Failure {
    let (result, reason) = match kind {
        ErrorKind::ExpiredSignature => (AuthResult::Expired, "expired (exp)".to_string()),
        ErrorKind::ImmatureSignature => (AuthResult::BadClaim, "not valid yet (nbf)".into()),
        ErrorKind::InvalidIssuer => (
            AuthResult::BadClaim,
            "iss is not the configured issuer".into(),
        ),
        ErrorKind::InvalidAudience => (
            AuthResult::BadClaim,
            "aud holds none of the configured audiences".into(),
        ),
        ErrorKind::MissingRequiredClaim(c) => (AuthResult::BadClaim, format!("no {c} claim")),
        ErrorKind::InvalidClaimFormat(c) => (
            AuthResult::BadClaim,
            format!("claim {c} has the wrong type"),
        ),
        ErrorKind::InvalidSubject => (AuthResult::BadClaim, "sub does not match".into()),
        ErrorKind::InvalidSignature => {
            (AuthResult::BadSignature, "signature does not verify".into())
        }
        ErrorKind::InvalidAlgorithm => (
            AuthResult::BadSignature,
            "algorithm not accepted for this key".into(),
        ),
        _ => (AuthResult::BadSignature, "malformed token".into()),
    };
    Failure { result, reason }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
    use serde_json::json;

    use super::*;
    use crate::config::KeyFile;

    const SECRET: [u8; 32] = [42; 32];

    fn verifier(max_token_age: Option<u64>, required: &[(&str, &str)]) -> JwtVerifier {
        let secret = STANDARD.encode(SECRET);
        let (keys, _) =
            KeySet::from_key_file(secret.as_bytes(), &[Algorithm::HS256]).expect("secret");
        let policy = JwtPolicy {
            keys: KeyFile::Key("k".into()),
            algorithms: vec![Algorithm::HS256],
            issuer: None,
            audience: vec![],
            leeway: Duration::from_secs(30),
            max_token_age: max_token_age.map(Duration::from_secs),
            max_key_age: None,
            bind_header: Some(http::header::AUTHORIZATION),
            required_claims: required
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            claims_to_headers: vec![
                ("sub".into(), HeaderName::from_static("x-app-id")),
                ("tier".into(), HeaderName::from_static("x-tier")),
            ],
        };
        JwtVerifier::new(&policy, keys)
    }

    fn token(claims: Value) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(&SECRET).expect("key"),
        )
        .expect("token")
    }

    fn bound(auth: &str) -> (HeaderMap, String) {
        let mut h = HeaderMap::new();
        h.insert("authorization", auth.parse().expect("value"));
        (h, STANDARD.encode(Sha256::digest(auth.as_bytes())))
    }

    #[test]
    fn age_required_claims_and_binding_each_fail_with_their_own_result() {
        let now = 1_900_000_000;
        let v = verifier(Some(3600), &[("scope", "orders")]);
        let (h, pay) = bound("Bearer u1");
        let good = json!({"exp": now + 60, "iat": now - 10, "scope": "orders", "pay": pay, "sub": "app", "tier": 2});
        // jsonwebtoken checks exp against the real clock, so "now" is in the future here only
        // for iat; exp stays valid either way.
        let claims = v.verify(&token(good.clone()), &h, now).expect("good token");
        assert_eq!(
            claims,
            vec![
                (HeaderName::from_static("x-app-id"), "app".to_string()),
                (HeaderName::from_static("x-tier"), "2".to_string())
            ]
        );
        let result = |patch: Value, headers: &HeaderMap| {
            let mut c = good.clone();
            for (k, val) in patch.as_object().expect("object") {
                if val.is_null() {
                    c.as_object_mut().expect("object").remove(k);
                } else {
                    c[k] = val.clone();
                }
            }
            v.verify(&token(c), headers, now)
                .map(|_| ())
                .map_err(|f| f.result)
        };
        assert_eq!(
            result(json!({"iat": now - 7200}), &h),
            Err(AuthResult::Expired)
        );
        assert_eq!(result(json!({"iat": null}), &h), Err(AuthResult::BadClaim));
        assert_eq!(
            result(json!({"iat": now + 600}), &h),
            Err(AuthResult::BadClaim)
        );
        assert_eq!(
            result(json!({"scope": "admin"}), &h),
            Err(AuthResult::BadClaim)
        );
        assert_eq!(result(json!({"pay": null}), &h), Err(AuthResult::Binding));
        let (other, _) = bound("Bearer u2");
        assert_eq!(result(json!({}), &other), Err(AuthResult::Binding));
        assert_eq!(
            result(json!({}), &HeaderMap::new()),
            Err(AuthResult::Binding)
        );
        assert_eq!(result(json!({"exp": null}), &h), Err(AuthResult::BadClaim));
    }
}
