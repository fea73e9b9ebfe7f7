//! The connections to one upstream, in place of hyper-util's general-purpose client: idle
//! HTTP/1.1 connections per request authority (newest reused first, so the rest age out) and
//! one shared HTTP/2 connection per authority when ALPN picks it.
//!
//! Every connection goes to the same place (the upstream's url, SNI and pins), so a checkout is
//! a lock, one lookup with a fast hash and a pop; hyper-util hashed its key twice with SipHash
//! and moved large futures on every request (BENCHMARKS.md §1). Connections stay keyed by the
//! authority requests are addressed to: one addressed under one host is never reused under
//! another (`preserve_host`).
//!
//! A request is sent again only when hyper hands it back unwritten (a pooled connection found
//! closed first); anything that may have reached the upstream is never repeated.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use foldhash::fast::RandomState;
use http::header::{self, HeaderValue};
use http::uri::{Authority, PathAndQuery};
use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::{Connection, HttpConnector};
use hyper_util::rt::TokioExecutor;
use tower_service::Service;

use super::ProxyBody;
use super::connect::FixedDestination;
use crate::sync::lock;

pub(super) type Connector = FixedDestination<HttpsConnector<HttpConnector>>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a request got no response.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("connecting to the upstream")]
    Connect(#[source] BoxError),
    #[error("HTTP handshake with the upstream")]
    Handshake(#[source] hyper::Error),
    #[error("exchanging the request with the upstream")]
    Request(#[source] hyper::Error),
}

pub(super) struct Pool {
    connector: Connector,
    h1: http1::Builder,
    h2: http2::Builder<TokioExecutor>,
    idle_timeout: Duration,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("idle_timeout", &self.idle_timeout)
            .finish_non_exhaustive()
    }
}

struct Shared {
    buckets: Mutex<HashMap<Authority, Bucket, RandomState>>,
    /// Whether the task that closes connections idle past the timeout runs.
    sweeping: AtomicBool,
    /// Whether the upstream speaks TLS: its scheme's default port is left out of Host headers.
    tls: bool,
}

struct Bucket {
    /// The Host header of HTTP/1.1 requests under this authority, made once.
    host: HeaderValue,
    /// Newest last.
    idle: Vec<Idle>,
    /// Shared by every request; closed by the sweeper after `idle_timeout` without one.
    h2: Option<(http2::SendRequest<ProxyBody>, Instant)>,
}

struct Idle {
    tx: http1::SendRequest<ProxyBody>,
    since: Instant,
}

enum Conn {
    H1(http1::SendRequest<ProxyBody>),
    H2(http2::SendRequest<ProxyBody>),
}

impl Pool {
    pub(super) fn new(
        connector: Connector,
        h1: http1::Builder,
        h2: http2::Builder<TokioExecutor>,
        idle_timeout: Duration,
        tls: bool,
    ) -> Self {
        Pool {
            connector,
            h1,
            h2,
            idle_timeout,
            shared: Arc::new(Shared {
                buckets: Mutex::default(),
                sweeping: AtomicBool::new(false),
                tls,
            }),
        }
    }

    /// Sends `req`, addressed (Host or `:authority`) to its URI's authority, over an idle
    /// connection or a new one.
    pub(super) async fn send(
        &self,
        mut req: Request<ProxyBody>,
    ) -> Result<Response<Incoming>, SendError> {
        let uri = req.uri().clone();
        let Some(authority) = uri.authority().cloned() else {
            return Err(SendError::Connect("request without an authority".into()));
        };
        // Idle connections first; one found closed hands the request back unsent. A handed-back
        // HTTP/1.1 connection is already out of the pool; an HTTP/2 one (closing after a
        // GOAWAY, say) is taken out so the next attempt does not pick it again.
        while let Some((conn, host)) = self.checkout(&authority) {
            let sent = match conn {
                Conn::H2(tx) => {
                    let sent = send_h2(tx, req).await;
                    if matches!(sent, Err(Unsent::Returned(_))) {
                        self.forget_h2(&authority);
                    }
                    sent
                }
                Conn::H1(tx) => self.send_h1(tx, req, &authority, host).await,
            };
            req = match sent {
                Ok(resp) => return Ok(resp),
                Err(Unsent::Failed(e)) => return Err(e),
                Err(Unsent::Returned(req)) => {
                    let mut req = *req;
                    // As it was before the HTTP/1.1 form was applied.
                    *req.uri_mut() = uri.clone();
                    req.headers_mut().remove(header::HOST);
                    req
                }
            };
        }
        // Boxed: connecting (TCP, TLS, HTTP handshakes) is a large future, and inline it would
        // make every request's future as large, copied each time it moves.
        let sent = match Box::pin(self.connect(&authority)).await? {
            Conn::H2(tx) => send_h2(tx, req).await,
            Conn::H1(tx) => {
                let host = self.host_for(&authority);
                self.send_h1(tx, req, &authority, host).await
            }
        };
        match sent {
            Ok(resp) => Ok(resp),
            Err(Unsent::Failed(e)) => Err(e),
            // A new connection that closed before taking the request: no other to try.
            Err(Unsent::Returned(_)) => Err(SendError::Connect(
                "the upstream closed a new connection before the request was written".into(),
            )),
        }
    }

    async fn send_h1(
        &self,
        mut tx: http1::SendRequest<ProxyBody>,
        mut req: Request<ProxyBody>,
        authority: &Authority,
        host: HeaderValue,
    ) -> Result<Response<Incoming>, Unsent> {
        if tx.ready().await.is_err() {
            return Err(Unsent::Returned(Box::new(req)));
        }
        req.headers_mut().entry(header::HOST).or_insert(host);
        // CONNECT (authority form) is refused before anything is forwarded.
        origin_form(req.uri_mut());
        let resp = match tx.try_send_request(req).await {
            Ok(resp) => resp,
            Err(mut e) => {
                return Err(match e.take_message() {
                    Some(req) => Unsent::Returned(Box::new(req)),
                    None => Unsent::Failed(SendError::Request(e.into_error())),
                });
            }
        };
        // Back to the pool once the connection can take the next request: now, when the
        // response is already read whole, else when hyper says so (after the body).
        if tx.is_ready() {
            put(&self.shared, authority, tx, self.idle_timeout);
        } else {
            let shared = Arc::downgrade(&self.shared);
            let authority = authority.clone();
            let timeout = self.idle_timeout;
            tokio::spawn(async move {
                if tx.ready().await.is_ok()
                    && let Some(shared) = shared.upgrade()
                {
                    put(&shared, &authority, tx, timeout);
                }
            });
        }
        Ok(resp)
    }

    fn checkout(&self, authority: &Authority) -> Option<(Conn, HeaderValue)> {
        let mut buckets = lock(&self.shared.buckets);
        let bucket = buckets.get_mut(authority)?;
        let now = Instant::now();
        if let Some((tx, used)) = &mut bucket.h2 {
            if !tx.is_closed() {
                *used = now;
                return Some((Conn::H2(tx.clone()), bucket.host.clone()));
            }
            bucket.h2 = None;
        }
        while let Some(idle) = bucket.idle.pop() {
            if !idle.tx.is_closed() && now.duration_since(idle.since) < self.idle_timeout {
                return Some((Conn::H1(idle.tx), bucket.host.clone()));
            }
        }
        None
    }

    async fn connect(&self, authority: &Authority) -> Result<Conn, SendError> {
        // The destination is the upstream's url whatever is asked for (FixedDestination).
        let io = self
            .connector
            .clone()
            .call(Uri::default())
            .await
            .map_err(SendError::Connect)?;
        if io.connected().is_negotiated_h2() {
            let (mut tx, conn) = self.h2.handshake(io).await.map_err(SendError::Handshake)?;
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(cause = %e, "upstream HTTP/2 connection ended with an error");
                }
            });
            tx.ready().await.map_err(SendError::Handshake)?;
            let mut buckets = lock(&self.shared.buckets);
            let bucket = buckets
                .entry(authority.clone())
                .or_insert_with(|| Bucket::new(authority, self.shared.tls));
            bucket.h2 = Some((tx.clone(), Instant::now()));
            drop(buckets);
            start_sweeper(&self.shared, self.idle_timeout);
            Ok(Conn::H2(tx))
        } else {
            let (tx, conn) = self.h1.handshake(io).await.map_err(SendError::Handshake)?;
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(cause = %e, "upstream HTTP/1.1 connection ended with an error");
                }
            });
            Ok(Conn::H1(tx))
        }
    }

    fn forget_h2(&self, authority: &Authority) {
        if let Some(bucket) = lock(&self.shared.buckets).get_mut(authority) {
            bucket.h2 = None;
        }
    }

    fn host_for(&self, authority: &Authority) -> HeaderValue {
        match lock(&self.shared.buckets).get(authority) {
            Some(b) => b.host.clone(),
            None => host_header(authority, self.shared.tls),
        }
    }
}

enum Unsent {
    /// hyper handed the request back unwritten.
    Returned(Box<Request<ProxyBody>>),
    Failed(SendError),
}

async fn send_h2(
    mut tx: http2::SendRequest<ProxyBody>,
    req: Request<ProxyBody>,
) -> Result<Response<Incoming>, Unsent> {
    if tx.ready().await.is_err() {
        return Err(Unsent::Returned(Box::new(req)));
    }
    tx.try_send_request(req)
        .await
        .map_err(|mut e| match e.take_message() {
            Some(req) => Unsent::Returned(Box::new(req)),
            None => Unsent::Failed(SendError::Request(e.into_error())),
        })
}

impl Bucket {
    fn new(authority: &Authority, tls: bool) -> Self {
        Bucket {
            host: host_header(authority, tls),
            idle: Vec::new(),
            h2: None,
        }
    }
}

fn put(
    shared: &Arc<Shared>,
    authority: &Authority,
    tx: http1::SendRequest<ProxyBody>,
    timeout: Duration,
) {
    let mut buckets = lock(&shared.buckets);
    let bucket = match buckets.get_mut(authority) {
        Some(b) => b,
        None => buckets
            .entry(authority.clone())
            .or_insert_with(|| Bucket::new(authority, shared.tls)),
    };
    bucket.idle.push(Idle {
        tx,
        since: Instant::now(),
    });
    drop(buckets);
    start_sweeper(shared, timeout);
}

/// Closes connections idle past `timeout` (dropping the sender ends hyper's connection task)
/// and forgets empty authorities, while the pool exists.
fn start_sweeper(shared: &Arc<Shared>, timeout: Duration) {
    if shared.sweeping.swap(true, Ordering::Relaxed) {
        return;
    }
    let weak: Weak<Shared> = Arc::downgrade(shared);
    let period = (timeout / 2).max(Duration::from_millis(100));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(shared) = weak.upgrade() else {
                return;
            };
            let now = Instant::now();
            lock(&shared.buckets).retain(|_, b| {
                b.idle
                    .retain(|i| !i.tx.is_closed() && now.duration_since(i.since) < timeout);
                if b.h2.as_ref().is_some_and(|(tx, used)| {
                    tx.is_closed() || now.duration_since(*used) >= timeout
                }) {
                    b.h2 = None;
                }
                !b.idle.is_empty() || b.h2.is_some()
            });
        }
    });
}

/// The Host header for `authority`, as HTTP/1.1 clients write it.
fn host_header(authority: &Authority, tls: bool) -> HeaderValue {
    let text = crate::config::host_with_port(authority.host(), authority.port_u16(), tls);
    // An `Authority` holds only characters a header value allows.
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The request target as HTTP/1.1 sends it to an origin: path and query only.
fn origin_form(uri: &mut Uri) {
    let pq = uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    *uri = Uri::from(pq);
}
