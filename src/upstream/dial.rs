//! Dials an upstream's configured address whatever authority the request names.
//!
//! The request's authority is what the upstream sees as `Host` (HTTP/1.1) or `:authority`
//! (HTTP/2): with `server_name` or `host_header` that is the provider's name, while the TCP
//! connection must still go to the url's address. hyper's client takes both from one URI, so
//! this connector replaces the URI with the url's before dialing. SNI and the name verified
//! are fixed separately (hyper-rustls' `FixedServerNameResolver`).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Uri;
use hyper_util::client::legacy::connect::HttpConnector;
use tower_service::Service;

/// An `HttpConnector` that always dials `target`.
#[derive(Debug, Clone)]
pub struct Dial {
    inner: HttpConnector,
    target: Uri,
}

impl Dial {
    pub fn new(inner: HttpConnector, target: Uri) -> Self {
        Dial { inner, target }
    }
}

impl Service<Uri> for Dial {
    type Response = <HttpConnector as Service<Uri>>::Response;
    type Error = <HttpConnector as Service<Uri>>::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, _requested: Uri) -> Self::Future {
        Box::pin(self.inner.call(self.target.clone()))
    }
}
