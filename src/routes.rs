//! The route table of one snapshot: best matching host, then the longest path prefix on
//! segment boundaries.

use std::sync::Arc;

use crate::auth::RouteAuth;
use crate::config::Route;
use crate::pin::dns_name_matches;
use crate::upstream::UpstreamClient;

/// A route with the upstream client it forwards to.
#[derive(Debug)]
pub struct RouteEntry {
    pub route: Route,
    pub upstream: Arc<UpstreamClient>,
    /// The route's token policy, with its metric handles.
    pub auth: Option<Arc<RouteAuth>>,
}

#[derive(Debug, Default)]
pub struct RouteTable {
    /// Exact hosts first, then wildcards, then host-less routes; longest prefix first within each.
    entries: Vec<RouteEntry>,
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
        RouteTable { entries }
    }

    /// The route for `host` (lower-case, no port) and `path`.
    pub fn find(&self, host: &str, path: &str) -> Option<&RouteEntry> {
        self.entries.iter().find(|e| {
            e.route
                .host
                .as_deref()
                .is_none_or(|h| dns_name_matches(h, host))
                && prefix_matches(&e.route.path_prefix, path)
        })
    }

    pub fn iter(&self) -> impl Iterator<Item = &RouteEntry> {
        self.entries.iter()
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
            auth: None,
            response_headers: Default::default(),
            host_header: None,
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
