//! `[auth.NAME]` policies: the raw serde mirror and its validation into [`AuthPolicy`].
//!
//! Presets fill in what Firebase App Check and Approov fix, so an operator cannot get their
//! issuer or algorithms subtly wrong. Only the shape of the config is checked here; key files
//! are read and parsed when a snapshot is built (the `auth` module).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::header::HeaderName;
use jsonwebtoken::{Algorithm, AlgorithmFamily};
use serde::Deserialize;

use crate::diag::{Kind, Problem, Problems};

/// A validated token policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthPolicy {
    pub name: String,
    pub mode: AuthMode,
    /// Where the token or key is read from.
    pub header: HeaderName,
    /// `header` is Authorization: the value is `Bearer <token>` and a refusal is a 401 challenge.
    pub bearer: bool,
    pub forward_token: bool,
    pub kind: AuthKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    Enforce,
    Report,
}

impl AuthMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMode::Enforce => "enforce",
            AuthMode::Report => "report",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthKind {
    Jwt(Box<JwtPolicy>),
    /// SHA-256 digests of the accepted keys.
    ApiKey {
        sha256: Vec<[u8; 32]>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtPolicy {
    pub keys: KeyFile,
    /// One family: HMAC, or asymmetric ones only (no HS/RS confusion).
    pub algorithms: Vec<Algorithm>,
    pub issuer: Option<String>,
    /// Any of these; empty: `aud` is not checked.
    pub audience: Vec<String>,
    pub leeway: Duration,
    /// Tokens whose `iat` is older are expired whatever their `exp`.
    pub max_token_age: Option<Duration>,
    /// A key file older than this is a warning (the job refreshing it has stopped).
    pub max_key_age: Option<Duration>,
    /// Approov token binding: claim `pay` = base64(SHA-256(value of this header)).
    pub bind_header: Option<HeaderName>,
    pub required_claims: BTreeMap<String, String>,
    /// Claim name → request header set from its verified value.
    pub claims_to_headers: Vec<(String, HeaderName)>,
}

/// Where a JWT policy's keys come from, resolved against the config directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyFile {
    Jwks(PathBuf),
    /// A base64 secret (HS*) or a PEM public key (RS*, PS*, ES*, EdDSA).
    Key(PathBuf),
}

impl KeyFile {
    pub fn path(&self) -> &Path {
        match self {
            KeyFile::Jwks(p) | KeyFile::Key(p) => p,
        }
    }

    pub fn field(&self) -> &'static str {
        match self {
            KeyFile::Jwks(_) => "jwks",
            KeyFile::Key(_) => "key",
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    pub kind: Option<RawAuthKind>,
    pub preset: Option<RawPreset>,
    pub mode: Option<RawAuthMode>,
    pub header: Option<String>,
    pub jwks: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub algorithms: Option<Vec<String>>,
    pub issuer: Option<String>,
    pub audience: Option<Vec<String>>,
    #[serde(with = "humantime_serde", default)]
    pub leeway: Option<Duration>,
    #[serde(with = "humantime_serde", default)]
    pub max_token_age: Option<Duration>,
    #[serde(with = "humantime_serde", default)]
    pub max_key_age: Option<Duration>,
    pub bind_header: Option<String>,
    #[serde(default)]
    pub required_claims: BTreeMap<String, String>,
    #[serde(default)]
    pub claims_to_headers: BTreeMap<String, String>,
    #[serde(default)]
    pub forward_token: bool,
    pub sha256: Option<Vec<String>>,
    pub project_number: Option<String>,
    pub project_id: Option<String>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RawAuthKind {
    Jwt,
    ApiKey,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RawPreset {
    FirebaseAppCheck,
    Approov,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub enum RawAuthMode {
    Enforce,
    Report,
}

const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);
/// Firebase: "the response must not be cached for longer than six hours".
const FIREBASE_KEY_AGE: Duration = Duration::from_secs(6 * 3600);

/// Validates every `[auth.*]` table; policies with errors are left out (the errors fail the load).
pub fn policies(
    raw: BTreeMap<String, RawAuth>,
    file: &Path,
    dir: &Path,
    problems: &mut Problems,
) -> BTreeMap<String, AuthPolicy> {
    let mut out = BTreeMap::new();
    for (name, r) in raw {
        let mut v = PolicyCheck {
            file,
            at: format!("auth.{name}"),
            problems: Problems::default(),
        };
        let policy = v.policy(&name, r, dir);
        let failed = v.problems.has_errors();
        problems.extend(v.problems);
        if let (Some(p), false) = (policy, failed) {
            out.insert(name, p);
        }
    }
    out
}

struct PolicyCheck<'a> {
    file: &'a Path,
    at: String,
    problems: Problems,
}

impl PolicyCheck<'_> {
    fn err(&mut self, field: &str, msg: impl Into<String>) {
        let field = if field.is_empty() {
            self.at.clone()
        } else {
            format!("{}.{field}", self.at)
        };
        self.problems
            .push(Problem::error(Kind::Validation, self.file, field, msg));
    }

    fn header(&mut self, field: &str, s: &str) -> Option<HeaderName> {
        match HeaderName::from_bytes(s.as_bytes()) {
            Ok(h) => Some(h),
            Err(_) => {
                self.err(field, format!("\"{s}\" is not a header name"));
                None
            }
        }
    }

    fn policy(&mut self, name: &str, mut r: RawAuth, dir: &Path) -> Option<AuthPolicy> {
        let mut default_header = "authorization";
        let mut default_key_age = None;
        let kind = match (r.preset, r.kind) {
            (Some(_), Some(RawAuthKind::ApiKey)) => {
                self.err("kind", "a preset is a JWT policy; remove `kind`");
                return None;
            }
            (Some(RawPreset::FirebaseAppCheck), _) => {
                for (set, field) in [
                    (r.issuer.is_some(), "issuer"),
                    (r.audience.is_some(), "audience"),
                    (r.algorithms.is_some(), "algorithms"),
                    (r.key.is_some(), "key"),
                ] {
                    if set {
                        self.err(field, "is set by preset \"firebase_app_check\" (App Check signs with RS256 keys from its JWKS); remove it");
                    }
                }
                let Some(number) = r.project_number.take() else {
                    self.err("project_number", "preset \"firebase_app_check\" needs the Firebase project number (Project settings → General)");
                    return None;
                };
                if number.is_empty() || !number.chars().all(|c| c.is_ascii_digit()) {
                    self.err(
                        "project_number",
                        format!("\"{number}\" is not a project number (digits only)"),
                    );
                }
                r.issuer = Some(format!("https://firebaseappcheck.googleapis.com/{number}"));
                let mut aud = vec![format!("projects/{number}")];
                aud.extend(r.project_id.take().map(|id| format!("projects/{id}")));
                r.audience = Some(aud);
                r.algorithms = Some(vec!["RS256".into()]);
                default_header = "x-firebase-appcheck";
                default_key_age = Some(FIREBASE_KEY_AGE);
                RawAuthKind::Jwt
            }
            (Some(RawPreset::Approov), _) => {
                if r.algorithms.is_none() {
                    r.algorithms = Some(vec!["HS256".into()]);
                }
                default_header = "approov-token";
                RawAuthKind::Jwt
            }
            (None, Some(k)) => k,
            (None, None) => {
                self.err("kind", "missing: \"jwt\" or \"api_key\" (or a `preset`)");
                return None;
            }
        };
        if r.preset != Some(RawPreset::FirebaseAppCheck) {
            for (set, field) in [
                (r.project_number.is_some(), "project_number"),
                (r.project_id.is_some(), "project_id"),
            ] {
                if set {
                    self.err(field, "only for preset = \"firebase_app_check\"");
                }
            }
        }
        if kind == RawAuthKind::ApiKey {
            default_header = "x-api-key";
        }
        let header_str = r.header.clone();
        let header = self.header("header", header_str.as_deref().unwrap_or(default_header))?;
        let bearer = header == http::header::AUTHORIZATION;
        let mode = match r.mode {
            Some(RawAuthMode::Report) => AuthMode::Report,
            Some(RawAuthMode::Enforce) | None => AuthMode::Enforce,
        };
        let forward_token = r.forward_token;
        let kind = match kind {
            RawAuthKind::ApiKey => self.api_key(&r)?,
            RawAuthKind::Jwt => {
                AuthKind::Jwt(Box::new(self.jwt(r, &header, dir, default_key_age)?))
            }
        };
        Some(AuthPolicy {
            name: name.to_string(),
            mode,
            header,
            bearer,
            forward_token,
            kind,
        })
    }

    fn api_key(&mut self, r: &RawAuth) -> Option<AuthKind> {
        for (set, field) in [
            (r.jwks.is_some(), "jwks"),
            (r.key.is_some(), "key"),
            (r.algorithms.is_some(), "algorithms"),
            (r.issuer.is_some(), "issuer"),
            (r.audience.is_some(), "audience"),
            (r.leeway.is_some(), "leeway"),
            (r.max_token_age.is_some(), "max_token_age"),
            (r.max_key_age.is_some(), "max_key_age"),
            (r.bind_header.is_some(), "bind_header"),
            (!r.required_claims.is_empty(), "required_claims"),
            (!r.claims_to_headers.is_empty(), "claims_to_headers"),
        ] {
            if set {
                self.err(field, "only for kind = \"jwt\"");
            }
        }
        let Some(list) = r.sha256.as_ref().filter(|l| !l.is_empty()) else {
            self.err(
                "sha256",
                "list the SHA-256 of each accepted key in hex (`printf %s \"$KEY\" | sha256sum`)",
            );
            return None;
        };
        let mut sha256 = Vec::new();
        for (i, h) in list.iter().enumerate() {
            match hex32(h) {
                Some(d) => sha256.push(d),
                None => self.err(
                    &format!("sha256[{i}]"),
                    "must be 64 hex digits: the SHA-256 of the key, not the key",
                ),
            }
        }
        Some(AuthKind::ApiKey { sha256 })
    }

    fn jwt(
        &mut self,
        r: RawAuth,
        header: &HeaderName,
        dir: &Path,
        default_key_age: Option<Duration>,
    ) -> Option<JwtPolicy> {
        if r.sha256.is_some() {
            self.err("sha256", "only for kind = \"api_key\"");
        }
        let keys = match (r.jwks, r.key) {
            (Some(j), None) => KeyFile::Jwks(dir.join(j)),
            (None, Some(k)) => KeyFile::Key(dir.join(k)),
            (Some(_), Some(_)) => {
                self.err("key", "give either `jwks` or `key`, not both");
                return None;
            }
            (None, None) => {
                self.err(
                    "jwks",
                    "missing: a JWKS file (`jwks`) or a key file (`key`: base64 secret for HS*, PEM public key otherwise)",
                );
                return None;
            }
        };
        let mut algorithms = Vec::new();
        for (i, a) in r.algorithms.unwrap_or_default().iter().enumerate() {
            match a.parse::<Algorithm>() {
                Ok(alg) if !algorithms.contains(&alg) => algorithms.push(alg),
                Ok(_) => {}
                Err(_) if a.eq_ignore_ascii_case("none") => self.err(
                    &format!("algorithms[{i}]"),
                    "unsigned tokens (\"none\") are never accepted",
                ),
                Err(_) => self.err(
                    &format!("algorithms[{i}]"),
                    format!("\"{a}\" is not one of HS256 HS384 HS512 RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 EdDSA"),
                ),
            }
        }
        if algorithms.is_empty() {
            if self.problems.has_errors() {
                return None;
            }
            self.err(
                "algorithms",
                "list the algorithms the issuer signs with, e.g. [\"RS256\"]",
            );
            return None;
        }
        let hmac = algorithms
            .iter()
            .filter(|a| a.family() == AlgorithmFamily::Hmac)
            .count();
        if hmac > 0 && hmac < algorithms.len() {
            self.err(
                "algorithms",
                "mixes HS* with public-key algorithms: a public key could then be used as an HMAC secret; make two policies",
            );
            return None;
        }
        let bind_header = match r.bind_header.as_deref() {
            Some(b) => {
                let h = self.header("bind_header", b)?;
                if h == *header {
                    self.err("bind_header", "must differ from `header`");
                }
                Some(h)
            }
            None => None,
        };
        let mut claims_to_headers = Vec::new();
        for (claim, h) in &r.claims_to_headers {
            let Some(name) = self.header(&format!("claims_to_headers.{claim}"), h) else {
                continue;
            };
            if name == *header || Some(&name) == bind_header.as_ref() || name == http::header::HOST
            {
                self.err(
                    &format!("claims_to_headers.{claim}"),
                    format!("\"{h}\" is the token, binding or Host header"),
                );
                continue;
            }
            claims_to_headers.push((claim.clone(), name));
        }
        if r.leeway.is_some_and(|l| l > Duration::from_secs(300)) {
            self.err(
                "leeway",
                "must be at most 5m (it extends every token's life)",
            );
        }
        if r.max_token_age.is_some_and(|d| d.is_zero()) {
            self.err("max_token_age", "must be greater than 0");
        }
        if r.max_key_age.is_some_and(|d| d.is_zero()) {
            self.err("max_key_age", "must be greater than 0");
        }
        let issuer = r.issuer.filter(|i| !i.is_empty());
        Some(JwtPolicy {
            keys,
            algorithms,
            issuer,
            audience: r.audience.unwrap_or_default(),
            leeway: r.leeway.unwrap_or(DEFAULT_LEEWAY),
            max_token_age: r.max_token_age,
            max_key_age: r.max_key_age.or(default_key_age),
            bind_header,
            required_claims: r.required_claims,
            claims_to_headers,
        })
    }
}

/// 64 hex digits (either case) as 32 bytes.
fn hex32(s: &str) -> Option<[u8; 32]> {
    let s = s.trim();
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(toml_text: &str) -> (BTreeMap<String, AuthPolicy>, Problems) {
        let raw: BTreeMap<String, RawAuth> = toml::from_str(toml_text).expect("toml");
        let mut p = Problems::default();
        let out = policies(raw, Path::new("config.toml"), Path::new("/etc/pp"), &mut p);
        (out, p)
    }

    #[test]
    fn firebase_preset_fixes_issuer_audience_algorithm_and_key_age() {
        let (out, p) = load(
            "[appcheck]\npreset = \"firebase_app_check\"\nproject_number = \"123\"\nproject_id = \"shop\"\njwks = \"k.json\"\n",
        );
        assert!(!p.has_errors(), "{p}");
        let pol = &out["appcheck"];
        assert_eq!(pol.header, "x-firebase-appcheck");
        let AuthKind::Jwt(j) = &pol.kind else {
            panic!("jwt")
        };
        assert_eq!(
            j.issuer.as_deref(),
            Some("https://firebaseappcheck.googleapis.com/123")
        );
        assert_eq!(j.audience, ["projects/123", "projects/shop"]);
        assert_eq!(j.algorithms, [Algorithm::RS256]);
        assert_eq!(j.max_key_age, Some(FIREBASE_KEY_AGE));
    }

    #[test]
    fn none_and_mixed_families_are_refused() {
        let (_, p) = load("[a]\nkind = \"jwt\"\nkey = \"k\"\nalgorithms = [\"none\"]\n");
        assert!(p.to_string().contains("never accepted"), "{p}");
        let (_, p) =
            load("[a]\nkind = \"jwt\"\nkey = \"k\"\nalgorithms = [\"HS256\", \"RS256\"]\n");
        assert!(
            p.to_string().contains("`auth.a.algorithms`: mixes HS*"),
            "{p}"
        );
    }

    #[test]
    fn api_keys_are_hashes() {
        let (_, p) = load("[k]\nkind = \"api_key\"\nsha256 = [\"secret\"]\n");
        assert!(p.to_string().contains("`auth.k.sha256[0]`"), "{p}");
        let (out, p) = load(&format!(
            "[k]\nkind = \"api_key\"\nsha256 = [\"{}\"]\n",
            "ab".repeat(32)
        ));
        assert!(!p.has_errors(), "{p}");
        assert_eq!(out["k"].header, "x-api-key");
        assert_eq!(
            out["k"].kind,
            AuthKind::ApiKey {
                sha256: vec![[0xab; 32]]
            }
        );
    }
}
