//! What the CLI asks a running proxy over its admin endpoint: `check` reads the adoption figures
//! (they live in the process that served the requests) from `/status`, and `pinproxy
//! healthcheck` probes `/healthz`. One short, bounded GET; for `check`, no answer is reported,
//! never an error.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper_util::rt::TokioIo;
use serde_json::Value;

use crate::config::Config;

/// How long `check` waits for the running proxy in all.
const TIMEOUT: Duration = Duration::from_secs(2);

/// Lines for `check`: each listener's share of the last day's requests per pin set, from the
/// proxy running at the config's admin address; empty when no listener maps app versions.
pub async fn adoption_lines(config: &Config) -> String {
    if config.listeners.iter().all(|l| l.app_version.is_none()) {
        return String::new();
    }
    let admin = config.admin.listen;
    let mut text = String::new();
    let status = match fetch_status(admin).await {
        Ok(s) => s,
        Err(e) => {
            let _ = writeln!(
                text,
                "adoption: no running proxy answered at {admin} ({e}); the shares per pin set come from it"
            );
            return text;
        }
    };
    for l in status["listeners"].as_array().into_iter().flatten() {
        let a = &l["adoption"];
        if a.is_null() {
            continue;
        }
        let sets: Vec<String> = a["pin_sets"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| {
                let share = s["share"]
                    .as_f64()
                    .map_or("-".to_string(), |x| format!("{:.2} %", x * 100.0));
                format!(
                    "{} {share} ({})",
                    s["pin_set"].as_str().unwrap_or("?"),
                    s["requests"].as_u64().unwrap_or(0)
                )
            })
            .collect();
        let name = l["name"].as_str().unwrap_or("?");
        let _ = writeln!(
            text,
            "adoption on listener {name} (last {}h, {} requests, proxy at {admin}): {}",
            a["window_hours"].as_u64().unwrap_or(0),
            a["requests"].as_u64().unwrap_or(0),
            sets.join(", ")
        );
        for b in a["backups"].as_array().into_iter().flatten() {
            let share = b["share"]
                .as_f64()
                .map_or("-".to_string(), |x| format!("{:.2} %", x * 100.0));
            let verdict = if b["safe_to_switch"].as_bool() == Some(true) {
                "safe to switch to"
            } else {
                "not yet safe to switch to (needs 99.9 %)"
            };
            let _ = writeln!(
                text,
                "  backup \"{}\" ({}): shipped by {} = {share} of requests; {verdict}",
                b["label"].as_str().unwrap_or("?"),
                b["pin"].as_str().unwrap_or("?"),
                b["pin_sets"]
                    .as_array()
                    .map(|v| v
                        .iter()
                        .filter_map(|x| x.as_str())
                        .collect::<Vec<_>>()
                        .join(", "))
                    .unwrap_or_default(),
            );
        }
    }
    text
}

/// GET /status from the admin endpoint at `addr`, on a thread of its own so it works whether or
/// not the caller runs inside an async runtime.
/// Why a GET on an admin endpoint got no answer.
#[derive(Debug, thiserror::Error)]
pub enum AdminGetError {
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
    #[error("no answer from {addr} within {}s", timeout.as_secs_f64())]
    Timeout { addr: SocketAddr, timeout: Duration },
}

/// GET `path` on the admin listener at `addr`, bounded by `timeout`: status and body. Used by
/// `check` (adoption figures) and `pinproxy healthcheck`.
pub async fn admin_get(
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
) -> Result<(u16, Bytes), AdminGetError> {
    tokio::time::timeout(timeout, get(addr, path))
        .await
        .unwrap_or(Err(AdminGetError::Timeout { addr, timeout }))
}

async fn get(addr: SocketAddr, path: &str) -> Result<(u16, Bytes), AdminGetError> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|source| AdminGetError::Connect { addr, source })?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|source| AdminGetError::Http { addr, source })?;
    tokio::spawn(conn);
    let req = http::Request::get(path)
        .header(http::header::HOST, addr.to_string())
        .body(Empty::<Bytes>::new())
        .map_err(|source| AdminGetError::Path {
            path: path.to_string(),
            source,
        })?;
    let resp = send
        .send_request(req)
        .await
        .map_err(|source| AdminGetError::Http { addr, source })?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|source| AdminGetError::Http { addr, source })?
        .to_bytes();
    Ok((status, body))
}

async fn fetch_status(addr: SocketAddr) -> Result<Value, String> {
    let (status, body) = admin_get(addr, "/status", TIMEOUT)
        .await
        .map_err(|e| crate::diag::ErrorText(&e).to_string())?;
    if !(200..300).contains(&status) {
        return Err(format!("/status answered {status}"));
    }
    serde_json::from_slice(&body).map_err(|e| format!("/status is not JSON: {e}"))
}
