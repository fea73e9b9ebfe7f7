//! Client side of the proxy: accept, TLS handshake with the listener's current config,
//! HTTP/1.1 or HTTP/2 by ALPN, and the per-connection timers.
//!
//! A handshake uses the snapshot current at accept; every request reads the current snapshot
//! again, so a long-lived HTTP/2 connection sees new routes and upstream pins. This module
//! never sees the config file format.

mod activity;
mod handler;
/// Public for the micro-benchmarks in benches/ only.
pub mod headers;
mod linger;
mod proxy_protocol;
mod request_id;
mod response_headers;
mod semantics;
mod streams;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use rustls::AlertDescription;
use rustls::server::Acceptor;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::LazyConfigAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

use crate::config::Limits;
use crate::snapshot::Live;
use crate::tls::ListenerTls;
use activity::{Activity, ActivityIo, Verdict};
use linger::Reclaim;

pub use handler::ConnCtx;

/// Accepts connections on `listener` until `shutdown` turns true; connections are spawned on
/// `tracker`, and told to finish gracefully on shutdown.
pub async fn serve_listener(
    name: String,
    listener: TcpListener,
    live: Arc<Live>,
    tracker: TaskTracker,
    mut shutdown: watch::Receiver<bool>,
) {
    let name: Arc<str> = Arc::from(name);
    let open = Arc::new(AtomicUsize::new(0));
    let metrics = live.shared.metrics.clone();
    let open_gauge = metrics.connections_open.with_label_values(&[&*name]);
    let rejected = metrics.connections_rejected.with_label_values(&[&*name]);
    let Some(mut tls) = live.current().listeners.get(&*name).cloned() else {
        tracing::error!(listener = %name, "listener has no TLS configuration; not serving");
        return;
    };
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(listener = %name, cause = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let snap = live.current();
        let max = snap.config.limits.max_connections;
        if open.load(Ordering::Relaxed) >= max {
            rejected.inc();
            tracing::debug!(listener = %name, client = %peer, "over max_connections, closed");
            drop(tcp);
            continue;
        }
        // A listener removed from the config keeps serving its last certificates until restart.
        if let Some(t) = snap.listeners.get(&*name) {
            tls = t.clone();
        }
        let tls = tls.clone();
        // The handshake and the connection's timers come from this one snapshot; requests read
        // the current one. Only the limits are kept: an old snapshot's pools must not linger.
        let limits = snap.config.limits.clone();
        drop(snap);
        open.fetch_add(1, Ordering::Relaxed);
        open_gauge.inc();
        let guard = OpenGuard(open.clone(), open_gauge.clone());
        let live = live.clone();
        let shutdown = shutdown.clone();
        let name = name.clone();
        let span = tracing::debug_span!("conn", listener = %name, client = %peer);
        tracker.spawn(
            async move {
                let _guard = guard;
                let _ = tcp.set_nodelay(true);
                serve_connection(name, tcp, peer, (tls, limits), live, shutdown).await;
            }
            .instrument(span),
        );
    }
}

struct OpenGuard(Arc<AtomicUsize>, prometheus::IntGauge);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
        self.1.dec();
    }
}

async fn serve_connection(
    listener: Arc<str>,
    tcp: TcpStream,
    peer: SocketAddr,
    (tls, limits): (Arc<ListenerTls>, Limits),
    live: Arc<Live>,
    mut shutdown: watch::Receiver<bool>,
) {
    let metrics = &live.shared.metrics;
    let Some((stream, cert, peer, slot)) = accept(&listener, tcp, peer, &tls, &limits, &live).await
    else {
        return;
    };
    let (_, session) = stream.get_ref();
    let http2 = session.alpn_protocol() == Some(b"h2");
    let sni = session.server_name().map(str::to_string);
    let tls_version = match session.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
        _ => "-",
    };
    let listener_label = listener.clone();
    let activity = Arc::new(Activity::new(!http2));
    let ctx = Arc::new(ConnCtx {
        listener,
        peer,
        sni,
        tls_version,
        forwarded_for: headers::client_address(peer.ip()),
        client_body_errors: metrics
            .client_errors
            .with_label_values(&[&*listener_label, "body"]),
        tls,
        cert,
        activity: activity.clone(),
    });
    let io = TokioIo::new(ActivityIo::new(stream, activity.clone()));
    let service = {
        let live = live.clone();
        service_fn(move |req| handler::handle(req, ctx.clone(), live.clone()))
    };
    let exec = streams::StreamExec::default();
    let builder = http_builder(http2, &limits, exec.clone());
    // In a block of its own: the connection (and the TLS stream) is dropped at its end, which
    // hands the TCP stream back for a lingering close.
    let refused_head = {
        let conn = streams::WithStreams::new(builder.serve_connection(io, service), &exec);
        tokio::pin!(conn);
        let tick = (limits
            .header_read_timeout
            .min(limits.idle_timeout)
            .min(limits.client_write_timeout)
            / 4)
        .clamp(Duration::from_millis(5), Duration::from_secs(1));
        let mut watchdog = tokio::time::interval(tick);
        watchdog.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut closing = *shutdown.borrow();
        if closing {
            conn.as_mut().conn().graceful_shutdown();
        }
        loop {
            tokio::select! {
                res = conn.as_mut() => {
                    let Err(e) = res else { break false };
                    tracing::debug!(cause = %e, "connection ended with an error");
                    // hyper answered a head it could not take (431, 400) and stopped reading.
                    break e.downcast_ref::<hyper::Error>().is_some_and(hyper::Error::is_parse);
                }
                _ = watchdog.tick() => match activity.verdict(limits.header_read_timeout, limits.idle_timeout) {
                    _ if activity.write_stalled(limits.client_write_timeout) => {
                        // Back-pressure keeps the memory bounded; this frees the connection and
                        // its upstream stream from a client that stopped reading.
                        metrics
                            .client_errors
                            .with_label_values(&[&*listener_label, "write_timeout"])
                            .inc();
                        tracing::debug!(timeout_ms = crate::diag::ms(limits.client_write_timeout), "client took no bytes within client_write_timeout");
                        return;
                    }
                    Verdict::Fine => {}
                    Verdict::Idle if !closing => {
                        closing = true;
                        tracing::debug!("idle timeout");
                        conn.as_mut().conn().graceful_shutdown();
                    }
                    Verdict::Idle => {}
                    Verdict::HeadTimeout => {
                        tracing::debug!("request head not complete within header_read_timeout");
                        return;
                    }
                },
                _ = shutdown.changed(), if !closing => {
                    closing = true;
                    conn.as_mut().conn().graceful_shutdown();
                }
            }
        }
    };
    if refused_head {
        slot.drain().await;
    }
}

/// The PROXY header (behind an L4 balancer the client address comes from it, before TLS), then
/// the TLS handshake, counted by reason when it fails.
async fn accept(
    listener: &str,
    mut tcp: TcpStream,
    peer: SocketAddr,
    tls: &ListenerTls,
    limits: &Limits,
    live: &Live,
) -> Option<(TlsStream<Reclaim>, usize, SocketAddr, linger::Slot)> {
    let metrics = &live.shared.metrics;
    let timeout = limits.tls_handshake_timeout;
    let peer = proxy_protocol::client(&mut tcp, peer, listener, live, timeout).await?;
    let (tcp, slot) = Reclaim::new(tcp);
    // The certificate is picked from the ClientHello here, once, and the handshake goes on with
    // a config that serves exactly it: requests are checked against what was served.
    let handshake = async {
        let start = LazyConfigAcceptor::new(Acceptor::default(), tcp).await?;
        let cert = tls.resolver.pick(start.client_hello().server_name());
        let config = tls
            .by_cert
            .get(cert)
            .cloned()
            .unwrap_or_else(|| tls.config.clone());
        start.into_stream(config).await.map(|s| (s, cert))
    };
    match tokio::time::timeout(timeout, handshake).await {
        Ok(Ok((s, cert))) => Some((s, cert, peer, slot)),
        Ok(Err(e)) => {
            let reason = handshake_reason(&e);
            metrics
                .tls_handshake_errors
                .with_label_values(&[listener, reason])
                .inc();
            tracing::debug!(reason, cause = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            metrics
                .tls_handshake_errors
                .with_label_values(&[listener, "timeout"])
                .inc();
            tracing::debug!("TLS handshake timed out");
            None
        }
    }
}

/// hyper's settings for one connection: HTTP/2 or HTTP/1.1 as ALPN chose.
fn http_builder(
    http2: bool,
    limits: &Limits,
    exec: streams::StreamExec,
) -> auto::Builder<streams::StreamExec> {
    let mut builder = auto::Builder::new(exec);
    if http2 {
        builder = builder.http2_only();
        builder
            .http2()
            .timer(TokioTimer::new())
            // Above the limit, so a head just over it is decoded and answered 431 by the
            // handler's exact check: the h2 crate's own refusal (REFUSED_STREAM) makes clients
            // retry. Beyond this, decoding stops.
            .max_header_list_size(
                u32::try_from(limits.max_header_bytes.saturating_mul(4)).unwrap_or(u32::MAX),
            )
            .keep_alive_interval(Some(KEEPALIVE_PING.min(limits.idle_timeout)))
            .keep_alive_timeout(KEEPALIVE_PING_TIMEOUT)
            // Bounds what one connection can make the proxy hold for slow readers (hyper's
            // defaults allow 200 streams x 400 KiB). Neither setting moved peak RSS or
            // instructions per request in the harness shapes (BENCHMARKS.md); windows stay at
            // hyper's 1 MiB, which caps upload buffering per connection.
            .max_concurrent_streams(H2_MAX_STREAMS)
            .max_send_buf_size(H2_MAX_SEND_BUF);
    } else {
        builder = builder.http1_only();
        builder
            .http1()
            .timer(TokioTimer::new())
            // hyper's own timer also runs while a keep-alive connection idles, which would cut
            // idle connections at the head timeout; the watchdog keeps the two apart.
            .header_read_timeout(None)
            // Room above the limit so the handler's exact check answers 431 (hyper's buffer
            // limit lets heads over it through when they arrive in one read).
            .max_buf_size(limits.max_header_bytes.max(8192) + HEAD_SLACK)
            .keep_alive(true);
    }
    builder
}

/// The `reason` label for a failed handshake. A client that alerts about our certificate is
/// the sign that an app refuses the pin.
fn handshake_reason(e: &std::io::Error) -> &'static str {
    let Some(err) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) else {
        return "other";
    };
    match err {
        rustls::Error::AlertReceived(
            AlertDescription::BadCertificate
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::CertificateRevoked
            | AlertDescription::CertificateExpired
            | AlertDescription::CertificateUnknown
            | AlertDescription::UnknownCA
            | AlertDescription::AccessDenied,
        ) => "client_rejected_certificate",
        rustls::Error::AlertReceived(_)
        | rustls::Error::InvalidMessage(_)
        | rustls::Error::PeerIncompatible(_)
        | rustls::Error::PeerMisbehaved(_)
        | rustls::Error::InappropriateMessage { .. }
        | rustls::Error::InappropriateHandshakeMessage { .. }
        | rustls::Error::NoApplicationProtocol
        | rustls::Error::DecryptError => "protocol",
        _ => "other",
    }
}

/// Read-buffer room above `max_header_bytes` (see the HTTP/1 builder).
const HEAD_SLACK: usize = 8192;
const KEEPALIVE_PING: Duration = Duration::from_secs(30);
/// nginx's default `http2_max_concurrent_streams`.
const H2_MAX_STREAMS: u32 = 128;
/// Response bytes buffered per stream ahead of the client's window: one 64 KiB default window.
const H2_MAX_SEND_BUF: usize = 64 * 1024;
const KEEPALIVE_PING_TIMEOUT: Duration = Duration::from_secs(20);
