//! Reuse keys: for each part of a snapshot that is expensive to lose (a listener's
//! `ServerConfig` with its ticketer and session cache, an upstream's pool with its verified
//! sessions), exactly the inputs whose change must rebuild it. A part is carried over from
//! the previous snapshot when its key is equal, and rebuilt otherwise.
//!
//! File contents enter as SHA-256 digests, so no key material is kept here.

use std::path::Path;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::config::{Config, Limits, Listener, Trust, Upstream};
use crate::files::Files;
use crate::pin::PinSet;

/// Digest of a file's contents as read for this snapshot (`None`: not read or missing).
type Contents = Option<[u8; 32]>;

/// What a listener's `ServerConfig`, certificate resolver and ticketer are built from: the
/// certificates, keys and anchors it serves and the names they answer. Pin sets, routes and
/// limits are not in it: changing them keeps TLS sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerTlsKey {
    certs: Vec<CertKey>,
    /// The shared session ticket keys: a new ticket key must rebuild the ticketer.
    tickets: Contents,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct CertKey {
    server_names: Vec<String>,
    chain: Contents,
    key: Contents,
    anchor: Contents,
}

impl ListenerTlsKey {
    pub fn new(listener: &Listener, files: &Files) -> Self {
        ListenerTlsKey {
            certs: listener
                .certs
                .iter()
                .map(|c| CertKey {
                    server_names: c.server_names.clone(),
                    chain: contents(files, &c.chain),
                    key: contents(files, &c.key),
                    anchor: c.anchor.as_deref().and_then(|a| contents(files, a)),
                })
                .collect(),
            tickets: listener
                .session_ticket_keys
                .as_deref()
                .and_then(|p| contents(files, p)),
        }
    }
}

/// What an upstream's client and pool are built from: its url, trust and the CA file's
/// contents, server name, pin set (contents) and pin matching, and the limits the client
/// itself applies. Route timeouts, `shutdown_grace` and the like are not in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamKey {
    upstream: Upstream,
    ca: Contents,
    pin_set: Option<PinSet>,
    connect_timeout: Duration,
    idle_timeout: Duration,
    max_response_header_bytes: usize,
}

impl UpstreamKey {
    pub fn new(config: &Config, upstream: &Upstream, files: &Files) -> Self {
        let Limits {
            upstream_connect_timeout,
            upstream_idle_timeout,
            max_response_header_bytes,
            ..
        } = config.limits;
        UpstreamKey {
            upstream: upstream.clone(),
            ca: match &upstream.trust {
                Trust::Ca(p) => contents(files, p),
                Trust::WebPki | Trust::System => None,
            },
            pin_set: upstream
                .pin_set
                .as_ref()
                .and_then(|n| config.pin_sets.get(n))
                .cloned(),
            connect_timeout: upstream_connect_timeout,
            idle_timeout: upstream_idle_timeout,
            max_response_header_bytes,
        }
    }
}

fn contents(files: &Files, path: &Path) -> Contents {
    files.get(path).map(|d| Sha256::digest(d.as_slice()).into())
}
