//! One request: host and path checks, route lookup, forwarding, and the one `match` from
//! failure to status code. Clients get a short body; the log gets the detail.

use std::borrow::Cow;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use http::header::{self, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::Either;
use hyper::body::Incoming;

use super::activity::Activity;
use super::headers;
use crate::body::{Counted, ResponseBody, Tracked, local};
use crate::config::has_dot_segment;
use crate::routes::{RouteEntry, upstream_path};
use crate::snapshot::{Live, Snapshot};
use crate::tls::ListenerTls;
use crate::upstream::ErrorKind;

/// What the proxy knows about the client connection a request came on.
#[derive(Debug)]
pub struct ConnCtx {
    pub listener: Arc<str>,
    pub peer: SocketAddr,
    pub sni: Option<String>,
    pub tls_version: &'static str,
    /// `X-Forwarded-For`: the client address formatted once per connection, not per request.
    pub forwarded_for: HeaderValue,
    /// The listener's TLS as of the handshake: the certificate served stays the one checked.
    pub tls: Arc<ListenerTls>,
    pub cert: usize,
    pub activity: Arc<Activity>,
}

/// Why the proxy answered itself instead of forwarding.
#[derive(Debug, Clone, Copy)]
enum Refusal {
    NoHost,
    DotSegments,
    Upgrade,
    MisdirectedHost,
    NoRoute,
    Upstream(ErrorKind),
}

impl Refusal {
    fn response(self) -> (StatusCode, &'static str) {
        match self {
            Refusal::NoHost => (StatusCode::BAD_REQUEST, "bad request: no host\n"),
            Refusal::DotSegments => (
                StatusCode::BAD_REQUEST,
                "bad request: dot segments in path\n",
            ),
            Refusal::Upgrade => (
                StatusCode::NOT_IMPLEMENTED,
                "protocol upgrades are not supported\n",
            ),
            Refusal::MisdirectedHost => (StatusCode::MISDIRECTED_REQUEST, "misdirected request\n"),
            Refusal::NoRoute => (StatusCode::NOT_FOUND, "not found\n"),
            Refusal::Upstream(ErrorKind::Timeout) => {
                (StatusCode::GATEWAY_TIMEOUT, "upstream timed out\n")
            }
            Refusal::Upstream(_) => (StatusCode::BAD_GATEWAY, "upstream unavailable\n"),
        }
    }
}

/// Everything the access log line needs, filled in as the request goes. Holds shared handles
/// (the URI and Host share the request head's buffer; the route entry is the snapshot's), so
/// making one copies no strings; text is made only when a line is written.
struct Record {
    ctx: Arc<ConnCtx>,
    start: Instant,
    method: Method,
    /// The Host header or authority as received.
    host: HeaderValue,
    uri: Uri,
    route: Option<Arc<RouteEntry>>,
    status: u16,
    /// Request body bytes, counted only when they are logged.
    bytes_in: Option<Arc<AtomicU64>>,
    access_log: bool,
}

impl Record {
    fn route_name(&self) -> &str {
        self.route.as_ref().map_or("-", |e| e.route.name.as_str())
    }

    fn upstream_name(&self) -> &str {
        self.route
            .as_ref()
            .map_or("-", |e| e.upstream.config.name.as_str())
    }
}

pub async fn handle(
    req: Request<Incoming>,
    ctx: Arc<ConnCtx>,
    live: Arc<Live>,
) -> Result<Response<ResponseBody>, Infallible> {
    ctx.activity.request_started();
    let snap = live.current();
    let access_log = snap.config.log.access;
    let mut rec = Record {
        ctx: ctx.clone(),
        start: Instant::now(),
        method: req.method().clone(),
        host: HeaderValue::from_static(""),
        uri: req.uri().clone(),
        route: None,
        status: 0,
        bytes_in: access_log.then(|| Arc::new(AtomicU64::new(0))),
        access_log,
    };
    let result = forward(req, &ctx, &snap, &mut rec).await;
    let mut resp = match result {
        Ok(resp) => resp,
        Err(refusal) => {
            let (status, text) = refusal.response();
            if let Refusal::Upstream(kind) = refusal {
                live.shared
                    .metrics
                    .upstream_errors
                    .with_label_values(&[rec.upstream_name(), kind.as_label()])
                    .inc();
            }
            let mut resp = Response::new(local(text));
            *resp.status_mut() = status;
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            resp
        }
    };
    rec.status = resp.status().as_u16();
    let elapsed = rec.start.elapsed().as_secs_f64();
    let code = resp.status();
    // A routed request uses the handles resolved with the snapshot; the rest (refusals before
    // routing, listeners removed by a reload) look their series up.
    match rec.route.as_ref().and_then(|e| e.metrics(&ctx.listener)) {
        Some(m) => {
            m.duration().observe(elapsed);
            m.count(code);
        }
        None => {
            let metrics = &live.shared.metrics;
            metrics
                .request_duration
                .with_label_values(&[&*ctx.listener, rec.route_name()])
                .observe(elapsed);
            metrics
                .requests
                .with_label_values(&[&*ctx.listener, rec.route_name(), code.as_str()])
                .inc();
        }
    }
    resp.body_mut()
        .set_done(Box::new(move |bytes_out| finish(rec, bytes_out)));
    Ok(resp)
}

async fn forward(
    req: Request<Incoming>,
    ctx: &ConnCtx,
    snap: &Snapshot,
    rec: &mut Record,
) -> Result<Response<ResponseBody>, Refusal> {
    let (mut parts, body) = req.into_parts();
    let host_value = match parts.uri.authority() {
        // HTTP/2 (:authority) and absolute-form HTTP/1.1: the one copy of the host per request.
        Some(a) => HeaderValue::from_str(a.as_str()).map_err(|_| Refusal::NoHost)?,
        // Shares the request head's buffer: no copy.
        None => parts
            .headers
            .get(header::HOST)
            .cloned()
            .ok_or(Refusal::NoHost)?,
    };
    rec.host = host_value.clone();
    let host_str = host_value.to_str().map_err(|_| Refusal::NoHost)?;
    let host = lowercase(host_only(host_str));
    let host = &*host;
    if has_dot_segment(parts.uri.path()) {
        return Err(Refusal::DotSegments);
    }
    if parts.method == Method::CONNECT || headers::is_upgrade(&parts.headers) {
        return Err(Refusal::Upgrade);
    }
    if !ctx.tls.certs[ctx.cert].path[0].covers_host(host) {
        return Err(Refusal::MisdirectedHost);
    }
    let entry = snap
        .routes
        .find(host, parts.uri.path())
        .ok_or(Refusal::NoRoute)?;
    rec.route = Some(entry.clone());
    let RouteEntry {
        route, upstream, ..
    } = &**entry;

    let up = &upstream.config;
    let path_and_query = match parts.uri.path_and_query() {
        // The common case sends the path as received: share it instead of rebuilding it.
        Some(pq)
            if up.base_path.is_empty() && !route.strip_prefix && pq.path().starts_with('/') =>
        {
            pq.clone()
        }
        _ => {
            let mut p = upstream_path(&up.base_path, route, parts.uri.path());
            if let Some(q) = parts.uri.query() {
                p.push('?');
                p.push_str(q);
            }
            PathAndQuery::try_from(p).map_err(|_| Refusal::DotSegments)?
        }
    };
    parts.uri = Uri::builder()
        .scheme(if up.tls { "https" } else { "http" })
        .authority(up.authority.clone())
        .path_and_query(path_and_query)
        .build()
        .map_err(|_| Refusal::DotSegments)?;
    // The upstream connection picks its own version (ALPN); the pool rejects a mismatch.
    parts.version = Version::HTTP_11;
    headers::strip_hop_by_hop(&mut parts.headers);
    headers::set_forwarded(&mut parts.headers, &ctx.forwarded_for, &host_value);
    if route.preserve_host {
        parts.headers.insert(header::HOST, host_value.clone());
    } else {
        // The client sets Host from the upstream url on HTTP/1.1; HTTP/2 carries it in
        // :authority, and a Host beside it is a duplicate to some servers (nginx < 1.25: 400).
        parts.headers.remove(header::HOST);
    }
    let req = Request::from_parts(
        parts,
        Either::Left(Counted::new(body, rec.bytes_in.clone())),
    );
    let resp = match tokio::time::timeout(route.timeout, upstream.send(req)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            tracing::warn!(upstream = %up.name, kind = e.kind.as_label(), cause = %ErrorChain(&e), "upstream request failed");
            return Err(Refusal::Upstream(e.kind));
        }
        Err(_) => {
            tracing::warn!(upstream = %up.name, timeout = ?route.timeout, "upstream response timed out");
            return Err(Refusal::Upstream(ErrorKind::Timeout));
        }
    };
    let (mut parts, body) = resp.into_parts();
    headers::strip_hop_by_hop(&mut parts.headers);
    Ok(Response::from_parts(
        parts,
        Tracked::new(Either::Left(body), None),
    ))
}

fn finish(rec: Record, bytes_out: u64) {
    rec.ctx.activity.request_done();
    if !rec.access_log {
        return;
    }
    tracing::info!(
        target: "pinproxy::access",
        client = %rec.ctx.peer,
        listener = %rec.ctx.listener,
        sni = rec.ctx.sni.as_deref().unwrap_or("-"),
        tls = rec.ctx.tls_version,
        method = %rec.method,
        host = %lowercase(host_only(rec.host.to_str().unwrap_or("-"))),
        path = %rec.uri.path(),
        status = rec.status,
        route = %rec.route_name(),
        upstream = %rec.upstream_name(),
        duration_ms = rec.start.elapsed().as_secs_f64() * 1000.0,
        bytes_in = rec.bytes_in.as_ref().map_or(0, |b| b.load(Ordering::Relaxed)),
        bytes_out,
        "request"
    );
}

/// `s` in lower case, copied only when it is not already (clients send lower case).
fn lowercase(s: &str) -> Cow<'_, str> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(s.to_ascii_lowercase())
    } else {
        Cow::Borrowed(s)
    }
}

/// The host part of a Host header or authority (no port, no brackets).
fn host_only(v: &str) -> &str {
    if let Some(rest) = v.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    v.rsplit_once(':').map_or(v, |(h, port)| {
        if port.chars().all(|c| c.is_ascii_digit()) {
            h
        } else {
            v
        }
    })
}

/// Prints an error with its sources, one level each, for the log.
struct ErrorChain<'a>(&'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, e) in crate::diag::error_chain(self.0).into_iter().enumerate() {
            if i > 0 {
                f.write_str(": ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::host_only;

    #[test]
    fn host_only_strips_ports_and_brackets() {
        assert_eq!(host_only("api.example.com:8443"), "api.example.com");
        assert_eq!(host_only("api.example.com"), "api.example.com");
        assert_eq!(host_only("[::1]:8443"), "::1");
        assert_eq!(host_only("127.0.0.1"), "127.0.0.1");
    }
}
