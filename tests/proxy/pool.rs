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
