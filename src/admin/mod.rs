//! The admin listener: `/` (the status page), `/metrics`, `/healthz`, `/readyz`, `/status`
//! over plain HTTP/1.1.
//!
//! Reads the current snapshot and the shared state; changes nothing.

pub mod status_page;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::task::TaskTracker;

use crate::clock::unix_now;
use crate::inventory::Inventory;
use crate::reload::{ReloadStatus, ReloadView};
use crate::snapshot::{Live, Snapshot};

/// State the admin endpoints report besides the snapshot.
#[derive(Debug)]
pub struct AdminState {
    pub live: Arc<Live>,
    pub reload: Arc<ReloadStatus>,
    /// True once shutdown has begun: `/readyz` answers 503.
    pub draining: AtomicBool,
}

/// Serves the admin endpoints until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AdminState>,
    tracker: TaskTracker,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let (tcp, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(cause = %e, "admin accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let state = state.clone();
        let mut shutdown = shutdown.clone();
        tracker.spawn(async move {
            let svc = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(route(&req, &state)) }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(ADMIN_HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(tcp), svc);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = shutdown.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
}

fn route(req: &Request<Incoming>, state: &AdminState) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n".into());
    }
    let snap = state.live.current();
    match req.uri().path() {
        "/metrics" => {
            let mut r = Response::new(Full::new(Bytes::from(state.live.shared.metrics.encode())));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            r
        }
        "/" => {
            let inv = Inventory::of(&snap, &state.live.shared.metrics, unix_now());
            let page = crate::admin::status_page::render(&inv, &state.reload.view());
            let mut r = Response::new(Full::new(Bytes::from(page)));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            r
        }
        "/healthz" => text(StatusCode::OK, "ok\n".into()),
        "/readyz" => {
            if state.draining.load(Ordering::Relaxed) {
                text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n".into())
            } else {
                text(
                    StatusCode::OK,
                    format!("ready generation={}\n", snap.generation),
                )
            }
        }
        "/status" => {
            let body = status(&snap, state);
            let mut r = Response::new(Full::new(Bytes::from(
                serde_json::to_vec_pretty(&body).unwrap_or_default(),
            )));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            r
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try / /metrics /healthz /readyz /status\n".into(),
        ),
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// The `/status` document: the inventory of the running snapshot (what is served, what pins
/// it, what upstreams showed), the reload status and the snapshot's warnings.
#[derive(Debug, serde::Serialize)]
pub struct Status {
    #[serde(flatten)]
    pub inventory: Inventory,
    pub reload: ReloadView,
    pub warnings: Vec<String>,
}

pub fn status(snap: &Snapshot, state: &AdminState) -> Status {
    Status {
        inventory: Inventory::of(snap, &state.live.shared.metrics, unix_now()),
        reload: state.reload.view(),
        warnings: snap.warnings.warnings().map(|w| w.to_string()).collect(),
    }
}

const ADMIN_HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
