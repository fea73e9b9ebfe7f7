//! A connector that always dials the configured upstream, whatever authority a request names.
//!
//! A request's URI authority becomes HTTP/2 `:authority` (and the HTTP/1 `Host`), so with
//! `preserve_host` the proxy addresses requests to the client's host; the TCP connection, SNI
//! and certificate check must still go to the upstream's own url. Each [`super::UpstreamClient`]
//! serves one upstream, so the destination is fixed per client. The pool stays keyed by the
//! request authority: connections addressed under one host are never reused under another.

use std::task::{Context, Poll};

use http::Uri;
use tower_service::Service;

use crate::config::Upstream;

#[derive(Clone, Debug)]
pub struct FixedDestination<C> {
    inner: C,
    dest: Uri,
}

impl<C> FixedDestination<C> {
    pub fn new(inner: C, upstream: &Upstream) -> Self {
        let dest = Uri::builder()
            .scheme(if upstream.tls { "https" } else { "http" })
            .authority(upstream.authority.clone())
            .path_and_query("/")
            .build()
            // Scheme and authority come from a parsed url; "/" is a valid path.
            .unwrap_or_default();
        FixedDestination { inner, dest }
    }
}

impl<C: Service<Uri>> Service<Uri> for FixedDestination<C> {
    type Response = C::Response;
    type Error = C::Error;
    type Future = C::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, _requested: Uri) -> Self::Future {
        self.inner.call(self.dest.clone())
    }
}
