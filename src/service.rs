//! The process as a service manager sees it: systemd's notify protocol (`Type=notify`) and the
//! health probe a container runtime runs (`pinproxy healthcheck`; a minimal image has no curl).
//!
//! Notifications go to `$NOTIFY_SOCKET` as the `sd-notify` crate sends them; without that
//! variable (not started by systemd) they do nothing. A failed send is logged, never fatal: the
//! proxy serves either way, and systemd's own timeout reports a readiness that never came.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use sd_notify::NotifyState;

/// `READY=1`: every listener is bound and accepting (or a reload finished).
pub fn ready() {
    send(&[NotifyState::Ready], "READY=1");
}

/// `RELOADING=1` with the `MONOTONIC_USEC` systemd asks for, before a SIGHUP reload.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now], "RELOADING=1"),
        Err(e) => tracing::warn!(cause = %e, "cannot read the monotonic clock for RELOADING=1"),
    }
}

/// `STOPPING=1`: shutdown has begun.
pub fn stopping() {
    send(&[NotifyState::Stopping], "STOPPING=1");
}

fn send(states: &[NotifyState], what: &'static str) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(cause = %e, what, "cannot notify the service manager");
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("cannot connect to {addr}")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("HTTP request to {addr} failed")]
    Http {
        addr: SocketAddr,
        #[source]
        source: hyper::Error,
    },
    #[error("bad path {path:?}")]
    Path {
        path: String,
        #[source]
        source: http::Error,
    },
    #[error("no answer from {addr} within {timeout:?}")]
    Timeout { addr: SocketAddr, timeout: Duration },
}

/// GET `path` on the admin listener at `addr`: the status code.
pub async fn probe(addr: SocketAddr, path: &str, timeout: Duration) -> Result<u16, ProbeError> {
    tokio::time::timeout(timeout, probe_inner(addr, path))
        .await
        .unwrap_or(Err(ProbeError::Timeout { addr, timeout }))
}

async fn probe_inner(addr: SocketAddr, path: &str) -> Result<u16, ProbeError> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|source| ProbeError::Connect { addr, source })?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
        .await
        .map_err(|source| ProbeError::Http { addr, source })?;
    tokio::spawn(conn);
    let req = http::Request::get(path)
        .header(http::header::HOST, addr.to_string())
        .body(Empty::<Bytes>::new())
        .map_err(|source| ProbeError::Path {
            path: path.to_string(),
            source,
        })?;
    let resp = send
        .send_request(req)
        .await
        .map_err(|source| ProbeError::Http { addr, source })?;
    Ok(resp.status().as_u16())
}
