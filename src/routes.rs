//! The route table of one snapshot: best matching host, then the longest path prefix on
//! segment boundaries.

use std::sync::{Arc, OnceLock};

use http::StatusCode;
use prometheus::{Histogram, IntCounter};

use crate::config::Route;
use crate::metrics::Metrics;
use crate::pin::dns_name_matches;
use crate::upstream::UpstreamClient;

/// A route with the upstream client it forwards to.
#[derive(Debug)]
pub struct RouteEntry {
    pub route: Route,
    pub upstream: Arc<UpstreamClient>,
    /// One per listener of the snapshot, in config order.
    metrics: Vec<RouteMetrics>,
}

impl RouteEntry {
    /// `listeners` are the names of the snapshot's listeners: the route's metric handles are
    /// prepared for each.
    pub fn new(
        route: Route,
        upstream: Arc<UpstreamClient>,
        listeners: &[&str],
        metrics: &Metrics,
    ) -> Self {
        let metrics = listeners
            .iter()
            .map(|l| RouteMetrics::new(l, &route.name, metrics))
            .collect();
        RouteEntry {
            route,
            upstream,
            metrics,
        }
    }

    /// This route's metric handles on `listener` (`None` for a listener no longer configured,
    /// which keeps serving until a restart).
    pub fn metrics(&self, listener: &str) -> Option<&RouteMetrics> {
        self.metrics.iter().find(|m| m.listener == listener)
    }
}

/// The request metrics of one (listener, route), resolved once per snapshot: a request then
/// neither hashes its labels nor takes the registry's lock. Each series is created on first use,
/// so `/metrics` shows the same series as with per-request lookups.
#[derive(Debug)]
pub struct RouteMetrics {
    listener: String,
    route: String,
    metrics: Metrics,
    duration: OnceLock<Histogram>,
    codes: [OnceLock<IntCounter>; COMMON_CODES.len()],
}

impl RouteMetrics {
    fn new(listener: &str, route: &str, metrics: &Metrics) -> Self {
        RouteMetrics {
            listener: listener.to_string(),
            route: route.to_string(),
            metrics: metrics.clone(),
            duration: OnceLock::new(),
            codes: Default::default(),
        }
    }

    /// `pinproxy_request_duration_seconds{listener,route}`.
    pub fn duration(&self) -> &Histogram {
        self.duration.get_or_init(|| {
            self.metrics
                .request_duration
                .with_label_values(&[self.listener.as_str(), self.route.as_str()])
        })
    }

    /// Counts one answer in `pinproxy_requests_total{listener,route,code}`.
    pub fn count(&self, code: StatusCode) {
        let lookup = || {
            self.metrics.requests.with_label_values(&[
                self.listener.as_str(),
                self.route.as_str(),
                code.as_str(),
            ])
        };
        match COMMON_CODES.iter().position(|c| *c == code.as_u16()) {
            Some(i) => self.codes[i].get_or_init(lookup).inc(),
            None => lookup().inc(),
        }
    }
}

#[derive(Debug, Default)]
pub struct RouteTable {
    /// Exact hosts first, then wildcards, then host-less routes; longest prefix first within each.
    /// Shared so a request record can name its route after the snapshot moved on, without copies.
    entries: Vec<Arc<RouteEntry>>,
}

impl RouteTable {
    pub fn new(mut entries: Vec<RouteEntry>) -> Self {
        entries.sort_by_key(|e| {
            let host_rank = match &e.route.host {
                Some(h) if !h.starts_with("*.") => 0,
                Some(_) => 1,
                None => 2,
            };
            (host_rank, std::cmp::Reverse(e.route.path_prefix.len()))
        });
        RouteTable {
            entries: entries.into_iter().map(Arc::new).collect(),
        }
    }

    /// The route for `host` (lower-case, no port) and `path`.
    pub fn find(&self, host: &str, path: &str) -> Option<&Arc<RouteEntry>> {
        self.entries.iter().find(|e| {
            e.route
                .host
                .as_deref()
                .is_none_or(|h| dns_name_matches(h, host))
                && prefix_matches(&e.route.path_prefix, path)
        })
    }

    pub fn iter(&self) -> impl Iterator<Item = &RouteEntry> {
        self.entries.iter().map(|e| &**e)
    }
}

/// `/pay` matches `/pay` and `/pay/x`, not `/payments`; the empty prefix matches everything.
pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/') || prefix.is_empty(),
        None => false,
    }
}

/// The path sent upstream: the upstream's base path, then the request path, without the
/// route prefix when `strip_prefix`.
pub fn upstream_path(base: &str, route: &Route, path: &str) -> String {
    let rest = if route.strip_prefix {
        path.strip_prefix(route.path_prefix.as_str())
            .unwrap_or(path)
    } else {
        path
    };
    let mut out = String::with_capacity(base.len() + rest.len() + 1);
    out.push_str(base);
    if !rest.starts_with('/') {
        out.push('/');
    }
    out.push_str(rest);
    out
}

/// Status codes whose request counters are kept resolved; others are looked up per answer.
const COMMON_CODES: [u16; 12] = [200, 201, 204, 301, 302, 304, 400, 401, 403, 404, 502, 504];

#[cfg(test)]
mod tests {
    use super::*;

    fn route(prefix: &str, strip: bool) -> Route {
        Route {
            name: prefix.into(),
            host: None,
            path_prefix: prefix.trim_end_matches('/').into(),
            upstream: "u".into(),
            strip_prefix: strip,
            preserve_host: false,
            timeout: std::time::Duration::from_secs(1),
        }
    }

    #[test]
    fn prefixes_match_on_segment_boundaries() {
        assert!(prefix_matches("/pay", "/pay"));
        assert!(prefix_matches("/pay", "/pay/x"));
        assert!(!prefix_matches("/pay", "/payments"));
        assert!(prefix_matches("", "/anything"));
    }

    #[test]
    fn upstream_paths_join_base_and_rest() {
        assert_eq!(
            upstream_path("/v1", &route("/pay/", false), "/pay/x"),
            "/v1/pay/x"
        );
        assert_eq!(
            upstream_path("/v1", &route("/pay/", true), "/pay/x"),
            "/v1/x"
        );
        assert_eq!(upstream_path("/v1", &route("/pay/", true), "/pay"), "/v1/");
        assert_eq!(upstream_path("", &route("/", false), "/a"), "/a");
    }
}
