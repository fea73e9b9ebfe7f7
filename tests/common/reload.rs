//! Reload test support: the generation and reload status as the admin endpoint shows them,
//! writes the way operators' tools make them (in place, atomic rename, through a hard link
//! the watcher cannot see), and a TLS client that keeps its session store for resumption.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};

use super::{admin_get, eventually, scrape};

/// How long a reload may take on a loaded 2-core machine: generous, and only ever an upper bound.
pub const RELOAD_WAIT: Duration = Duration::from_secs(30);

/// The generation `/readyz` reports.
pub async fn generation(admin: SocketAddr) -> u64 {
    let (status, body) = admin_get(admin, "/readyz").await;
    assert_eq!(status, 200, "/readyz: {body}");
    body.trim()
        .strip_prefix("ready generation=")
        .and_then(|g| g.parse().ok())
        .unwrap_or_else(|| panic!("unexpected /readyz body: {body}"))
}

/// Waits until the generation is at least `at_least`; returns it.
pub async fn wait_generation(admin: SocketAddr, at_least: u64) -> u64 {
    eventually(RELOAD_WAIT, || async move {
        let g = generation(admin).await;
        (g >= at_least).then_some(g)
    })
    .await
}

/// The `reload` object of `/status`.
pub async fn reload_status(admin: SocketAddr) -> serde_json::Value {
    let (status, body) = admin_get(admin, "/status").await;
    assert_eq!(status, 200, "/status: {body}");
    let doc: serde_json::Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("/status is not JSON ({e})"));
    doc["reload"].clone()
}

/// Reload attempts so far (unchanged ones included).
pub async fn attempts(admin: SocketAddr) -> u64 {
    reload_status(admin).await["attempts"]
        .as_u64()
        .expect("reload.attempts")
}

/// Waits until more than `than` reload attempts were made.
pub async fn wait_attempts_after(admin: SocketAddr, than: u64) {
    eventually(RELOAD_WAIT, || async move {
        (attempts(admin).await > than).then_some(())
    })
    .await
}

/// `pinproxy_config_reloads_total` for a result (and a reason, for failures).
pub async fn reloads(admin: SocketAddr, result: &str, reason: Option<&str>) -> f64 {
    let mut labels = vec![("result", result)];
    if let Some(r) = reason {
        labels.push(("reason", r));
    }
    scrape(admin, "pinproxy_config_reloads_total", &labels).await
}

/// Sum of failed reloads over every reason ("internal": the reload itself failed, a bug).
pub async fn failures(admin: SocketAddr) -> f64 {
    let mut n = 0.0;
    for reason in [
        "parse",
        "validation",
        "file",
        "pin_rules",
        "tls",
        "internal",
    ] {
        n += reloads(admin, "failure", Some(reason)).await;
    }
    n
}

/// Waits until `pinproxy_config_reloads_total{result="failure",reason}` reaches `n`.
pub async fn wait_failures(admin: SocketAddr, reason: &str, n: f64) {
    eventually(RELOAD_WAIT, || async move {
        (reloads(admin, "failure", Some(reason)).await >= n).then_some(())
    })
    .await
}

pub async fn last_reload_successful(admin: SocketAddr) -> f64 {
    scrape(admin, "pinproxy_config_last_reload_successful", &[]).await
}

/// Writes `contents` into a temp file beside `path` and renames it over `path`, as editors,
/// `install` and config-management tools do: readers see the old or the new file, never half.
pub fn write_atomic(path: &Path, contents: impl AsRef<[u8]>) {
    let name = path
        .file_name()
        .expect("file name")
        .to_string_lossy()
        .into_owned();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    std::fs::write(&tmp, contents).expect("write temp file");
    std::fs::rename(&tmp, path).expect("rename over the file");
}

/// A second name for `file` in `dir/private/`, a directory no watcher looks at. Writing through
/// it changes the file's contents in place (same inode) while inotify reports nothing: events
/// go to the directory of the name used, not to the other names of the inode.
pub fn hidden_link(dir: &Path, file: &Path) -> PathBuf {
    let private = dir.join("private");
    std::fs::create_dir_all(&private).expect("private dir");
    let link = private.join(file.file_name().expect("file name"));
    std::fs::hard_link(file, &link).expect("hard link");
    link
}

/// `pins/NAME.toml` contents with the given (pin, label, kind) entries.
pub fn pin_set_text(expires: &str, pins: &[(&str, &str, &str)]) -> String {
    let mut s =
        format!("description = \"test pin set\"\nexpires = {expires}\nmode = \"enforce\"\n");
    for (pin, label, kind) in pins {
        s.push_str(&format!(
            "[[pin]]\nsha256 = \"{pin}\"\nlabel = \"{label}\"\nkind = \"{kind}\"\n"
        ));
    }
    s
}

/// A client config trusting `root_pem` (HTTP/1.1 by ALPN) whose session store is kept across
/// connections, so a second connection can resume.
pub fn resuming_client_config(root_pem: &str) -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(root_pem.as_bytes()) {
        roots.add(c.expect("root pem")).expect("root");
    }
    let mut cfg = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(cfg)
}

/// Connects with `cfg`, sends one GET / (reading the answer also reads the TLS 1.3 session
/// tickets that follow the handshake) and reports how the handshake went and which leaf came.
pub async fn get_with(
    cfg: &Arc<ClientConfig>,
    addr: SocketAddr,
    path: &str,
) -> (Option<rustls::HandshakeKind>, Vec<u8>, u16) {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect listener");
    let tls = tokio_rustls::TlsConnector::from(cfg.clone())
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .expect("TLS handshake");
    let (_, session) = tls.get_ref();
    let kind = session.handshake_kind();
    let leaf = session
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.as_ref().to_vec())
        .expect("a leaf");
    let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .expect("http handshake");
    let conn = tokio::spawn(conn);
    let resp = send
        .send_request(super::client::get("localhost", path, false))
        .await
        .expect("response");
    let status = resp.status().as_u16();
    let _ = http_body_util::BodyExt::collect(resp.into_body()).await;
    drop(send);
    let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
    (kind, leaf, status)
}
