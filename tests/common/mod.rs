//! Test support shared by the integration tests: a PKI minted with rcgen per test, upstream
//! servers on 127.0.0.1:0 that report what they received, a proxy started in-process from a
//! config written into a temp dir, and clients that trust the test CA and can pin.
#![allow(dead_code, unused_imports)]

pub mod bin;
pub mod client;
pub mod hostile;
pub mod pki;
pub mod prom;
pub mod test_proxy;
pub mod upstream;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use client::{Client, Reply};
pub use pki::{Issued, Pki, oracle_pin};
pub use test_proxy::{TestProxy, start_proxy};
pub use upstream::{TestUpstream, UpstreamMode};

/// A temp dir holding config.toml, pins/ and certs/.
pub struct TestDir {
    pub dir: tempfile::TempDir,
}

impl TestDir {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("pins")).expect("pins dir");
        std::fs::create_dir_all(dir.path().join("certs")).expect("certs dir");
        TestDir { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn config_path(&self) -> PathBuf {
        self.path().join("config.toml")
    }

    pub fn write(&self, rel: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path().join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("parent dir");
        }
        std::fs::write(&p, contents).expect("write test file");
        p
    }

    /// Writes a certificate and key as certs/NAME.pem and certs/NAME.key.
    pub fn write_cert(&self, name: &str, issued: &Issued) {
        self.write(&format!("certs/{name}.pem"), issued.chain_pem());
        self.write(&format!("certs/{name}.key"), &issued.key_pem);
    }

    /// Serves `leaf` as certs/NAME.* under pin set "app": its key ("current") and a backup.
    pub fn write_pinned(&self, name: &str, leaf: &Issued) {
        self.write_cert(name, leaf);
        self.write_pin_set(
            "app",
            "2099-01-01",
            "enforce",
            &[
                (&leaf.pin, "current", "key"),
                (&backup_pin(1), "backup", "key"),
            ],
        );
    }

    /// Writes pins/NAME.toml with the given (pin, label, kind) entries.
    pub fn write_pin_set(
        &self,
        name: &str,
        expires: &str,
        mode: &str,
        pins: &[(&str, &str, &str)],
    ) {
        let mut s = format!(
            "description = \"test pin set {name}\"\nexpires = {expires}\nmode = \"{mode}\"\n"
        );
        for (pin, label, kind) in pins {
            s.push_str(&format!(
                "[[pin]]\nsha256 = \"{pin}\"\nlabel = \"{label}\"\nkind = \"{kind}\"\n"
            ));
        }
        self.write(&format!("pins/{name}.toml"), s);
    }
}

impl bin::ConfigDir for TestDir {
    fn config_path(&self) -> PathBuf {
        TestDir::config_path(self)
    }
}

/// A config for one listener "mobile" on 127.0.0.1:0 serving certs/NAME.pem with the given pin
/// sets, admin on 127.0.0.1:0, plus `extra` (routes, upstreams, limits).
pub fn basic_config(cert: &str, pin_sets: &[&str], extra: &str) -> String {
    let sets: Vec<String> = pin_sets.iter().map(|s| format!("\"{s}\"")).collect();
    format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n\n[log]\naccess = true\n\n\
         [[listener]]\nname = \"mobile\"\nlisten = \"127.0.0.1:0\"\npin_sets = [{}]\n\
         [[listener.cert]]\nserver_names = [\"localhost\"]\nchain = \"certs/{cert}.pem\"\nkey = \"certs/{cert}.key\"\n\n{extra}\n",
        sets.join(", ")
    )
}

/// A route sending every path to a plain-HTTP upstream "backend" at `addr`.
pub fn route_to(addr: std::net::SocketAddr) -> String {
    format!(
        "[[route]]\npath_prefix = \"/\"\nupstream = \"backend\"\n\n[upstream.backend]\nurl = \"http://{addr}\"\n"
    )
}

/// A random-looking 32-byte pin that matches no key: a backup slot.
pub fn backup_pin(seed: u8) -> String {
    use base64::Engine as _;
    let bytes: Vec<u8> = (0..32u8)
        .map(|i| i.wrapping_mul(37).wrapping_add(seed).wrapping_mul(11) ^ 0x5a)
        .collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Polls `f` until it returns `Some`, for at most `limit`.
pub async fn eventually<T, F, Fut>(limit: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// GET http://addr/path on the admin listener: (status, body).
pub async fn admin_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect admin");
    let (mut send, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("admin handshake");
    tokio::spawn(conn);
    let req = http::Request::get(path)
        .header("host", addr.to_string())
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .expect("request");
    let resp = send.send_request(req).await.expect("admin request");
    let status = resp.status().as_u16();
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .expect("admin body")
        .to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// The value of the first sample of `name` whose labels include every `label="value"` given.
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

/// Current value of a metric scraped from the proxy's admin endpoint (0 when absent).
pub async fn scrape(addr: std::net::SocketAddr, name: &str, labels: &[(&str, &str)]) -> f64 {
    let (_, text) = admin_get(addr, "/metrics").await;
    metric(&text, name, labels).unwrap_or(0.0)
}

/// Whether an external tool is there; under CI its absence fails the test instead of skipping.
pub fn have_tool(tool: &str) -> bool {
    let found = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "{tool} is required under CI but is not installed"
        );
        eprintln!("skipping: {tool} not installed");
    }
    found
}

/// Reload tests: generations, reload status, atomic and hidden writes, resuming clients.
pub mod reload;
