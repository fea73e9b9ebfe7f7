//! `pinproxy check --probe`: a dry run of every HTTPS upstream's handshake, with the trust and
//! pin set the running proxy would use — `nginx -t` plus "would the upstream connect now?".
//!
//! Builds each upstream's verifier afresh from the snapshot's config and completes one TLS
//! handshake; it sends no request. Says, per upstream, whether the live chain verifies and
//! which pin of its pin set matched on the verified path.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::config::Upstream;
use crate::diag::ErrorText;
use crate::files::Files;
use crate::snapshot::{Shared, Snapshot};
use crate::tls::{self, UpstreamObserver};

/// What one probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeResult {
    pub upstream: String,
    pub ok: bool,
    /// One line for a person: the verified path and the matched pin, or why it failed.
    pub text: String,
}

/// Probes every HTTPS upstream of `snap`, one after the other.
pub async fn probe_all(snap: &Snapshot, shared: &Shared) -> Vec<ProbeResult> {
    let mut out = Vec::new();
    for u in snap.config.upstreams.values().filter(|u| u.tls) {
        out.push(probe(snap, shared, u).await);
    }
    out
}

async fn probe(snap: &Snapshot, shared: &Shared, u: &Upstream) -> ProbeResult {
    let fail = |text: String| ProbeResult {
        upstream: u.name.clone(),
        ok: false,
        text,
    };
    // A private observer: the probe's path is reported here, not mixed into anything else.
    let observer = UpstreamObserver::new(
        &u.name,
        shared.metrics.clone(),
        Arc::new(tokio::sync::Notify::new()),
    );
    let upstream_tls = match tls::build_upstream_tls(
        &snap.config,
        u,
        &mut Files::new(),
        &shared.provider,
        observer.clone(),
    ) {
        Ok(t) => t,
        Err(p) => return fail(format!("cannot build its TLS configuration: {p}")),
    };
    let Ok(name) = ServerName::try_from(u.verify_name().to_string()) else {
        return fail(format!(
            "\"{}\" is not a valid server name",
            u.verify_name()
        ));
    };
    let port = u.authority.port_u16().unwrap_or(443);
    let addr = format!("{}:{port}", u.host);
    let connect = async {
        let tcp = TcpStream::connect(&addr).await?;
        TlsConnector::from(upstream_tls.client_config.clone())
            .connect(name, tcp)
            .await
    };
    let handshake = match tokio::time::timeout(PROBE_TIMEOUT, connect).await {
        Ok(r) => r,
        Err(_) => return fail(format!("{addr}: no handshake within {PROBE_TIMEOUT:?}")),
    };
    let path = observer.last_path().map(|(_, p)| p).unwrap_or_default();
    let set = u.pin_set.as_ref().and_then(|n| snap.config.pin_sets.get(n));
    let shown: Vec<String> = path
        .iter()
        .map(|c| {
            let matched: Vec<&str> = set
                .map(|s| {
                    s.pins
                        .iter()
                        .filter(|p| p.pin == c.pin)
                        .map(|p| p.label.as_str())
                        .collect()
                })
                .unwrap_or_default();
            let pin = if matched.is_empty() {
                String::new()
            } else {
                format!(" matches pin \"{}\"", matched.join("\", \""))
            };
            format!(
                "{} {} {}{pin}",
                c.position.as_str(),
                c.subject,
                c.pin.to_prefixed()
            )
        })
        .collect();
    let any_match = set.is_some_and(|s| path.iter().any(|c| s.contains(&c.pin)));
    match handshake {
        Err(e) => fail(format!("{addr}: handshake failed: {}", ErrorText(&e))),
        Ok(_) if set.is_some() && !any_match => ProbeResult {
            // Report mode lets the handshake through; the proxy would count a mismatch.
            upstream: u.name.clone(),
            ok: false,
            text: format!(
                "{addr}: verified, but no pin of pin set \"{}\" matches (report mode): {}",
                u.pin_set.as_deref().unwrap_or("-"),
                shown.join("; ")
            ),
        },
        Ok(_) => ProbeResult {
            upstream: u.name.clone(),
            ok: true,
            text: format!("{addr}: verified: {}", shown.join("; ")),
        },
    }
}

const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
