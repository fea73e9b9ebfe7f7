//! A pooled HTTP/1.1 + HTTP/2 client for one upstream, built with that upstream's own
//! `ClientConfig` so a pool never outlives the trust and pins it was verified under.
//!
//! Knows nothing of routes or client connections: it sends a request and classifies failures
//! for the metrics and the status code. A request is sent again only when hyper hands it back
//! unsent (a pooled connection found closed before the request was written): anything that may
//! have reached the upstream is never repeated.

mod connect;
mod pool;

use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_rustls::FixedServerNameResolver;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::ClientConfig;
use rustls::pki_types::ServerName;

use crate::config::{Limits, Upstream};
use crate::diag::error_chain;
use crate::tls::{UpstreamObserver, UpstreamTls, is_pin_mismatch};
use connect::FixedDestination;
use pool::Pool;
pub use pool::SendError;

pub use crate::body::RequestBody as ProxyBody;

/// One upstream's client and pool.
#[derive(Debug)]
pub struct UpstreamClient {
    pub config: Upstream,
    pub observer: Arc<UpstreamObserver>,
    pool: Pool,
}

/// Why a request to an upstream failed; the `kind` label of `pinproxy_upstream_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    Connect,
    Tls,
    Pin,
    Timeout,
    Protocol,
}

impl ErrorKind {
    pub fn as_label(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Tls => "tls",
            ErrorKind::Pin => "pin",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Protocol => "protocol",
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("upstream {upstream}: {} error", kind.as_label())]
pub struct UpstreamError {
    pub upstream: String,
    pub kind: ErrorKind,
    #[source]
    pub source: SendError,
}

impl UpstreamClient {
    pub fn new(
        config: &Upstream,
        tls: Option<&UpstreamTls>,
        limits: &Limits,
        observer: Arc<UpstreamObserver>,
        provider: &Arc<rustls::crypto::CryptoProvider>,
    ) -> Result<Self, rustls::Error> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(limits.upstream_connect_timeout));
        let tls_config = match tls {
            Some(t) => (*t.client_config).clone(),
            // Plain http:// upstreams never handshake; the connector type still wants a config.
            None => ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()?
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth(),
        };
        let builder = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls_config)
            .https_or_http();
        // The request's authority may name the provider (`host_header`): SNI and the name
        // verified always come from the upstream's config, the address dialed from its url.
        let builder = match ServerName::try_from(config.verify_name().to_string()).ok() {
            Some(name) => builder.with_server_name_resolver(FixedServerNameResolver::new(name)),
            None => builder,
        };
        let connector = builder.enable_http1().enable_http2().wrap_connector(http);
        let mut h1 = http1::Builder::new();
        // hyper's read buffer bounds an HTTP/1 response head (and the memory one connection
        // buffers); the exact limit is checked on the parsed head.
        h1.max_buf_size(limits.max_response_header_bytes.max(8192) + HEAD_SLACK);
        let mut h2 = http2::Builder::new(TokioExecutor::new());
        h2.timer(TokioTimer::new()).max_header_list_size(
            u32::try_from(limits.max_response_header_bytes.saturating_mul(2)).unwrap_or(u32::MAX),
        );
        let pool = Pool::new(
            FixedDestination::new(connector, config),
            h1,
            h2,
            limits.upstream_idle_timeout,
            config.tls,
        );
        Ok(UpstreamClient {
            config: config.clone(),
            observer,
            pool,
        })
    }

    /// Sends `req`. Requests are addressed to `config.authority`, or to the client's host with
    /// `preserve_host`: either way the connection goes to the configured upstream.
    pub async fn send(&self, req: Request<ProxyBody>) -> Result<Response<Incoming>, UpstreamError> {
        let result = self.pool.send(req).await.map_err(|e| self.error(e));
        if result.is_ok() {
            // Keeps the upstream's verified path current while pooled connections carry the traffic.
            self.observer.touch();
        }
        result
    }

    fn error(&self, source: SendError) -> UpstreamError {
        UpstreamError {
            upstream: self.config.name.clone(),
            kind: classify(&source),
            source,
        }
    }
}

fn classify(e: &SendError) -> ErrorKind {
    if is_pin_mismatch(e) {
        return ErrorKind::Pin;
    }
    let chain = error_chain(e);
    if chain
        .iter()
        .any(|err| err.downcast_ref::<rustls::Error>().is_some())
    {
        return ErrorKind::Tls;
    }
    if chain.iter().any(|err| {
        err.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
    }) {
        return ErrorKind::Timeout;
    }
    match e {
        SendError::Connect(_) => ErrorKind::Connect,
        SendError::Handshake(_) | SendError::Request(_) => ErrorKind::Protocol,
    }
}

/// Read-buffer room above the response head limit, so a head just over it is parsed and
/// refused by the exact check rather than cut by the buffer.
const HEAD_SLACK: usize = 8192;
