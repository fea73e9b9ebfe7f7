//! One request: host and path checks, route lookup, forwarding, and the one `match` from
//! failure to status code. Clients get a short body; the log gets the detail.

use std::borrow::Cow;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::header::{self, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::Either;
use hyper::body::Incoming;

use super::activity::Activity;
use super::request_id::{X_REQUEST_ID, request_id};
use super::semantics::{self, BadRequest};
use super::{headers, response_headers};
use crate::auth::Denied;
use crate::body::{BodyStats, Counted, OnStall, ReadTimeout, ResponseBody, Tracked, local};
use crate::config::{Route, Upstream};
use crate::diag::ErrorText;
use crate::path::{self, PathError};
use crate::routes::{RouteEntry, upstream_path};
use crate::snapshot::{Live, Snapshot};
use crate::tls::ListenerTls;
use crate::upstream::{ErrorKind, UpstreamError};

/// What the proxy knows about the client connection a request came on.
#[derive(Debug)]
pub struct ConnCtx {
    pub listener: Arc<str>,
    pub peer: SocketAddr,
    pub sni: Option<String>,
    pub tls_version: &'static str,
    /// `X-Forwarded-For`: the client address formatted once per connection, not per request.
    pub forwarded_for: HeaderValue,
    /// `pinproxy_client_errors_total{listener,kind="body"}`, resolved once per connection.
    pub client_body_errors: prometheus::IntCounter,
    /// The listener's TLS as of the handshake: the certificate served stays the one checked.
    pub tls: Arc<ListenerTls>,
    pub cert: usize,
    pub activity: Arc<Activity>,
}

/// Why the proxy answered itself instead of forwarding.
#[derive(Debug, Clone, Copy)]
enum Refusal {
    NoHost,
    InvalidHost,
    HeadTooLarge,
    Trace,
    /// The client's request body failed (bad chunk, early close): its error, not the upstream's.
    ClientBody,
    DotSegments,
    /// The path cannot be normalised, or would route elsewhere under another reading.
    Path(PathError),
    Upgrade,
    MisdirectedHost,
    NoRoute,
    Auth(Denied),
    Upstream(ErrorKind),
}

impl Refusal {
    fn response(self) -> (StatusCode, &'static str) {
        match self {
            Refusal::NoHost => (StatusCode::BAD_REQUEST, "bad request: no host\n"),
            Refusal::InvalidHost => (StatusCode::BAD_REQUEST, "bad request: invalid host\n"),
            Refusal::HeadTooLarge => (
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "request header fields too large\n",
            ),
            // As nginx answers TRACE: it would echo credentials added on the way.
            Refusal::Trace => (StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n"),
            Refusal::ClientBody => (StatusCode::BAD_REQUEST, "bad request: request body\n"),
            Refusal::DotSegments => (
                StatusCode::BAD_REQUEST,
                "bad request: dot segments in path\n",
            ),
            Refusal::Path(PathError::DotSegment) => (
                StatusCode::BAD_REQUEST,
                "bad request: dot segments in path\n",
            ),
            Refusal::Path(_) => (StatusCode::BAD_REQUEST, "bad request: path\n"),
            Refusal::Upgrade => (
                StatusCode::NOT_IMPLEMENTED,
                "protocol upgrades are not supported\n",
            ),
            Refusal::MisdirectedHost => (StatusCode::MISDIRECTED_REQUEST, "misdirected request\n"),
            Refusal::NoRoute => (StatusCode::NOT_FOUND, "not found\n"),
            Refusal::Auth(Denied::Bearer { .. }) => (StatusCode::UNAUTHORIZED, "unauthorized\n"),
            Refusal::Auth(Denied::Forbidden) => (StatusCode::FORBIDDEN, "forbidden\n"),
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
    /// The request body's bytes and failure, shared with the body sent upstream.
    body: Arc<BodyStats>,
    access_log: bool,
    version: &'static str,
    /// Shares the request head's buffer; text only when a line is written.
    user_agent: Option<HeaderValue>,
    request_id: HeaderValue,
    /// From sending upstream to the upstream's response head.
    upstream_time: Option<std::time::Duration>,
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
    // Most configs map no app versions: skip even the lookup then.
    if let Some(adoption) = (!snap.adoption.is_empty())
        .then(|| snap.adoption.get(&*ctx.listener))
        .flatten()
    {
        adoption.count(req.headers());
    }
    let access_log = snap.config.log.access;
    let mut rec = Record {
        ctx: ctx.clone(),
        start: Instant::now(),
        method: req.method().clone(),
        host: HeaderValue::from_static(""),
        uri: req.uri().clone(),
        route: None,
        status: 0,
        body: Arc::new(BodyStats::new(ctx.client_body_errors.clone())),
        access_log,
        version: version_text(req.version()),
        user_agent: req.headers().get(header::USER_AGENT).cloned(),
        request_id: request_id(req.headers(), &live.shared.provider),
        upstream_time: None,
    };
    // Boxed: its state (the request head, the upstream call, timers) is most of a request's
    // future, which hyper moves on every HTTP/2 stream spawn; one allocation costs less than
    // those copies (BENCHMARKS.md §1).
    let result = Box::pin(forward(req, &ctx, &snap, &mut rec)).await;
    if rec.upstream_time.is_some()
        && let Some(entry) = &rec.route
    {
        entry.upstream_requests.inc();
    }
    let mut resp = match result {
        Ok(resp) => resp,
        Err(refusal) => {
            let (status, text) = refusal.response();
            // Client body failures are counted where the body failed, not here.
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
            if let Refusal::Trace = refusal {
                resp.headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static(ALLOW));
            }
            if let Refusal::Auth(denied) = refusal
                && let Some(challenge) = denied.challenge()
            {
                resp.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, challenge);
            }
            resp
        }
    };
    // A value unique to each request would only churn an HTTP/2 client's HPACK table (and
    // cost an insert and eviction per response): marked never-indexed.
    let mut id = rec.request_id.clone();
    id.set_sensitive(true);
    resp.headers_mut().insert(X_REQUEST_ID.clone(), id);
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
    let limits = &snap.config.limits;
    if semantics::request_head_size(&parts) > limits.max_header_bytes {
        return Err(Refusal::HeadTooLarge);
    }
    let (host_value, client_authority) =
        semantics::client_authority(&parts).map_err(|e| match e {
            BadRequest::NoHost => Refusal::NoHost,
            BadRequest::InvalidHost => Refusal::InvalidHost,
        })?;
    // Kept as a header value for X-Forwarded-Host and the access log.
    rec.host = host_value;
    let host = lowercase(host_only(client_authority.as_str()));
    let host = &*host;
    // Once: routing, the route's token check and the upstream all see this one path.
    let path = path::normalise(parts.uri.path()).map_err(Refusal::Path)?;
    if parts.method == Method::CONNECT || headers::is_upgrade(&parts.headers) {
        return Err(Refusal::Upgrade);
    }
    if parts.method == Method::TRACE {
        return Err(Refusal::Trace);
    }
    if !ctx.tls.certs[ctx.cert].path[0].covers_host(host) {
        return Err(Refusal::MisdirectedHost);
    }
    // `OPTIONS *` asks about the server as a whole: routed like "/", forwarded as "*".
    let asterisk = parts.method == Method::OPTIONS && semantics::is_asterisk(&parts);
    let entry = if asterisk {
        snap.routes.find(host, "/")
    } else {
        let same = |a: &Option<&Arc<RouteEntry>>, b: &Option<&Arc<RouteEntry>>| {
            a.map(Arc::as_ptr) == b.map(Arc::as_ptr)
        };
        path::route(&path, |p| snap.routes.find(host, p), same).map_err(Refusal::Path)?
    }
    .ok_or(Refusal::NoRoute)?;
    rec.route = Some(entry.clone());
    let RouteEntry {
        route,
        upstream,
        auth,
        ..
    } = &**entry;

    let up = &upstream.config;
    let path_and_query = upstream_target(&parts.uri, &path, route, &up.base_path, asterisk)?;
    if parts.version == Version::HTTP_2 {
        semantics::join_cookies(&mut parts.headers);
    }
    // The request is addressed to the upstream, or with `preserve_host` to the client's host:
    // HTTP/1.1 upstreams get it as Host, HTTP/2 ones as `:authority` (never both). The
    // connection goes to the upstream's url either way.
    // Without `preserve_host`: the route's or upstream's `host_header`, else `server_name`, else
    // the url's host (the
    // provider's name, for virtual hosting and CDNs).
    let authority = if route.preserve_host {
        client_authority
    } else {
        entry.authority.clone()
    };
    parts.uri = Uri::builder()
        .scheme(if up.tls { "https" } else { "http" })
        .authority(authority)
        .path_and_query(path_and_query)
        .build()
        .map_err(|_| Refusal::DotSegments)?;
    // The upstream connection picks its own version (ALPN); the pool rejects a mismatch.
    parts.version = Version::HTTP_11;
    headers::strip_hop_by_hop(&mut parts.headers);
    headers::set_forwarded(&mut parts.headers, &ctx.forwarded_for, &rec.host);
    // Host comes from the URI authority above (the upstream pool writes it for HTTP/1.1); a
    // Host beside HTTP/2's :authority is a duplicate to some servers (nginx < 1.25: 400).
    parts.headers.remove(header::HOST);
    parts
        .headers
        .insert(X_REQUEST_ID.clone(), rec.request_id.clone());
    // Last, so nothing after it can drop a claim header or re-add the token.
    if let Some(auth) = auth {
        auth.apply(&mut parts.headers).map_err(Refusal::Auth)?;
    }
    let req = Request::from_parts(parts, Either::Left(Counted::new(body, rec.body.clone())));
    let sent = Instant::now();
    let result = tokio::time::timeout(route.timeout, upstream.send(req)).await;
    rec.upstream_time = Some(sent.elapsed());
    let resp = upstream_answer(result, rec, up, route)?;
    let (mut parts, body) = resp.into_parts();
    if let Err(bad) = semantics::check_response(&parts, limits.max_response_header_bytes) {
        tracing::warn!(upstream = %up.name, problem = bad.as_str(), "upstream response refused");
        return Err(Refusal::Upstream(ErrorKind::Protocol));
    }
    headers::strip_hop_by_hop(&mut parts.headers);
    response_headers::apply(&route.response_headers, &mut parts.headers);
    // The entry (shared) counts the stall and names the upstream: no allocation per request.
    let on_stall: Arc<dyn OnStall> = entry.clone();
    Ok(Response::from_parts(
        parts,
        Tracked::new(
            Either::Left(ReadTimeout::new(
                body,
                limits.upstream_read_timeout,
                Some(on_stall),
            )),
            None,
        ),
    ))
}

/// The path and query sent upstream: the normalised path under the route's `strip_prefix` and
/// the upstream's base path; the request's own when nothing changes it (shared, not copied).
fn upstream_target(
    uri: &Uri,
    path: &path::Normal<'_>,
    route: &Route,
    base_path: &str,
    asterisk: bool,
) -> Result<PathAndQuery, Refusal> {
    Ok(match uri.path_and_query() {
        _ if asterisk => PathAndQuery::from_static("*"),
        // The common case sends the path as received: share it instead of rebuilding it.
        Some(pq)
            if base_path.is_empty()
                && !route.strip_prefix
                && !path.is_changed()
                && pq.path().starts_with('/') =>
        {
            pq.clone()
        }
        _ => {
            let mut p = upstream_path(base_path, route, path.as_str());
            if let Some(q) = uri.query() {
                p.push('?');
                p.push_str(q);
            }
            PathAndQuery::try_from(p).map_err(|_| Refusal::DotSegments)?
        }
    })
}

/// The upstream's answer, or the refusal a failed or timed-out send becomes (logged here).
fn upstream_answer(
    result: Result<Result<Response<Incoming>, UpstreamError>, tokio::time::error::Elapsed>,
    rec: &Record,
    up: &Upstream,
    route: &Route,
) -> Result<Response<Incoming>, Refusal> {
    match result {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(e)) if rec.body.failed() => {
            tracing::debug!(upstream = %up.name, cause = %ErrorText(&e), "client request body failed");
            Err(Refusal::ClientBody)
        }
        Ok(Err(e)) => {
            tracing::warn!(upstream = %up.name, kind = e.kind.as_label(), cause = %ErrorText(&e), "upstream request failed");
            Err(Refusal::Upstream(e.kind))
        }
        Err(_) => {
            tracing::warn!(upstream = %up.name, timeout_ms = crate::diag::ms(route.timeout), "upstream response timed out");
            Err(Refusal::Upstream(ErrorKind::Timeout))
        }
    }
}

/// What a 405 to TRACE allows: every method the proxy forwards.
const ALLOW: &str = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS";

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
        duration_ms = crate::diag::ms(rec.start.elapsed()),
        upstream_ms = rec.upstream_time.map(crate::diag::ms),
        version = rec.version,
        user_agent = rec
            .user_agent
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-"),
        request_id = rec.request_id.to_str().unwrap_or("-"),
        bytes_in = rec.body.bytes(),
        bytes_out,
        "request"
    );
}

fn version_text(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2",
        Version::HTTP_3 => "HTTP/3",
        _ => "-",
    }
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
