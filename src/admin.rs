//! The admin listener: `/metrics`, `/healthz`, `/readyz`, `/status` over plain HTTP/1.1.
//!
//! Reads the current snapshot and the shared state; changes nothing.

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
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::task::TaskTracker;

use crate::expiry::{Urgency, days_left, is_stale};
use crate::reload::ReloadStatus;
use crate::snapshot::{Live, Snapshot, unix_now};
use crate::tls::Position;

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
            "not found: try /metrics /healthz /readyz /status\n".into(),
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

/// The `/status` document: what is served, what pins it, what upstreams showed, reloads.
/// Every certificate and pin set carries `days_left` and the expiry window it is in
/// (`urgency`: ok, warning, critical, expired), judged like the expiry sweep and the alerts.
pub fn status(snap: &Snapshot, state: &AdminState) -> Value {
    let now = unix_now();
    let cfg = &snap.config;
    let exp = &cfg.expiry;
    // Two decimals: enough to read, and stable between two requests a second apart.
    let days = |t: i64| (days_left(t, now) * 100.0).round() / 100.0;
    let cert_urgency = |t: i64| Urgency::of(t, now, exp.warn_before, exp.critical_before).as_str();
    let pin_set_urgency =
        |t: i64| Urgency::of(t, now, exp.pin_set_warn_before, exp.pin_set_critical_before).as_str();
    let listeners: Vec<Value> = cfg
        .listeners
        .iter()
        .filter_map(|l| snap.listeners.get(&l.name).map(|t| (l, t)))
        .map(|(l, t)| {
            let certs: Vec<Value> = t
                .certs
                .iter()
                .map(|c| {
                    let path: Vec<Value> = c
                        .path
                        .iter()
                        .enumerate()
                        .map(|(i, info)| {
                            json!({
                                "position": Position::of(i, c.path.len(), c.has_anchor),
                                "subject": info.subject,
                                "serial": info.serial,
                                "pin": info.pin.to_prefixed(),
                                "key": info.key_algorithm.to_string(),
                                "not_after": crate::tls::fmt_time(info.not_after),
                                "days_left": days(info.not_after),
                                "urgency": cert_urgency(info.not_after),
                            })
                        })
                        .collect();
                    let matches: Vec<&crate::tls::ChainMatch> = t.matches.iter().filter(|m| m.cert == c.field).collect();
                    json!({ "field": c.field, "server_names": c.server_names, "path": path, "pin_sets": matches })
                })
                .collect();
            let adoption = snap.adoption.get(&l.name).map(|a| a.to_json());
            json!({ "name": l.name, "listen": l.listen.to_string(), "pin_sets": l.pin_sets, "certs": certs, "adoption": adoption })
        })
        .collect();
    let pin_sets: Vec<Value> = cfg
        .pin_sets
        .values()
        .map(|s| {
            let used: Vec<&str> = snap
                .listeners
                .values()
                .flat_map(|t| t.matches.iter())
                .filter(|m| m.pin_set == s.name)
                .flat_map(|m| m.matched.iter().map(|p| p.label.as_str()))
                .collect();
            let pins: Vec<Value> = s
                .pins
                .iter()
                .map(|p| json!({ "label": p.label, "kind": p.kind.as_str(), "sha256": p.pin.to_base64(), "in_use": used.contains(&p.label.as_str()) }))
                .collect();
            let backups: Vec<&str> = s.pins.iter().filter(|p| !used.contains(&p.label.as_str())).map(|p| p.label.as_str()).collect();
            json!({
                "name": s.name,
                "description": s.description,
                "mode": s.mode.as_str(),
                "expires": s.expires.to_string(),
                "days_left": days(s.expires_unix()),
                "urgency": pin_set_urgency(s.expires_unix()),
                "live": s.is_live(now, cfg.expiry.pin_set_grace),
                "pins": pins,
                "backups": backups,
                "digest": s.digest(),
                "frozen": s.frozen,
                "from": s.from.as_ref().map(|o| json!({
                    "file": o.file.display().to_string(),
                    "format": o.format.as_str(),
                    "domain": o.domain,
                    "element": o.element,
                })),
                "app_versions": s.app_versions.as_ref().map(ToString::to_string),
            })
        })
        .collect();
    let upstreams: Vec<Value> = cfg
        .upstreams
        .values()
        .map(|u| {
            let observed = snap.upstreams.get(&u.name).and_then(|c| c.observer.last_path());
            let path: Option<Vec<Value>> = observed.as_ref().map(|(_, certs)| {
                certs
                    .iter()
                    .map(|c| {
                        json!({
                            "position": c.position,
                            "subject": c.subject,
                            "serial": c.info.as_ref().map(|i| &i.serial),
                            "pin": c.pin.to_prefixed(),
                            "not_after": c.info.as_ref().map(|i| crate::tls::fmt_time(i.not_after)),
                            "days_left": c.info.as_ref().map(|i| days(i.not_after)),
                            "urgency": c.info.as_ref().map(|i| cert_urgency(i.not_after)),
                        })
                    })
                    .collect()
            });
            json!({
                "name": u.name,
                "url": format!("{}://{}{}", if u.tls { "https" } else { "http" }, u.authority, u.base_path),
                "pin_set": u.pin_set,
                "pin_match": u.pin_set.as_ref().map(|_| u.pin_match.as_str()),
                "mode": u.pin_set.as_ref().and_then(|n| cfg.pin_sets.get(n)).map(|s| s.mode.as_str()),
                "last_verified_path": path,
                "last_seen": observed.as_ref().map(|(t, _)| crate::tls::fmt_time(t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0))),
                // Not seen for 2 × check_every: the path is kept here but no longer in the metrics.
                "stale": observed.as_ref().map(|(t, _)| is_stale(*t, std::time::SystemTime::now(), exp.check_every)),
            })
        })
        .collect();
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "generation": snap.generation,
        "config": cfg.file.display().to_string(),
        "config_sha256": snap.digest,
        "listeners": listeners,
        "pin_sets": pin_sets,
        "upstreams": upstreams,
        "expiry": {
            "warn_before": duration_text(exp.warn_before),
            "critical_before": duration_text(exp.critical_before),
            "pin_set_warn_before": duration_text(exp.pin_set_warn_before),
            "pin_set_critical_before": duration_text(exp.pin_set_critical_before),
            "pin_set_grace": duration_text(exp.pin_set_grace),
            "check_every": duration_text(exp.check_every),
        },
        "reload": state.reload.to_json(),
        "warnings": snap.warnings.warnings().map(|w| w.to_string()).collect::<Vec<_>>(),
    })
}

const ADMIN_HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A config duration as an operator writes it: whole days as `60d` (humantime would say
/// "1month 29days 13h…"), anything else in humantime's form.
fn duration_text(d: std::time::Duration) -> String {
    let secs = d.as_secs();
    if secs > 0 && secs.is_multiple_of(86_400) && d.subsec_nanos() == 0 {
        format!("{}d", secs / 86_400)
    } else {
        humantime::format_duration(d).to_string()
    }
}
