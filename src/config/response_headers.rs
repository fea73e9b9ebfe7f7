//! A route's `response_headers = { remove, keep, add }`, resolved once into the final list of
//! headers to drop from upstream responses and the headers to set on them.
//!
//! Responses should say no more than needed: headers that name the backend's stack help an
//! attacker pick exploits and help nobody using the API, so they go by default. This module only
//! turns the config into that list; the proxy applies it.

use std::collections::{BTreeMap, HashSet};

use foldhash::fast::FixedState;

use http::header::{HeaderName, HeaderValue};
use serde::Deserialize;

use crate::diag::{Kind, Problem, Problems};

/// Removed from every upstream response unless a route `keep`s them: the OWASP Secure Headers
/// Project's removal list (ci/headers_remove.json of OWASP/www-project-secure-headers, update of
/// 2024-09-02; every entry names a server, framework, CMS, agent or internal host or trace, so all
/// apply to an API), plus `X-Runtime` and `X-Version`, which Rails and many APIs send.
pub const DEFAULT_REMOVE: &[&str] = &[
    "$wsep",
    "host-header",
    "k-proxy-request",
    "liferay-portal",
    "oraclecommercecloud-version",
    "pega-host",
    "powered-by",
    "product",
    "server",
    "sourcemap",
    "x-aspnet-version",
    "x-aspnetmvc-version",
    "x-atmosphere-error",
    "x-atmosphere-first-request",
    "x-atmosphere-tracking-id",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-spanid",
    "x-b3-traceid",
    "x-beserver",
    "x-cf-powered-by",
    "x-cms",
    "x-calculatedbetarget",
    "x-cocoon-version",
    "x-content-encoded-by",
    "x-diaginfo",
    "x-envoy-attempt-count",
    "x-envoy-external-address",
    "x-envoy-internal",
    "x-envoy-original-dst-host",
    "x-envoy-upstream-service-time",
    "x-feserver",
    "x-framework",
    "x-generated-by",
    "x-generator",
    "x-jitsi-release",
    "x-joomla-version",
    "x-kubernetes-pf-flowschema-ui",
    "x-kubernetes-pf-prioritylevel-uid",
    "x-litespeed-cache",
    "x-litespeed-purge",
    "x-litespeed-tag",
    "x-litespeed-vary",
    "x-litespeed-cache-control",
    "x-mod-pagespeed",
    "x-nextjs-cache",
    "x-nextjs-matched-path",
    "x-nextjs-page",
    "x-nextjs-redirect",
    "x-owa-version",
    "x-old-content-length",
    "x-oneagent-js-injection",
    "x-page-speed",
    "x-php-version",
    "x-powered-by",
    "x-powered-by-plesk",
    "x-powered-cms",
    "x-redirect-by",
    "x-server-powered-by",
    "x-sourcefiles",
    "x-sourcemap",
    "x-turbo-charged-by",
    "x-umbraco-version",
    "x-varnish-backend",
    "x-varnish-server",
    "x-dtagentid",
    "x-dthealthcheck",
    "x-dtinjectedservlet",
    "x-ruxit-js-agent",
    // Not on the OWASP list, named by the issue: Rails' X-Runtime, and version banners.
    "x-runtime",
    "x-version",
];

/// What the proxy does to the headers of a route's upstream responses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHeaders {
    /// Looked up once per response header with a fast non-keyed hash: the names come from
    /// the config, not from clients, so there is nothing to flood.
    pub remove: HashSet<HeaderName, FixedState>,
    /// Set after the removal, replacing any value the upstream sent.
    pub add: Vec<(HeaderName, HeaderValue)>,
}

impl ResponseHeaders {
    /// Whether `name` is on the removal list.
    pub fn removes(&self, name: &HeaderName) -> bool {
        self.remove.contains(name)
    }
}

impl Default for ResponseHeaders {
    fn default() -> Self {
        ResponseHeaders {
            remove: DEFAULT_REMOVE
                .iter()
                .map(|n| HeaderName::from_static(n))
                .collect(),
            add: Vec::new(),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawResponseHeaders {
    #[serde(default)]
    pub remove: Vec<String>,
    #[serde(default)]
    pub keep: Vec<String>,
    #[serde(default)]
    pub add: BTreeMap<String, String>,
}

/// Headers a route may not set: they describe the connection or the body, which the proxy and
/// hyper own.
const NOT_ADDABLE: &[&str] = &[
    "connection",
    "content-length",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// The default list plus `remove`, minus `keep`, and `add`; problems name `at.response_headers.*`.
pub fn resolve(
    raw: RawResponseHeaders,
    file: &std::path::Path,
    at: &str,
    problems: &mut Problems,
) -> ResponseHeaders {
    let mut out = ResponseHeaders::default();
    let name = |list: &str, i: usize, n: &str, problems: &mut Problems| {
        HeaderName::from_bytes(n.as_bytes())
            .map_err(|_| {
                problems.push(Problem::error(
                    Kind::Validation,
                    file,
                    format!("{at}.response_headers.{list}[{i}]"),
                    format!("\"{n}\" is not a header name"),
                ))
            })
            .ok()
    };
    let mut remove = Vec::new();
    for (i, n) in raw.remove.iter().enumerate() {
        remove.extend(name("remove", i, n, problems));
    }
    let mut keep = Vec::new();
    for (i, n) in raw.keep.iter().enumerate() {
        if let Some(h) = name("keep", i, n, problems) {
            if remove.contains(&h) {
                problems.push(Problem::error(
                    Kind::Validation,
                    file,
                    format!("{at}.response_headers.keep[{i}]"),
                    format!("\"{n}\" is also in `remove`"),
                ));
            } else if !out.remove.contains(&h) {
                problems.push(Problem::warning(
                    Kind::Validation,
                    file,
                    format!("{at}.response_headers.keep[{i}]"),
                    format!("\"{n}\" is not on the default removal list: it is kept anyway"),
                ));
            }
            keep.push(h);
        }
    }
    out.remove.extend(remove);
    out.remove.retain(|h| !keep.contains(h));
    for (n, v) in raw.add {
        let field = format!("{at}.response_headers.add.{n}");
        let Ok(h) = HeaderName::from_bytes(n.as_bytes()) else {
            problems.push(Problem::error(
                Kind::Validation,
                file,
                field,
                format!("\"{n}\" is not a header name"),
            ));
            continue;
        };
        if NOT_ADDABLE.contains(&h.as_str()) {
            problems.push(Problem::error(
                Kind::Validation,
                file,
                field,
                format!("\"{n}\" describes the connection or body and cannot be set"),
            ));
            continue;
        }
        match HeaderValue::from_str(&v) {
            Ok(v) => out.add.push((h, v)),
            Err(_) => problems.push(Problem::error(
                Kind::Validation,
                file,
                field,
                "is not a valid header value (visible ASCII and spaces)",
            )),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_default_is_a_lower_case_header_name() {
        for n in DEFAULT_REMOVE {
            let h = HeaderName::from_bytes(n.as_bytes()).expect("header name");
            assert_eq!(h.as_str(), *n);
        }
    }

    #[test]
    fn keep_takes_from_the_defaults_and_remove_adds_to_them() {
        let raw = RawResponseHeaders {
            remove: vec!["X-Backend".into()],
            keep: vec!["Server".into()],
            add: [("Cache-Control".to_string(), "no-store".to_string())].into(),
        };
        let mut p = Problems::default();
        let r = resolve(raw, std::path::Path::new("c.toml"), "route[0]", &mut p);
        assert!(!p.has_errors(), "{p}");
        assert!(!r.removes(&HeaderName::from_static("server")));
        assert!(r.removes(&HeaderName::from_static("x-backend")));
        assert!(r.removes(&HeaderName::from_static("x-powered-by")));
        assert!(r.removes(&HeaderName::from_static("$wsep")));
        assert!(!r.removes(&HeaderName::from_static("content-type")));
        assert_eq!(r.add[0].0, "cache-control");
    }
}
