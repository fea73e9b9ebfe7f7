//! Upstream response headers as the client sees them: what names the backend's stack is
//! removed and a route's own headers are set, from the list resolved when the config loaded.
//!
//! Kept apart from the request-side rewriting in `headers` so each side has one job.

use http::header::{HeaderMap, HeaderName};
use smallvec::SmallVec;

use crate::config::ResponseHeaders;

/// Removes the route's listed headers, then sets its added ones (replacing upstream values).
/// One pass over the response's few headers rather than the list of ~70; the names to remove
/// are gathered on the stack.
pub fn apply(policy: &ResponseHeaders, headers: &mut HeaderMap) {
    let doomed: SmallVec<[HeaderName; 4]> = headers
        .keys()
        .filter(|k| policy.removes(k))
        .cloned()
        .collect();
    for name in doomed {
        headers.remove(name);
    }
    for (name, value) in &policy.add {
        headers.insert(name.clone(), value.clone());
    }
}

#[cfg(test)]
mod tests {
    use http::header::HeaderValue;

    use super::*;

    #[test]
    fn defaults_go_and_additions_replace() {
        let mut policy = ResponseHeaders::default();
        policy.add.push((
            http::header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ));
        let mut h = HeaderMap::new();
        h.insert("server", HeaderValue::from_static("nginx/1.2"));
        h.insert("x-powered-by", HeaderValue::from_static("PHP/5"));
        h.insert("cache-control", HeaderValue::from_static("public"));
        h.insert("content-type", HeaderValue::from_static("application/json"));
        apply(&policy, &mut h);
        assert!(h.get("server").is_none());
        assert!(h.get("x-powered-by").is_none());
        assert_eq!(
            h.get("cache-control").map(|v| v.as_bytes()),
            Some(&b"no-store"[..])
        );
        assert!(h.get("content-type").is_some());
    }
}
