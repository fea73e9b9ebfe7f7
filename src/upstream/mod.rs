//! A pooled HTTP/1.1 + HTTP/2 client for one upstream, built with that upstream's own
//! `ClientConfig` so a pool never outlives the trust and pins it was verified under.
//!
//! Knows nothing of routes or client connections: it sends a request (hyper-util retries one
//! that a stale pooled connection gave back unsent) and classifies failures for the metrics and
//! the status code.

use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_rustls::{FixedServerNameResolver, HttpsConnector};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::ClientConfig;
use rustls::pki_types::ServerName;

use crate::config::{Limits, Upstream};
use crate::diag::error_chain;
use crate::tls::{UpstreamObserver, UpstreamTls, is_pin_mismatch};

pub use crate::body::RequestBody as ProxyBody;

/// One upstream's client and pool.
#[derive(Debug)]
pub struct UpstreamClient {
    pub config: Upstream,
    pub observer: Arc<UpstreamObserver>,
    client: Client<HttpsConnector<HttpConnector>, ProxyBody>,
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
#[error("upstream {upstream}: {kind:?} error")]
pub struct UpstreamError {
    pub upstream: String,
    pub kind: ErrorKind,
    #[source]
    pub source: hyper_util::client::legacy::Error,
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
        let builder = match config
            .server_name
            .as_ref()
            .and_then(|n| ServerName::try_from(n.clone()).ok())
        {
            Some(name) => builder.with_server_name_resolver(FixedServerNameResolver::new(name)),
            None => builder,
        };
        let connector = builder.enable_http1().enable_http2().wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            // hyper's adaptive read buffer grows towards 400 KiB on every pooled connection that
            // carries large bodies and keeps it. A fixed size bounds that: 16 KiB kept peak RSS
            // within 1.5x nginx's in the 64 KiB and HTTP/2 shapes, for +9% instructions per
            // 64 KiB response (32 KiB: +5%, but HTTP/2 at the limit; BENCHMARKS.md).
            .http1_read_buf_exact_size(UPSTREAM_READ_BUF)
            .pool_idle_timeout(limits.upstream_idle_timeout)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(connector);
        Ok(UpstreamClient {
            config: config.clone(),
            observer,
            client,
        })
    }

    /// Sends `req`. A pooled connection found closed before the request went out is retried
    /// by hyper-util itself (`retry_canceled_requests`, on by default: the request comes back
    /// unsent, any method, body untouched), so no copy of the request is kept here.
    pub async fn send(&self, req: Request<ProxyBody>) -> Result<Response<Incoming>, UpstreamError> {
        let result = self.client.request(req).await.map_err(|e| self.error(e));
        if result.is_ok() {
            // Keeps the upstream's verified path current while pooled connections carry the traffic.
            self.observer.touch();
        }
        result
    }

    fn error(&self, source: hyper_util::client::legacy::Error) -> UpstreamError {
        UpstreamError {
            upstream: self.config.name.clone(),
            kind: classify(&source),
            source,
        }
    }
}

fn classify(e: &hyper_util::client::legacy::Error) -> ErrorKind {
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
    if e.is_connect() {
        ErrorKind::Connect
    } else {
        ErrorKind::Protocol
    }
}

/// Bytes read from an HTTP/1.1 upstream at a time.
const UPSTREAM_READ_BUF: usize = 16 * 1024;
