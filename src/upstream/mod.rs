//! A pooled HTTP/1.1 + HTTP/2 client for one upstream, built with that upstream's own
//! `ClientConfig` so a pool never outlives the trust and pins it was verified under.
//!
//! Knows nothing of routes or client connections: it sends a request, retries once when a
//! pooled connection turned out stale before an idempotent, body-less request went out, and
//! classifies failures for the metrics and the status code.

mod dial;

use std::sync::Arc;

use http::{Method, Request, Response, Uri};
use http_body_util::{Either, Empty};
use hyper::body::{Body as _, Incoming};
use hyper_rustls::{FixedServerNameResolver, HttpsConnector};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::ClientConfig;
use rustls::pki_types::ServerName;

use crate::config::{Limits, Upstream};
use crate::diag::error_chain;
use crate::tls::{UpstreamObserver, UpstreamTls, is_pin_mismatch};
use dial::Dial;

pub use crate::body::RequestBody as ProxyBody;

/// One upstream's client and pool.
#[derive(Debug)]
pub struct UpstreamClient {
    pub config: Upstream,
    pub observer: Arc<UpstreamObserver>,
    client: Client<HttpsConnector<Dial>, ProxyBody>,
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
        // The request's authority may name the provider (`host_header`): SNI and the name
        // verified always come from the upstream's config, the address dialed from its url.
        let builder = match ServerName::try_from(config.verify_name().to_string()).ok() {
            Some(name) => builder.with_server_name_resolver(FixedServerNameResolver::new(name)),
            None => builder,
        };
        let target = Uri::builder()
            .scheme(if config.tls { "https" } else { "http" })
            .authority(config.authority.clone())
            .path_and_query("/")
            .build()
            .map_err(|e| rustls::Error::General(format!("upstream url: {e}")))?;
        let connector = builder
            .enable_http1()
            .enable_http2()
            .wrap_connector(Dial::new(http, target));
        let client = Client::builder(TokioExecutor::new())
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

    /// Sends `req`; an idempotent request without a body is sent again once when a pooled
    /// connection was found closed.
    pub async fn send(&self, req: Request<ProxyBody>) -> Result<Response<Incoming>, UpstreamError> {
        let retry = if is_idempotent(req.method()) && req.body().is_end_stream() {
            let mut copy = Request::new(Either::Right(Empty::new()));
            *copy.method_mut() = req.method().clone();
            *copy.uri_mut() = req.uri().clone();
            *copy.version_mut() = req.version();
            *copy.headers_mut() = req.headers().clone();
            Some(copy)
        } else {
            None
        };
        let result = match self.client.request(req).await {
            Ok(resp) => Ok(resp),
            Err(e) if retry.is_some() && is_stale_connection(&e) => {
                tracing::debug!(upstream = %self.config.name, cause = %e, "pooled connection was stale, retrying once");
                let copy = retry.expect("checked is_some in the guard");
                self.client.request(copy).await.map_err(|e| self.error(e))
            }
            Err(e) => Err(self.error(e)),
        };
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

fn is_idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

fn is_stale_connection(e: &hyper_util::client::legacy::Error) -> bool {
    !e.is_connect()
        && error_chain(e).into_iter().any(|err| {
            err.downcast_ref::<hyper::Error>()
                .is_some_and(|h| h.is_incomplete_message() || h.is_canceled() || h.is_closed())
                || err.downcast_ref::<std::io::Error>().is_some_and(|io| {
                    matches!(
                        io.kind(),
                        std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
                    )
                })
        })
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
