//! Token checks at the edge: a route's `[auth.NAME]` policy, built once per snapshot from its
//! config and key files, then asked per request whether the token it finds is good.
//!
//! Building parses every key file into typed keys (a JWKS's keys each pinned to the algorithms
//! of their own type), so a request only looks a key up and verifies. Checking is offline and
//! pure: it reads headers and returns a result with a reason for the log; it never logs, counts
//! or touches the request itself (that is [`RouteAuth`]'s job).

mod api_key;
mod gate;
mod jwt;
mod keys;

use std::path::Path;
use std::time::{Duration, SystemTime};

use http::header::{HeaderMap, HeaderName};

use crate::clock::unix_now;
use crate::config::{AuthKind, AuthMode, AuthPolicy, Config, KeyFile};
use crate::diag::{Kind, Problem, Problems};
use crate::files::Files;

pub use gate::{Denied, RouteAuth};

/// The `result` label of `pinproxy_auth_checks_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthResult {
    Ok,
    Missing,
    Expired,
    BadSignature,
    BadClaim,
    UnknownKey,
    Binding,
}

impl AuthResult {
    pub const ALL: [AuthResult; 7] = [
        AuthResult::Ok,
        AuthResult::Missing,
        AuthResult::Expired,
        AuthResult::BadSignature,
        AuthResult::BadClaim,
        AuthResult::UnknownKey,
        AuthResult::Binding,
    ];

    pub fn as_label(self) -> &'static str {
        match self {
            AuthResult::Ok => "ok",
            AuthResult::Missing => "missing",
            AuthResult::Expired => "expired",
            AuthResult::BadSignature => "bad_signature",
            AuthResult::BadClaim => "bad_claim",
            AuthResult::UnknownKey => "unknown_key",
            AuthResult::Binding => "binding",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Why a check failed: the counted result and a reason for the log. Reasons name claims and
/// keys, never token contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub result: AuthResult,
    pub reason: String,
}

impl Failure {
    fn new(result: AuthResult, reason: impl Into<String>) -> Self {
        Failure {
            result,
            reason: reason.into(),
        }
    }
}

/// Claims of a verified token that go upstream as headers.
pub type ClaimHeaders = Vec<(HeaderName, String)>;

/// One policy, ready to check requests.
#[derive(Debug)]
pub struct Policy {
    pub name: String,
    pub mode: AuthMode,
    pub header: HeaderName,
    pub bearer: bool,
    pub forward_token: bool,
    /// Headers a verified token may set; client-sent copies are always dropped.
    pub claim_headers: Vec<HeaderName>,
    checker: Checker,
}

#[derive(Debug)]
enum Checker {
    Jwt(jwt::JwtVerifier),
    ApiKey(api_key::ApiKeys),
}

impl Policy {
    /// Reads and parses the policy's key file. Warnings (an old JWKS) come back beside it.
    pub fn build(
        policy: &AuthPolicy,
        config_file: &Path,
        files: &mut Files,
        now: SystemTime,
    ) -> Result<(Policy, Problems), Problems> {
        let mut warnings = Problems::default();
        let checker = match &policy.kind {
            AuthKind::ApiKey { sha256 } => Checker::ApiKey(api_key::ApiKeys::new(sha256.clone())),
            AuthKind::Jwt(j) => {
                let field = format!("auth.{}.{}", policy.name, j.keys.field());
                let path = j.keys.path();
                let bytes = files.read(path).map_err(|e| {
                    Problem::error(
                        Kind::File,
                        config_file,
                        &field,
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?;
                let parsed = match &j.keys {
                    KeyFile::Jwks(_) => keys::KeySet::from_jwks(&bytes, &j.algorithms),
                    KeyFile::Key(_) => keys::KeySet::from_key_file(&bytes, &j.algorithms),
                };
                let (set, notes) = parsed.map_err(|e| {
                    Problem::error(
                        Kind::File,
                        config_file,
                        &field,
                        format!("{}: {e}", path.display()),
                    )
                })?;
                for n in notes {
                    warnings.push(Problem::warning(
                        Kind::File,
                        config_file,
                        &field,
                        format!("{}: {n}", path.display()),
                    ));
                }
                warnings.extend(stale_key_file(policy, config_file, now));
                Checker::Jwt(jwt::JwtVerifier::new(j, set))
            }
        };
        let claim_headers = match &policy.kind {
            AuthKind::Jwt(j) => j.claims_to_headers.iter().map(|(_, h)| h.clone()).collect(),
            AuthKind::ApiKey { .. } => Vec::new(),
        };
        Ok((
            Policy {
                name: policy.name.clone(),
                mode: policy.mode,
                header: policy.header.clone(),
                bearer: policy.bearer,
                forward_token: policy.forward_token,
                claim_headers,
                checker,
            },
            warnings,
        ))
    }

    /// Checks the request's token; on success, the claim headers to set.
    pub fn check(&self, headers: &HeaderMap) -> Result<ClaimHeaders, Failure> {
        let token = self.token(headers)?;
        match &self.checker {
            Checker::ApiKey(k) => k.check(token).map(|()| Vec::new()),
            Checker::Jwt(j) => {
                let token = std::str::from_utf8(token)
                    .map_err(|_| Failure::new(AuthResult::BadSignature, "token is not ASCII"))?;
                j.verify(token, headers, u64::try_from(unix_now()).unwrap_or(0))
            }
        }
    }

    /// The token (or key) from the policy's header; `Bearer ` stripped for Authorization.
    fn token<'h>(&self, headers: &'h HeaderMap) -> Result<&'h [u8], Failure> {
        let mut values = headers.get_all(&self.header).iter();
        let (Some(v), None) = (values.next(), values.next()) else {
            let reason = if headers.contains_key(&self.header) {
                "header sent more than once"
            } else {
                "no token header"
            };
            return Err(Failure::new(AuthResult::Missing, reason));
        };
        let mut v = v.as_bytes();
        if self.bearer {
            // RFC 6750 §2.1: the scheme is case-insensitive.
            match v.get(..7) {
                Some(s) if s.eq_ignore_ascii_case(b"bearer ") => v = &v[7..],
                _ => return Err(Failure::new(AuthResult::Missing, "no Bearer credentials")),
            }
        }
        let v = v.trim_ascii();
        if v.is_empty() {
            return Err(Failure::new(AuthResult::Missing, "empty token"));
        }
        Ok(v)
    }
}

/// Key files older than their policy's `max_key_age`: a warning at every load, and at every
/// scheduled expiry sweep (a stopped refresh job changes no file, so no reload would notice).
pub fn stale_key_files(config: &Config, now: SystemTime) -> Problems {
    let mut out = Problems::default();
    for p in config.auth.values() {
        out.extend(stale_key_file(p, &config.file, now));
    }
    out
}

fn stale_key_file(policy: &AuthPolicy, config_file: &Path, now: SystemTime) -> Problems {
    let AuthKind::Jwt(j) = &policy.kind else {
        return Problems::default();
    };
    let path = j.keys.path();
    match (j.max_key_age, file_age(path, now)) {
        (Some(max), Some(age)) if age > max => Problem::warning(
            Kind::File,
            config_file,
            format!("auth.{}.{}", policy.name, j.keys.field()),
            format!(
                "{} was last written {} ago, longer than max_key_age ({}): is the job that refreshes it still running?",
                path.display(),
                humantime::format_duration(Duration::from_secs(age.as_secs())),
                humantime::format_duration(max)
            ),
        )
        .into(),
        _ => Problems::default(),
    }
}

/// How long ago the file was last written, if the file system says.
fn file_age(path: &Path, now: SystemTime) -> Option<Duration> {
    let modified = std::fs::metadata(path).ok()?.modified().ok()?;
    now.duration_since(modified).ok()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::config::JwtPolicy;

    #[test]
    fn a_key_file_older_than_max_key_age_is_a_warning_naming_policy_and_field() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("jwks.json");
        let file = std::fs::File::create(&path).expect("file");
        let now = SystemTime::now();
        file.set_modified(now - Duration::from_secs(7 * 3600))
            .expect("mtime");
        let policy = AuthPolicy {
            name: "appcheck".into(),
            mode: AuthMode::Enforce,
            header: HeaderName::from_static("x-firebase-appcheck"),
            bearer: false,
            forward_token: false,
            kind: AuthKind::Jwt(Box::new(JwtPolicy {
                keys: KeyFile::Jwks(path),
                algorithms: vec![jsonwebtoken::Algorithm::RS256],
                issuer: None,
                audience: vec![],
                leeway: Duration::from_secs(30),
                max_token_age: None,
                max_key_age: Some(Duration::from_secs(6 * 3600)),
                bind_header: None,
                required_claims: BTreeMap::new(),
                claims_to_headers: vec![],
            })),
        };
        let w = stale_key_file(&policy, Path::new("config.toml"), now);
        let text = w.warnings().map(|p| p.to_string()).collect::<String>();
        assert!(
            text.contains("`auth.appcheck.jwks`")
                && text.contains("7h ago, longer than max_key_age (6h)"),
            "{text}"
        );
        let fresh = stale_key_file(
            &policy,
            Path::new("config.toml"),
            now - Duration::from_secs(3 * 3600),
        );
        assert!(fresh.0.is_empty(), "4h old is fine");
    }
}
