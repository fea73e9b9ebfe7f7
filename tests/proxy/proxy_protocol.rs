//! Behind an L4 load balancer: a real HAProxy in TCP mode with `send-proxy-v2` in front of a
//! listener with `proxy_protocol = true`, and raw sockets sending malformed, spoofed and missing
//! headers. The client address is told apart from the balancer's by using another loopback
//! address (127.0.0.2) for the client.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};

use super::common::reload::resuming_client_config;
use super::*;

const REJECTED: &str = "pinproxy_proxy_protocol_rejected_total";

/// A proxy whose listener takes PROXY headers from 127.0.0.1 only, within 1 s.
fn setup(up: SocketAddr) -> TestProxy {
    let s = TestProxy::new(&format!(
        "[limits]\ntls_handshake_timeout = \"1s\"\n\n{}",
        route_to(up)
    ));
    let config = std::fs::read_to_string(s.dir.config_path()).expect("config");
    let config = config.replacen(
        "pin_sets = [\"app\"]\n",
        "pin_sets = [\"app\"]\nproxy_protocol = true\nproxy_protocol_from = [\"127.0.0.1/32\"]\n",
        1,
    );
    s.dir.write("config.toml", config);
    s
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// HAProxy in TCP mode forwarding to `backend` with a PROXY v2 header; stopped on drop.
struct HaProxy {
    child: Child,
    addr: SocketAddr,
}

impl HaProxy {
    /// Starts HAProxy on a free port; a port taken between picking and binding (HAProxy exits)
    /// is retried with another.
    async fn start(dir: &Path, backend: SocketAddr) -> Self {
        for _ in 0..5 {
            let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
            let cfg = dir.join("haproxy.cfg");
            std::fs::write(
                &cfg,
                format!(
                    "global\n  maxconn 64\n\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n\n\
                     frontend fe\n  bind {addr}\n  default_backend be\n\n\
                     backend be\n  server pinproxy {backend} send-proxy-v2\n"
                ),
            )
            .expect("haproxy.cfg");
            let child = Command::new("haproxy")
                .arg("-db")
                .arg("-f")
                .arg(&cfg)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn haproxy");
            let mut ha = HaProxy { child, addr };
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            while tokio::time::Instant::now() < deadline {
                if ha.child.try_wait().expect("haproxy status").is_some() {
                    break;
                }
                if TcpStream::connect(addr).await.is_ok() {
                    return ha;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let _ = ha.child.kill();
        }
        panic!("haproxy did not start");
    }
}

impl Drop for HaProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP connection to `to` from 127.0.0.2, another loopback address than the balancer's.
async fn connect_from_other_loopback(to: SocketAddr) -> TcpStream {
    let sock = TcpSocket::new_v4().expect("socket");
    sock.bind("127.0.0.2:0".parse().expect("addr"))
        .expect("bind 127.0.0.2");
    sock.connect(to).await.expect("connect")
}

/// GET / over TLS on `tcp`; the upstream's JSON echo of what it received.
async fn get_over(tcp: TcpStream, root_pem: &str) -> serde_json::Value {
    let cfg = resuming_client_config(root_pem);
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let tls = tokio_rustls::TlsConnector::from(cfg)
        .connect(name, tcp)
        .await
        .expect("TLS through the balancer");
    let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .expect("http handshake");
    tokio::spawn(conn);
    let resp = send
        .send_request(client::get("localhost", "/pp", false))
        .await
        .expect("response");
    assert_eq!(resp.status(), 200);
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .expect("body")
        .to_bytes();
    json(&String::from_utf8_lossy(&body))
}

/// Whether the proxy closed `tcp` (EOF or reset) without answering, within 5 s.
async fn closed_without_answer(mut tcp: TcpStream) -> bool {
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf)).await,
        Ok(Ok(0) | Err(_))
    )
}

/// The proxy's log, captured: a current-thread test runtime polls every task of the proxy on
/// the test's thread, where this subscriber is the default.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Captured {
    fn access_line(&self) -> Option<String> {
        let text = String::from_utf8_lossy(&self.0.lock().expect("log buffer")).into_owned();
        text.lines()
            .find(|l| l.contains("pinproxy::access"))
            .map(str::to_string)
    }
}

#[tokio::test]
async fn haproxy_send_proxy_v2_gives_the_client_address_to_x_forwarded_for_and_the_access_log() {
    if !have_tool("haproxy") {
        return;
    }
    // tracing caches each callsite's interest process-wide, computed by the first thread to
    // reach it: a sibling test's thread without a subscriber would cache the access log's
    // line as "never" and blind the scoped subscriber below. A global subscriber (that keeps
    // nothing) means no thread registers a callsite against "no subscriber".
    static GLOBAL: std::sync::Once = std::sync::Once::new();
    GLOBAL.call_once(|| {
        let _ = tracing::subscriber::set_global_default(tracing_subscriber::registry());
    });
    let log = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(log.clone())
        .with_ansi(false)
        .finish();
    let _log = tracing::subscriber::set_default(subscriber);
    let up = TestUpstream::plain(UpstreamMode::Echo).await;
    let s = setup(up.addr);
    let r = s.start().await;
    let listener = r.listener("mobile").expect("listener");
    let ha = HaProxy::start(s.dir.path(), listener).await;

    let tcp = connect_from_other_loopback(ha.addr).await;
    let seen = get_over(tcp, &s.pki.root_pem()).await;
    assert_eq!(
        seen["headers"]["x-forwarded-for"][0], "127.0.0.2",
        "the address from HAProxy's header, not HAProxy's own (127.0.0.1): {seen}"
    );
    let line = eventually(Duration::from_secs(5), || async { log.access_line() }).await;
    assert!(
        line.contains("client=127.0.0.2:"),
        "the access log shows the client, not HAProxy: {line}"
    );
    assert_eq!(scrape(r.admin, REJECTED, &[]).await, 0.0);
}

#[tokio::test]
async fn missing_malformed_and_spoofed_headers_are_refused_and_counted() {
    let up = TestUpstream::plain(UpstreamMode::Echo).await;
    let s = setup(up.addr);
    let r = s.start().await;
    let listener = r.listener("mobile").expect("listener");
    let count = |reason: &'static str| async move {
        scrape(
            r.admin,
            REJECTED,
            &[("listener", "mobile"), ("reason", reason)],
        )
        .await
    };

    // A client talking TLS directly from an allowed address: no header.
    let err = Client::new(listener, &s.pki.root_pem())
        .get("localhost", "/")
        .await
        .expect_err("TLS without a PROXY header is refused");
    assert!(!err.is_empty());
    assert_eq!(count("missing").await, 1.0);

    // A header that is not one.
    let mut tcp = TcpStream::connect(listener).await.expect("connect");
    tcp.write_all(b"PROXY TCP4 999.1.1.1 10.0.0.1 1 443\r\n")
        .await
        .expect("write");
    assert!(closed_without_answer(tcp).await);
    assert_eq!(count("malformed").await, 1.0);

    // A client outside proxy_protocol_from claiming another address.
    let mut tcp = connect_from_other_loopback(listener).await;
    let _ = tcp
        .write_all(b"PROXY TCP4 203.0.113.1 10.0.0.1 1234 443\r\n")
        .await;
    assert!(closed_without_answer(tcp).await);
    assert_eq!(count("untrusted_peer").await, 1.0);

    // A TCP health check (connect, close) is not a refusal.
    drop(TcpStream::connect(listener).await.expect("connect"));

    // Half a header, then silence: cut at the handshake timeout.
    let mut tcp = TcpStream::connect(listener).await.expect("connect");
    tcp.write_all(b"PROXY TCP4 198.51.100.4")
        .await
        .expect("write");
    assert!(closed_without_answer(tcp).await);
    assert_eq!(
        count("timeout").await,
        1.0,
        "one: the health check is not counted"
    );
    assert_eq!(up.hits(), 0, "no refused connection reached the upstream");

    // A well-formed v1 header from the allowed address is served, with its client address.
    let mut tcp = TcpStream::connect(listener).await.expect("connect");
    tcp.write_all(b"PROXY TCP4 198.51.100.4 10.0.0.1 40000 443\r\n")
        .await
        .expect("write");
    let seen = get_over(tcp, &s.pki.root_pem()).await;
    assert_eq!(seen["headers"]["x-forwarded-for"][0], "198.51.100.4");
}
