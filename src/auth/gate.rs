//! A policy as one route applies it to requests: checks, counts, logs (rate limited) and
//! rewrites the request headers — the token goes, verified claims come in.
//!
//! Built with the snapshot, so the metric handles are resolved once and not per request. The
//! log carries the reason, never the token; the client only learns 401 or 403.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::header::{HeaderMap, HeaderValue};
use prometheus::IntCounter;

use super::{AuthResult, Policy};
use crate::config::AuthMode;
use crate::metrics::Metrics;

/// How a refused request is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// 401 with a `WWW-Authenticate: Bearer` challenge (RFC 6750 §3); `error="invalid_token"`
    /// unless the request carried no token at all.
    Bearer { invalid: bool },
    /// 403 for tokens in other headers.
    Forbidden,
}

impl Denied {
    pub fn challenge(self) -> Option<HeaderValue> {
        match self {
            Denied::Bearer { invalid: false } => Some(HeaderValue::from_static("Bearer")),
            Denied::Bearer { invalid: true } => {
                Some(HeaderValue::from_static("Bearer error=\"invalid_token\""))
            }
            Denied::Forbidden => None,
        }
    }
}

/// One route's policy with its metric handles and log limiter.
#[derive(Debug)]
pub struct RouteAuth {
    route: String,
    policy: Arc<Policy>,
    counters: [IntCounter; 7],
    throttles: [Mutex<Throttle>; 7],
}

/// One warning per route and result per [`WARN_EVERY`], with the number held back — like the
/// upstream pin report warnings.
#[derive(Debug, Default)]
struct Throttle {
    last: Option<Instant>,
    suppressed: u64,
}

const WARN_EVERY: Duration = Duration::from_secs(60);

impl RouteAuth {
    /// Creates every result's series at 0, so alert rules see the first failure.
    pub fn new(route: &str, policy: Arc<Policy>, metrics: &Metrics) -> Self {
        let counters = AuthResult::ALL.map(|r| {
            metrics
                .auth_checks
                .with_label_values(&[route, policy.name.as_str(), r.as_label()])
        });
        RouteAuth {
            route: route.to_string(),
            policy,
            counters,
            throttles: Default::default(),
        }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Checks the request and rewrites its headers for the upstream: client-sent copies of the
    /// claim headers go, the token goes unless `forward_token`, verified claims are set.
    /// `Err` when the request must be refused (enforce mode only).
    pub fn apply(&self, headers: &mut HeaderMap) -> Result<(), Denied> {
        let p = &*self.policy;
        for h in &p.claim_headers {
            headers.remove(h);
        }
        let outcome = p.check(headers);
        if !p.forward_token {
            headers.remove(&p.header);
        }
        match outcome {
            Ok(claims) => {
                self.counters[AuthResult::Ok.index()].inc();
                for (name, value) in claims {
                    match HeaderValue::from_str(&value) {
                        Ok(v) => {
                            headers.insert(name, v);
                        }
                        Err(_) => {
                            tracing::debug!(route = %self.route, header = %name, "claim value is not a valid header value; not set");
                        }
                    }
                }
                Ok(())
            }
            Err(f) => {
                self.counters[f.result.index()].inc();
                self.warn(f.result, &f.reason);
                match p.mode {
                    AuthMode::Report => Ok(()),
                    AuthMode::Enforce if p.bearer => Err(Denied::Bearer {
                        invalid: f.result != AuthResult::Missing,
                    }),
                    AuthMode::Enforce => Err(Denied::Forbidden),
                }
            }
        }
    }

    fn warn(&self, result: AuthResult, reason: &str) {
        let mut t = self.throttles[result.index()]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if t.last.is_some_and(|l| now.duration_since(l) < WARN_EVERY) {
            t.suppressed += 1;
            return;
        }
        let suppressed = std::mem::take(&mut t.suppressed);
        t.last = Some(now);
        drop(t);
        tracing::warn!(
            route = %self.route,
            policy = %self.policy.name,
            mode = self.policy.mode.as_str(),
            result = result.as_label(),
            reason,
            suppressed,
            "token check failed"
        );
    }
}

#[cfg(test)]
mod tests {
    use http::header::HeaderName;

    use super::super::{Checker, api_key::ApiKeys};
    use super::*;

    fn route_auth(mode: AuthMode, metrics: &Metrics) -> RouteAuth {
        let policy = Policy {
            name: "appkey".into(),
            mode,
            header: HeaderName::from_static("x-api-key"),
            bearer: false,
            forward_token: false,
            claim_headers: vec![],
            checker: Checker::ApiKey(ApiKeys::new(vec![[0; 32]])),
        };
        RouteAuth::new("api", Arc::new(policy), metrics)
    }

    #[test]
    fn failures_are_all_counted_but_logged_once_a_minute_with_the_number_held_back() {
        let metrics = Metrics::new().expect("metrics");
        let auth = route_auth(AuthMode::Enforce, &metrics);
        for _ in 0..5 {
            let mut h = HeaderMap::new();
            h.insert("x-api-key", HeaderValue::from_static("wrong"));
            assert_eq!(auth.apply(&mut h), Err(Denied::Forbidden));
            assert!(h.get("x-api-key").is_none(), "the key is never forwarded");
        }
        let count = |r: &str| {
            metrics
                .auth_checks
                .with_label_values(&["api", "appkey", r])
                .get()
        };
        assert_eq!(count("unknown_key"), 5);
        assert_eq!(count("ok"), 0);
        let t = auth.throttles[AuthResult::UnknownKey.index()]
            .lock()
            .expect("lock");
        assert_eq!(t.suppressed, 4, "one warning logged, four held back");
    }

    #[test]
    fn report_mode_lets_a_failure_through() {
        let metrics = Metrics::new().expect("metrics");
        let auth = route_auth(AuthMode::Report, &metrics);
        let mut h = HeaderMap::new();
        assert_eq!(auth.apply(&mut h), Ok(()));
        assert_eq!(
            metrics
                .auth_checks
                .with_label_values(&["api", "appkey", "missing"])
                .get(),
            1
        );
    }
}
