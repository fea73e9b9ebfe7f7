//! The process as a service manager sees it: systemd's notify protocol (`Type=notify`) and the
//! health probe a container runtime runs (`pinproxy healthcheck`; a minimal image has no curl).
//!
//! Notifications go to `$NOTIFY_SOCKET` as the `sd-notify` crate sends them; without that
//! variable (not started by systemd) they do nothing. A failed send is logged, never fatal: the
//! proxy serves either way, and systemd's own timeout reports a readiness that never came.

use std::net::SocketAddr;
use std::time::Duration;

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

/// GET `path` on the admin listener at `addr`: the status code.
pub async fn probe(
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
) -> Result<u16, crate::check::remote::AdminGetError> {
    crate::check::remote::admin_get(addr, path, timeout)
        .await
        .map(|(status, _)| status)
}
