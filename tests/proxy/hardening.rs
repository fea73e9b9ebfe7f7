//! What attackers and flaky networks do after the request head: stalled and malformed upstream
//! replies, clients that stop reading or send broken bodies, oversize heads, requests that
//! must not be sent twice, and the HTTP rules a proxy must keep. Misbehaving origins are raw
//! sockets written here; raw bytes go where a client library would refuse to send them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use super::*;

/// An origin written for the test: reads each request head, records it, then hands the
/// socket to `serve`.
struct RawOrigin {
    addr: std::net::SocketAddr,
    heads: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RawOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RawOrigin {
    async fn start<F, Fut>(serve: F) -> Self
    where
        F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind origin");
        let addr = listener.local_addr().expect("addr");
        let heads = Arc::new(Mutex::new(Vec::new()));
        let h = heads.clone();
        let serve = Arc::new(serve);
        let task = tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                let (h, serve) = (h.clone(), serve.clone());
                tokio::spawn(async move {
                    let Some(head) = read_head(&mut tcp).await else {
                        return;
                    };
                    h.lock().expect("heads").push(head);
                    serve(tcp).await;
                });
            }
        });
        RawOrigin { addr, heads, task }
    }

    /// Answers every request with `reply`, then closes.
    async fn replying(reply: Vec<u8>) -> Self {
        let reply = Arc::new(reply);
        Self::start(move |mut tcp| {
            let reply = reply.clone();
            async move {
                let _ = tcp.write_all(&reply).await;
                let _ = tcp.shutdown().await;
            }
        })
        .await
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().expect("heads").clone()
    }
}

async fn read_head(tcp: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if tcp.read(&mut byte).await.ok()? == 0 || head.len() > 1 << 20 {
            return None;
        }
        head.push(byte[0]);
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

/// Sends raw bytes over a pinned TLS connection and reads until the proxy closes (bounded).
async fn raw(s: &TestProxy, r: &Running, bytes: &[u8]) -> String {
    let (mut tls, _) = s.client(r).handshake().await.expect("handshake");
    tls.write_all(bytes).await.expect("send");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

fn routes(upstreams: &[(&str, std::net::SocketAddr)]) -> String {
    let mut s = String::new();
    for (name, addr) in upstreams {
        s.push_str(&format!(
            "[[route]]\npath_prefix = \"/{name}\"\nupstream = \"{name}\"\n[upstream.{name}]\nurl = \"http://{addr}\"\n"
        ));
    }
    s
}

#[tokio::test]
async fn an_upstream_body_that_stalls_after_the_head_is_cut_at_upstream_read_timeout() {
    let origin = RawOrigin::start(|mut tcp| async move {
        let _ = tcp
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789")
            .await;
        tokio::time::sleep(Duration::from_secs(30)).await;
    })
    .await;
    let s = TestProxy::new(&format!(
        "[limits]\nupstream_read_timeout = \"300ms\"\nidle_timeout = \"60s\"\n\n{}",
        routes(&[("stall", origin.addr)])
    ));
    let r = s.start().await;
    for h2 in [false, true] {
        let mut c = s.client(&r);
        if h2 {
            c = c.h2();
        }
        let started = std::time::Instant::now();
        let got = tokio::time::timeout(Duration::from_secs(10), c.get("localhost", "/stall"))
            .await
            .expect("the proxy ends the stalled response");
        assert!(
            got.is_err(),
            "h2={h2}: a cut body, not a complete one: {got:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "h2={h2}: cut at the read timeout, took {:?}",
            started.elapsed()
        );
    }
    assert_eq!(
        scrape(
            r.admin,
            "pinproxy_upstream_errors_total",
            &[("upstream", "stall"), ("kind", "timeout")]
        )
        .await,
        2.0
    );
}

#[tokio::test]
async fn a_client_that_stops_reading_is_cut_at_client_write_timeout_and_the_upstream_released() {
    let released = Arc::new(AtomicBool::new(false));
    let rel = released.clone();
    let origin = RawOrigin::start(move |mut tcp| {
        let rel = rel.clone();
        async move {
            let _ = tcp
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 268435456\r\n\r\n")
                .await;
            let chunk = vec![b'x'; 64 * 1024];
            for _ in 0..4096 {
                if tcp.write_all(&chunk).await.is_err() {
                    rel.store(true, Ordering::SeqCst);
                    return;
                }
            }
        }
    })
    .await;
    let s = TestProxy::new(&format!(
        "[limits]\nclient_write_timeout = \"300ms\"\n\n{}",
        routes(&[("big", origin.addr)])
    ));
    let r = s.start().await;
    let (mut tls, _) = s.client(&r).handshake().await.expect("handshake");
    tls.write_all(b"GET /big HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("send");
    // The client never reads: the proxy's writes block, then it gives up.
    eventually(Duration::from_secs(20), || async {
        let cut = scrape(
            r.admin,
            "pinproxy_client_errors_total",
            &[("listener", "mobile"), ("kind", "write_timeout")],
        )
        .await;
        (cut == 1.0).then_some(())
    })
    .await;
    eventually(Duration::from_secs(10), || async {
        released.load(Ordering::SeqCst).then_some(())
    })
    .await;
    drop(tls);
}

#[tokio::test]
async fn client_body_errors_get_400_and_count_as_client_errors_not_upstream_errors() {
    let up = TestUpstream::plain(UpstreamMode::Echo).await;
    let s = TestProxy::new(&route_to(up.addr));
    let r = s.start().await;
    let bad_size = raw(
        &s,
        &r,
        b"POST /x HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n",
    )
    .await;
    assert!(bad_size.starts_with("HTTP/1.1 400"), "{bad_size}");
    let no_crlf = raw(
        &s,
        &r,
        b"POST /x HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX3\r\nabc\r\n0\r\n\r\n",
    )
    .await;
    assert!(no_crlf.starts_with("HTTP/1.1 400"), "{no_crlf}");
    {
        let (mut tls, _) = s.client(&r).handshake().await.expect("handshake");
        tls.write_all(
            b"POST /x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000\r\n\r\n0123456789",
        )
        .await
        .expect("send");
        tls.shutdown().await.expect("close after 10 of 1000 bytes");
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut out)).await;
    }
    eventually(Duration::from_secs(10), || async {
        let n = scrape(
            r.admin,
            "pinproxy_client_errors_total",
            &[("listener", "mobile"), ("kind", "body")],
        )
        .await;
        (n == 3.0).then_some(())
    })
    .await;
    let (_, text) = admin_get(r.admin, "/metrics").await;
    assert_eq!(
        metric(&text, "pinproxy_upstream_errors_total", &[]),
        None,
        "no upstream error counted"
    );
}

#[tokio::test]
async fn request_heads_over_max_header_bytes_get_431_exactly_on_http1_and_http2() {
    let up = TestUpstream::plain(UpstreamMode::Echo).await;
    let s = TestProxy::new(&route_to(up.addr));
    let r = s.start().await;
    // An HTTP/1.1 head of exactly `len` bytes.
    let head = |len: usize| {
        let start = "GET / HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\nx-big: ";
        let pad = len - start.len() - 4;
        format!("{start}{}\r\n\r\n", "a".repeat(pad))
    };
    let at = raw(&s, &r, head(65_536).as_bytes()).await;
    assert!(at.starts_with("HTTP/1.1 200"), "at the limit: {:.40}", at);
    for over in [65_537, 70_000, 90_000] {
        let got = raw(&s, &r, head(over).as_bytes()).await;
        assert!(got.starts_with("HTTP/1.1 431"), "{over} bytes: {:.40}", got);
    }
    let mut conn = s.client(&r).h2().connect().await.expect("h2");
    for (value, status) in [(60_000, 200), (66_000, 431), (100_000, 431)] {
        let req = http::Request::get("https://localhost/")
            .header("x-big", "a".repeat(value))
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .expect("request");
        let got = conn.send(req).await.expect("an answer, not a reset");
        assert_eq!(got.status, status, "h2 header of {value} bytes");
    }
    assert_eq!(up.hits(), 2);
}

#[tokio::test]
async fn malformed_upstream_response_heads_get_502_and_are_never_passed_on() {
    let huge = RawOrigin::replying(
        format!(
            "HTTP/1.1 200 OK\r\nX-Big: {}\r\nContent-Length: 2\r\n\r\nok",
            "a".repeat(200_000)
        )
        .into_bytes(),
    )
    .await;
    let over = RawOrigin::replying(
        format!(
            "HTTP/1.1 200 OK\r\nX-Big: {}\r\nContent-Length: 2\r\n\r\nok",
            "a".repeat(66_000)
        )
        .into_bytes(),
    )
    .await;
    let clte = RawOrigin::replying(
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
            .to_vec(),
    )
    .await;
    let switch = RawOrigin::replying(
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"
            .to_vec(),
    )
    .await;
    let s = TestProxy::new(&routes(&[
        ("huge", huge.addr),
        ("over", over.addr),
        ("clte", clte.addr),
        ("switch", switch.addr),
    ]));
    let r = s.start().await;
    for h2 in [false, true] {
        let mut c = s.client(&r);
        if h2 {
            c = c.h2();
        }
        for path in ["/huge", "/over", "/clte", "/switch"] {
            let got = c.get("localhost", path).await.expect("a response");
            assert_eq!(got.status, 502, "h2={h2} {path}: {:?}", got.headers);
            assert!(
                got.headers
                    .get("content-length")
                    .is_some_and(|v| v != "100")
            );
        }
    }
}

#[tokio::test]
async fn a_request_that_may_have_reached_the_upstream_is_never_sent_twice() {
    let origin = RawOrigin::start(|tcp| async move { drop(tcp) }).await;
    let s = TestProxy::new(&routes(&[("once", origin.addr)]));
    let r = s.start().await;
    let methods = ["GET", "HEAD", "OPTIONS", "DELETE", "PUT"];
    for m in methods {
        let mut conn = s.client(&r).connect().await.expect("connect");
        let req = http::Request::builder()
            .method(m)
            .uri("/once")
            .header("host", "localhost")
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .expect("request");
        assert_eq!(conn.send(req).await.expect("reply").status, 502, "{m}");
    }
    assert_eq!(
        origin.heads().len(),
        methods.len(),
        "each request reached the origin once: {:?}",
        origin.heads()
    );
}

#[tokio::test]
async fn host_fields_trace_and_options_asterisk_follow_the_rfcs() {
    let origin =
        RawOrigin::replying(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".to_vec()).await;
    let s = TestProxy::new(&format!(
        "[[route]]\npath_prefix = \"/\"\nupstream = \"o\"\n[upstream.o]\nurl = \"http://{}\"\n",
        origin.addr
    ));
    let r = s.start().await;
    for (what, head) in [
        ("two Host fields", "Host: localhost\r\nHost: localhost\r\n"),
        ("an empty Host", "Host: \r\n"),
        ("a Host list", "Host: localhost,localhost\r\n"),
        ("userinfo", "Host: user@localhost\r\n"),
    ] {
        let got = raw(
            &s,
            &r,
            format!("GET / HTTP/1.1\r\n{head}Connection: close\r\n\r\n").as_bytes(),
        )
        .await;
        assert!(got.starts_with("HTTP/1.1 400"), "{what}: {:.40}", got);
    }
    let trace = raw(
        &s,
        &r,
        b"TRACE / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(trace.starts_with("HTTP/1.1 405"), "{trace}");
    assert!(
        trace.to_ascii_lowercase().contains("\r\nallow: "),
        "{trace}"
    );
    assert!(origin.heads().is_empty(), "{:?}", origin.heads());
    let options = raw(
        &s,
        &r,
        b"OPTIONS * HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(options.starts_with("HTTP/1.1 200"), "{options}");
    let heads = origin.heads();
    assert!(heads[0].starts_with("OPTIONS * HTTP/1.1\r\n"), "{heads:?}");
}

#[tokio::test]
async fn h2_cookies_are_joined_for_http1_upstreams_and_x_real_ip_is_the_client() {
    let up = TestUpstream::plain(UpstreamMode::Echo).await;
    let s = TestProxy::new(&route_to(up.addr));
    let r = s.start().await;
    let mut conn = s.client(&r).h2().connect().await.expect("h2");
    let req = http::Request::get("https://localhost/c")
        .header("cookie", "a=1")
        .header("cookie", "b=2")
        .header("x-real-ip", "6.6.6.6")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .expect("request");
    let got = conn.send(req).await.expect("reply");
    let h = &json(&got.body)["headers"];
    assert_eq!(h["cookie"], serde_json::json!(["a=1; b=2"]));
    assert_eq!(h["x-real-ip"], serde_json::json!(["127.0.0.1"]));
}

#[tokio::test]
async fn preserve_host_to_an_h2_upstream_sends_the_clients_host_as_authority_only() {
    let psp = Pki::new("origin");
    let leaf = psp.leaf(&["pay.test"]);
    let up = TestUpstream::tls(&leaf, UpstreamMode::Echo).await;
    let s = TestProxy::new(&format!(
        "[[route]]\npath_prefix = \"/\"\nupstream = \"pay\"\npreserve_host = true\n\n[upstream.pay]\nurl = \"https://{}\"\nca = \"certs/origin-ca.pem\"\nserver_name = \"pay.test\"\n",
        up.addr
    ));
    s.dir.write("certs/origin-ca.pem", psp.root_pem());
    let r = s.start().await;
    let got = s.client(&r).get("localhost", "/p").await.expect("reply");
    assert_eq!(got.status, 200, "{}", got.body);
    let doc = json(&got.body);
    assert_eq!(doc["version"], "HTTP/2.0");
    assert_eq!(doc["authority"], "localhost");
    assert!(doc["headers"].get("host").is_none(), "{doc}");
}

#[tokio::test]
async fn response_trailers_reach_http1_clients_that_send_te_trailers() {
    let origin = RawOrigin::replying(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: x-checksum\r\n\r\n5\r\nhello\r\n0\r\nx-checksum: abc\r\n\r\n"
            .to_vec(),
    )
    .await;
    let s = TestProxy::new(&routes(&[("t", origin.addr)]));
    let r = s.start().await;
    let got = raw(
        &s,
        &r,
        b"GET /t HTTP/1.1\r\nHost: localhost\r\nTE: trailers\r\nConnection: close\r\n\r\n",
    )
    .await;
    let lower = got.to_ascii_lowercase();
    assert!(lower.contains("hello\r\n0\r\nx-checksum: abc\r\n"), "{got}");
}

#[tokio::test]
async fn a_one_megabyte_http1_request_head_gets_a_431_that_the_client_reads() {
    let up = TestUpstream::plain(UpstreamMode::Echo).await;
    let s = TestProxy::new(&route_to(up.addr));
    let r = s.start().await;
    // A small send buffer, as on a mobile link: most of the head is still to send when the
    // proxy answers, so a close with unread bytes (a reset) would cut the client off.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_send_buffer_size(16 * 1024).expect("SO_SNDBUF");
    let tcp = socket
        .connect(r.listener("mobile").expect("listener"))
        .await
        .expect("connect");
    let (mut tls, _) = s.client(&r).handshake_on(tcp).await.expect("handshake");
    let head = format!(
        "GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: {}\r\n\r\n",
        "a".repeat(1 << 20)
    );
    // A plain client: all of the head first, then the answer.
    tokio::time::timeout(Duration::from_secs(10), tls.write_all(head.as_bytes()))
        .await
        .expect("the proxy takes the whole head")
        .expect("no reset while sending");
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut out)).await;
    let got = String::from_utf8_lossy(&out);
    assert!(got.starts_with("HTTP/1.1 431"), "{read:?}: {got:.60}");
    assert_eq!(up.hits(), 0);
}
