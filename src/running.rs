//! What `check` asks the running proxy: the adoption figures live in the process that served the
//! requests, so `check` reads them from its admin endpoint (`/status`). One short, bounded GET on
//! the configured admin address; no answer is reported, never an error.

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
pub fn adoption_lines(config: &Config) -> String {
    if config.listeners.iter().all(|l| l.app_version.is_none()) {
        return String::new();
    }
    let admin = config.admin.listen;
    let mut text = String::new();
    let status = match fetch_status(admin) {
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
fn fetch_status(addr: SocketAddr) -> Result<Value, String> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(async {
            tokio::time::timeout(TIMEOUT, get_status(addr))
                .await
                .map_err(|_| format!("no answer within {}s", TIMEOUT.as_secs()))?
        })
    })
    .join()
    .map_err(|_| "the status request failed".to_string())?
}

async fn get_status(addr: SocketAddr) -> Result<Value, String> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = http::Request::get("/status")
        .header(http::header::HOST, addr.to_string())
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("/status answered {}", resp.status()));
    }
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    serde_json::from_slice(&body).map_err(|e| format!("/status is not JSON: {e}"))
}
