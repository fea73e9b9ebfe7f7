//! The upstream connection pool as the upstream sees it: keep-alive connections reused,
//! closed once idle past `upstream_idle_timeout`, one HTTP/2 connection shared by concurrent
//! requests, and connections kept apart by the host requests are addressed to.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::*;

/// A keep-alive HTTP/1.1 origin that counts the connections it accepted and the ones the
/// proxy closed.
struct KeepAliveOrigin {
    addr: std::net::SocketAddr,
    accepted: Arc<AtomicUsize>,
    closed: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for KeepAliveOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl KeepAliveOrigin {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind origin");
        let addr = listener.local_addr().expect("addr");
        let accepted = Arc::new(AtomicUsize::new(0));
        let closed = Arc::new(AtomicUsize::new(0));
        let (a, c) = (accepted.clone(), closed.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                a.fetch_add(1, Ordering::SeqCst);
                let c = c.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        match tcp.read(&mut chunk).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                        // GETs without bodies: one reply per complete head.
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            buf.drain(..end + 4);
                            let reply = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                            if tcp.write_all(reply).await.is_err() {
                                return;
                            }
                        }
                    }
                    c.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        KeepAliveOrigin {
            addr,
            accepted,
            closed,
            task,
        }
    }
}

#[tokio::test]
async fn keep_alive_connections_are_reused_then_closed_once_idle_past_the_timeout() {
    let origin = KeepAliveOrigin::start().await;
    let s = TestProxy::new(&format!(
        "[limits]\nupstream_idle_timeout = \"400ms\"\n\n{}",
        route_to(origin.addr)
    ));
    let r = s.start().await;
    let client = s.client(&r);
    for i in 0..5 {
        let got = client.get("localhost", "/").await.expect("reply");
        assert_eq!(got.status, 200, "request {i}: {}", got.body);
    }
    let last = Instant::now();
    assert_eq!(
        origin.accepted.load(Ordering::SeqCst),
        1,
        "five requests in a row share one upstream connection"
    );
    assert_eq!(origin.closed.load(Ordering::SeqCst), 0);
    eventually(Duration::from_secs(10), || async {
        (origin.closed.load(Ordering::SeqCst) == 1).then_some(())
    })
    .await;
    assert!(
        last.elapsed() >= Duration::from_millis(400),
        "closed only after upstream_idle_timeout ({:?})",
        last.elapsed()
    );
    // The next request opens a new connection rather than failing on the closed one.
    let got = client.get("localhost", "/").await.expect("reply");
    assert_eq!(got.status, 200, "{}", got.body);
    assert_eq!(origin.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn concurrent_requests_share_one_http2_upstream_connection() {
    let psp = Pki::new("origin");
    let leaf = psp.leaf(&["pay.test"]);
    let up = TestUpstream::tls(&leaf, UpstreamMode::Delay(Duration::from_millis(50))).await;
    let s = TestProxy::new(&format!(
        "[[route]]\npath_prefix = \"/\"\nupstream = \"pay\"\n\n[upstream.pay]\nurl = \"https://{}\"\nca = \"certs/origin-ca.pem\"\nserver_name = \"pay.test\"\n",
        up.addr
    ));
    s.dir.write("certs/origin-ca.pem", psp.root_pem());
    let r = s.start().await;
    let client = s.client(&r);
    let first = client.get("localhost", "/").await.expect("reply");
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(json(&first.body)["version"], "HTTP/2.0");
    let mut at_once = tokio::task::JoinSet::new();
    for i in 0..10 {
        let client = client.clone();
        at_once.spawn(async move { client.get("localhost", &format!("/{i}")).await });
    }
    for got in at_once.join_all().await {
        let got = got.expect("reply");
        assert_eq!(got.status, 200, "{}", got.body);
    }
    assert_eq!(up.hits(), 11);
    assert_eq!(
        up.conns.load(Ordering::SeqCst),
        1,
        "eleven requests, ten of them at once, on one HTTP/2 connection"
    );
}

/// A TLS HTTP/2 origin whose connections send GOAWAY (a graceful shutdown) when `goaway` is
/// notified, while finishing what they already serve. `/slow` waits for `release`.
struct GoawayOrigin {
    addr: std::net::SocketAddr,
    conns: Arc<AtomicUsize>,
    slow_started: Arc<tokio::sync::Notify>,
    goaway: Arc<tokio::sync::Notify>,
    release: Arc<tokio::sync::Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for GoawayOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl GoawayOrigin {
    async fn start(leaf: &Issued) -> Self {
        use hyper_util::rt::{TokioExecutor, TokioIo};
        use rustls::pki_types::pem::PemObject as _;
        let chain = rustls::pki_types::CertificateDer::pem_slice_iter(leaf.chain_pem().as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .expect("chain");
        let key =
            rustls::pki_types::PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).expect("key");
        let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("cert");
        cfg.alpn_protocols = vec![b"h2".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind origin");
        let addr = listener.local_addr().expect("addr");
        let conns = Arc::new(AtomicUsize::new(0));
        let slow_started = Arc::new(tokio::sync::Notify::new());
        let goaway = Arc::new(tokio::sync::Notify::new());
        let release = Arc::new(tokio::sync::Notify::new());
        let (c, s, g, r) = (
            conns.clone(),
            slow_started.clone(),
            goaway.clone(),
            release.clone(),
        );
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let n = c.fetch_add(1, Ordering::SeqCst) + 1;
                let (acceptor, s, g, r) = (acceptor.clone(), s.clone(), g.clone(), r.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let svc = hyper::service::service_fn(move |req: http::Request<_>| {
                        let (s, r) = (s.clone(), r.clone());
                        async move {
                            if req.uri().path() == "/slow" {
                                let released = r.notified();
                                s.notify_one();
                                released.await;
                            }
                            Ok::<_, std::convert::Infallible>(http::Response::new(
                                http_body_util::Full::new(bytes::Bytes::from(format!("conn {n}"))),
                            ))
                        }
                    });
                    let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), svc);
                    tokio::pin!(conn);
                    tokio::select! {
                        _ = conn.as_mut() => return,
                        _ = g.notified() => conn.as_mut().graceful_shutdown(),
                    }
                    let _ = conn.await;
                });
            }
        });
        GoawayOrigin {
            addr,
            conns,
            slow_started,
            goaway,
            release,
            task,
        }
    }
}

#[tokio::test]
async fn after_an_http2_upstream_says_goaway_new_requests_go_to_a_new_connection() {
    let psp = Pki::new("origin");
    let leaf = psp.leaf(&["pay.test"]);
    let origin = GoawayOrigin::start(&leaf).await;
    let s = TestProxy::new(&format!(
        "[[route]]\npath_prefix = \"/\"\nupstream = \"pay\"\n\n[upstream.pay]\nurl = \"https://{}\"\nca = \"certs/origin-ca.pem\"\nserver_name = \"pay.test\"\n",
        origin.addr
    ));
    s.dir.write("certs/origin-ca.pem", psp.root_pem());
    let r = s.start().await;
    let client = s.client(&r);
    let first = client.get("localhost", "/fast").await.expect("reply");
    assert_eq!((first.status, first.body.as_str()), (200, "conn 1"));

    // A request in flight keeps the first connection open through its GOAWAY.
    let started = origin.slow_started.notified();
    let slow = tokio::spawn({
        let client = client.clone();
        async move { client.get("localhost", "/slow").await }
    });
    started.await;
    origin.goaway.notify_waiters();

    for i in 0..3 {
        let got = client.get("localhost", "/fast").await.expect("reply");
        assert_eq!(got.status, 200, "request {i} after GOAWAY: {}", got.body);
        assert_eq!(got.body, "conn 2", "request {i} after GOAWAY");
    }
    origin.release.notify_one();
    let slow = slow.await.expect("join").expect("reply");
    assert_eq!((slow.status, slow.body.as_str()), (200, "conn 1"));
    assert_eq!(origin.conns.load(Ordering::SeqCst), 2);
}
