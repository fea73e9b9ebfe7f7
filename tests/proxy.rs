//! The proxy as an app and an operator see it: pinned TLS towards clients, forwarding, error
//! statuses, limits, the admin endpoint and the refusals of `check` and `run`.

mod common;

use std::time::Duration;

use common::*;
use pinproxy::run::Running;

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

#[tokio::test]
async fn pinned_client_gets_the_upstream_response_over_http1_and_http2() {
    let up = TestUpstream::plain(UpstreamMode::Echo).await;
    let s = TestProxy::new(&route_to(up.addr));
    let r = s.start().await;

    let client = s.client(&r).pin(&[&s.leaf.pin]);
    let (_, hs) = client.handshake().await.expect("pinned handshake");
    assert_eq!(hs.leaf_pin, s.leaf.pin, "the served key is the pinned key");

    let h1 = client
        .get("localhost", "/hello?x=1")
        .await
        .expect("h1 request");
    assert_eq!(h1.status, 200);
    assert_eq!(h1.version, http::Version::HTTP_11);
    let seen = json(&h1.body);
    assert_eq!(seen["path"], "/hello");
    assert_eq!(seen["query"], "x=1");

    let h2 = client
        .clone()
        .h2()
        .get("localhost", "/h2")
        .await
        .expect("h2 request");
    assert_eq!(h2.status, 200);
    assert_eq!(h2.version, http::Version::HTTP_2);
    assert_eq!(json(&h2.body)["path"], "/h2");
    assert_eq!(up.hits(), 2);
    assert_eq!(
        scrape(
            r.admin,
            "pinproxy_requests_total",
            &[("listener", "mobile"), ("code", "200")]
        )
        .await,
        2.0
    );
}

#[tokio::test]
async fn client_pinning_another_key_is_refused_and_counted_as_rejecting_the_certificate() {
    let up = TestUpstream::plain(UpstreamMode::Echo).await;
    let s = TestProxy::new(&route_to(up.addr));
    let r = s.start().await;
    let wrong = backup_pin(9);
    let err = s
        .client(&r)
        .pin(&[&wrong])
        .get("localhost", "/")
        .await
        .expect_err("pin mismatch must fail");
    assert!(
        err.contains("ApplicationVerificationFailure") || err.contains("invalid peer certificate"),
        "{err}"
    );
    let labels = [
        ("listener", "mobile"),
        ("reason", "client_rejected_certificate"),
    ];
    eventually(Duration::from_secs(5), || async {
        (scrape(r.admin, "pinproxy_tls_handshake_errors_total", &labels).await == 1.0).then_some(())
    })
    .await;
    assert_eq!(up.hits(), 0);
}

#[tokio::test]
async fn curl_with_pinnedpubkey_accepts_the_served_key_and_refuses_another() {
    if !have_tool("curl") {
        return;
    }
    let up = TestUpstream::plain(UpstreamMode::Echo).await;
    let s = TestProxy::new(&route_to(up.addr));
    let r = s.start().await;
    let ca = s.dir.write("certs/root.pem", s.pki.root_pem());
    let port = r.listener("mobile").expect("listener").port();
    let curl = |pin: String| {
        let ca = ca.clone();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new("curl")
                .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
                .arg(&ca)
                .args([
                    "--resolve",
                    &format!("localhost:{port}:127.0.0.1"),
                    "--pinnedpubkey",
                    &format!("sha256//{pin}"),
                ])
                .arg(format!("https://localhost:{port}/curl"))
                .output()
                .expect("curl runs")
        })
    };
    let ok = curl(s.leaf.pin.clone()).await.expect("join");
    assert!(
        ok.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&ok.stdout), "200");
    let bad = curl(backup_pin(3)).await.expect("join");
    assert_eq!(
        bad.status.code(),
        Some(90),
        "curl exit 90 = pinned key mismatch: {}",
        String::from_utf8_lossy(&bad.stderr)
    );
    assert_eq!(up.hits(), 1);
}

#[tokio::test]
async fn sni_picks_the_matching_certificate_and_unknown_names_get_the_first() {
    let up = TestUpstream::plain(UpstreamMode::Echo).await;
    let dir = TestDir::new();
    let pki = Pki::new("sni");
    let first = pki.leaf(&["localhost"]);
    let api = pki.leaf(&["api.example.test"]);
    let wild = pki.leaf(&["*.cdn.example.test"]);
    dir.write_cert("first", &first);
    dir.write_cert("api", &api);
    dir.write_cert("wild", &wild);
    dir.write_pin_set(
        "app",
        "2099-01-01",
        "enforce",
        &[
            (&first.pin, "first", "key"),
            (&api.pin, "api", "key"),
            (&wild.pin, "wild", "key"),
            (&backup_pin(1), "backup", "key"),
        ],
    );
    let config = format!(
        "{}\n[[listener.cert]]\nserver_names = [\"api.example.test\"]\nchain = \"certs/api.pem\"\nkey = \"certs/api.key\"\n\
         [[listener.cert]]\nserver_names = [\"*.cdn.example.test\"]\nchain = \"certs/wild.pem\"\nkey = \"certs/wild.key\"\n\n{}",
        basic_config("first", &["app"], "").trim_end(),
        route_to(up.addr)
    );
    dir.write("config.toml", &config);
    let r = start_proxy(&dir.config_path()).await.expect("start");
    let addr = r.listener("mobile").expect("listener");
    let client = Client::new(addr, &pki.root_pem());
    for (sni, want) in [
        ("api.example.test", &api.pin),
        ("img.cdn.example.test", &wild.pin),
        ("localhost", &first.pin),
    ] {
        let (_, hs) = client
            .clone()
            .sni(sni)
            .handshake()
            .await
            .expect("handshake");
        assert_eq!(&hs.leaf_pin, want, "SNI {sni}");
    }
    // An unknown name gets the first certificate, which the client then refuses as not its name.
    let err = client
        .clone()
        .sni("unknown.example.test")
        .handshake()
        .await
        .map(|_| ())
        .expect_err("name mismatch");
    assert!(
        err.contains("NotValidForName") || err.contains("not valid for name"),
        "{err}"
    );
    let reply = client
        .clone()
        .sni("img.cdn.example.test")
        .get("img.cdn.example.test", "/x")
        .await
        .expect("request");
    assert_eq!(reply.status, 200);
}

#[tokio::test]
async fn https_upstream_verified_by_a_private_ca_is_forwarded_and_an_untrusted_one_gets_502() {
    let upstream_pki = Pki::with_intermediate("upstream");
    let good = TestUpstream::tls(&upstream_pki.leaf(&["backend.test"]), UpstreamMode::Echo).await;
    let rogue_pki = Pki::new("rogue");
    let rogue = TestUpstream::tls(&rogue_pki.leaf(&["backend.test"]), UpstreamMode::Echo).await;
    let extra = format!(
        "[[route]]\npath_prefix = \"/good\"\nupstream = \"good\"\n[[route]]\npath_prefix = \"/rogue\"\nupstream = \"rogue\"\n\n\
         [upstream.good]\nurl = \"https://{}\"\nca = \"certs/upstream-ca.pem\"\nserver_name = \"backend.test\"\n\n\
         [upstream.rogue]\nurl = \"https://{}\"\nca = \"certs/upstream-ca.pem\"\nserver_name = \"backend.test\"\n",
        good.addr, rogue.addr
    );
    let s = TestProxy::new(&extra);
    s.dir
        .write("certs/upstream-ca.pem", upstream_pki.root_pem());
    let r = s.start().await;
    let client = s.client(&r);
    let ok = client.get("localhost", "/good/x").await.expect("request");
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(
        json(&ok.body)["version"],
        "HTTP/2.0",
        "ALPN picks h2 towards the upstream"
    );
    let bad = client.get("localhost", "/rogue/x").await.expect("request");
    assert_eq!(bad.status, 502);
    assert!(
        !bad.body.contains("127.0.0.1"),
        "no internal address leaks: {}",
        bad.body
    );
    assert_eq!(rogue.hits(), 0);
    let (_, m) = admin_get(r.admin, "/metrics").await;
    assert_eq!(
        metric(
            &m,
            "pinproxy_upstream_errors_total",
            &[("upstream", "rogue"), ("kind", "tls")]
        ),
        Some(1.0),
        "{m}"
    );
}

#[tokio::test]
async fn routes_pick_the_best_host_then_the_longest_prefix_on_segment_boundaries() {
    let pay = TestUpstream::plain(UpstreamMode::Echo).await;
    let web = TestUpstream::plain(UpstreamMode::Echo).await;
    let host = TestUpstream::plain(UpstreamMode::Echo).await;
    let extra = format!(
        "[[route]]\nname = \"payments\"\npath_prefix = \"/pay/\"\nupstream = \"pay\"\nstrip_prefix = true\n\
         [[route]]\npath_prefix = \"/\"\nupstream = \"web\"\n\
         [[route]]\nname = \"by-host\"\nhost = \"127.0.0.1\"\npath_prefix = \"/\"\nupstream = \"host\"\npreserve_host = true\n\n\
         [upstream.pay]\nurl = \"http://{}/v1\"\n[upstream.web]\nurl = \"http://{}\"\n[upstream.host]\nurl = \"http://{}\"\n",
        pay.addr, web.addr, host.addr
    );
    let s = TestProxy::new(&extra);
    let r = s.start().await;
    let c = s.client(&r);
    let p = json(
        &c.get("localhost", "/pay/charge?id=7")
            .await
            .expect("pay")
            .body,
    );
    assert_eq!(p["path"], "/v1/charge");
    assert_eq!(p["query"], "id=7");
    assert_eq!(p["headers"]["host"][0], pay.addr.to_string());
    assert_eq!(
        json(&c.get("localhost", "/pay").await.expect("pay").body)["path"],
        "/v1/"
    );
    assert_eq!(
        json(&c.get("localhost", "/payments").await.expect("web").body)["path"],
        "/payments"
    );
    assert_eq!(web.hits(), 1);
    let h = json(&c.get("127.0.0.1", "/pay/x").await.expect("host route").body);
    assert_eq!(
        h["headers"]["host"][0], "127.0.0.1",
        "preserve_host keeps the client's Host"
    );
    assert_eq!(host.hits(), 1);
    assert_eq!(
        scrape(
            r.admin,
            "pinproxy_requests_total",
            &[("route", "payments"), ("code", "200")]
        )
        .await,
        2.0
    );
}

#[tokio::test]
async fn the_proxy_answers_404_421_400_and_501_itself_without_reaching_the_upstream() {
    let up = TestUpstream::plain(UpstreamMode::Echo).await;
    let extra = format!(
        "[[route]]\npath_prefix = \"/api\"\nupstream = \"backend\"\n\n[upstream.backend]\nurl = \"http://{}\"\n",
        up.addr
    );
    let s = TestProxy::new(&extra);
    let r = s.start().await;
    let c = s.client(&r);
    assert_eq!(
        c.get("localhost", "/elsewhere").await.expect("404").status,
        404
    );
    assert_eq!(
        c.get("evil.example.com", "/api").await.expect("421").status,
        421
    );
    assert_eq!(
        c.get("localhost", "/api/../admin")
            .await
            .expect("400")
            .status,
        400
    );
    assert_eq!(
        c.get("localhost", "/api/%2e%2E/admin")
            .await
            .expect("400")
            .status,
        400
    );
    let mut conn = c.connect().await.expect("connect");
    let ws = http::Request::get("/api/ws")
        .header("host", "localhost")
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .expect("request");
    assert_eq!(conn.send(ws).await.expect("501").status, 501);
    assert_eq!(up.hits(), 0);
    assert_eq!(
        scrape(
            r.admin,
            "pinproxy_requests_total",
            &[("route", "-"), ("code", "404")]
        )
        .await,
        1.0
    );
}

#[tokio::test]
async fn a_dead_upstream_gets_502_and_a_slow_one_gets_504_with_short_bodies() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let slow = TestUpstream::plain(UpstreamMode::Delay(Duration::from_secs(3))).await;
    let extra = format!(
        "[[route]]\npath_prefix = \"/dead\"\nupstream = \"dead\"\n[[route]]\npath_prefix = \"/slow\"\nupstream = \"slow\"\ntimeout = \"200ms\"\n\n\
         [upstream.dead]\nurl = \"http://{dead}\"\n[upstream.slow]\nurl = \"http://{}\"\n",
        slow.addr
    );
    let s = TestProxy::new(&extra);
    let r = s.start().await;
    let c = s.client(&r);
    let d = c.get("localhost", "/dead").await.expect("502");
    assert_eq!(d.status, 502);
    assert!(!d.body.contains(&dead.port().to_string()));
    let started = std::time::Instant::now();
    let t = c.get("localhost", "/slow").await.expect("504");
    assert_eq!(t.status, 504);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the route timeout, not the upstream, ended it"
    );
    assert_eq!(
        scrape(
            r.admin,
            "pinproxy_upstream_errors_total",
            &[("upstream", "dead"), ("kind", "connect")]
        )
        .await,
        1.0
    );
    assert_eq!(
        scrape(
            r.admin,
            "pinproxy_upstream_errors_total",
            &[("upstream", "slow"), ("kind", "timeout")]
        )
        .await,
        1.0
    );
}

#[tokio::test]
async fn hop_by_hop_headers_are_removed_and_forwarded_headers_are_set_by_the_proxy() {
    let up = TestUpstream::plain(UpstreamMode::Echo).await;
    let s = TestProxy::new(&route_to(up.addr));
    let r = s.start().await;
    let mut conn = s.client(&r).connect().await.expect("connect");
    let req = http::Request::post("/h")
        .header("host", "localhost")
        .header("connection", "x-hop")
        .header("x-hop", "secret")
        .header("keep-alive", "timeout=9")
        .header("te", "trailers")
        .header("proxy-authorization", "Basic Zm9vOmJhcg==")
        .header("x-forwarded-for", "6.6.6.6")
        .header("x-forwarded-proto", "http")
        .header("forwarded", "for=6.6.6.6")
        .header("x-end-to-end", "kept")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(
            b"0123456789",
        )))
        .expect("request");
    let reply = conn.send(req).await.expect("reply");
    assert_eq!(reply.status, 200);
    let h = &json(&reply.body)["headers"];
    for gone in [
        "x-hop",
        "keep-alive",
        "proxy-authorization",
        "forwarded",
        "connection",
    ] {
        assert!(
            h.get(gone).is_none(),
            "{gone} must not reach the upstream: {h}"
        );
    }
    assert_eq!(h["te"][0], "trailers");
    assert_eq!(h["x-end-to-end"][0], "kept");
    assert_eq!(h["x-forwarded-for"], serde_json::json!(["127.0.0.1"]));
    assert_eq!(h["x-forwarded-proto"][0], "https");
    assert_eq!(h["x-forwarded-host"][0], "localhost");
    assert_eq!(
        json(&reply.body)["body_len"],
        10,
        "the body is streamed through"
    );
    assert!(
        reply.headers.get("keep-alive").is_none(),
        "upstream hop-by-hop response headers are removed"
    );
    assert_eq!(
        reply.headers.get("x-upstream").map(|v| v.as_bytes()),
        Some(&b"test"[..])
    );
}

#[tokio::test]
async fn a_request_head_over_max_header_bytes_gets_431() {
    let up = TestUpstream::plain(UpstreamMode::Echo).await;
    let s = TestProxy::new(&format!(
        "[limits]\nmax_header_bytes = 8192\n\n{}",
        route_to(up.addr)
    ));
    let r = s.start().await;
    let mut conn = s.client(&r).connect().await.expect("connect");
    let req = http::Request::get("/")
        .header("host", "localhost")
        .header("x-big", "a".repeat(20_000))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .expect("request");
    assert_eq!(conn.send(req).await.expect("reply").status, 431);
    assert_eq!(up.hits(), 0);
}

#[tokio::test]
async fn connections_over_max_connections_are_closed_at_once_and_counted() {
    let up = TestUpstream::plain(UpstreamMode::Echo).await;
    let s = TestProxy::new(&format!(
        "[limits]\nmax_connections = 1\n\n{}",
        route_to(up.addr)
    ));
    let r = s.start().await;
    let c = s.client(&r);
    let mut first = c.connect().await.expect("first connection");
    assert_eq!(
        first
            .send(client::get("localhost", "/", false))
            .await
            .expect("first")
            .status,
        200
    );
    let second = c.handshake().await;
    assert!(second.is_err(), "the second connection is closed");
    assert_eq!(
        scrape(
            r.admin,
            "pinproxy_connections_rejected_total",
            &[("listener", "mobile")]
        )
        .await,
        1.0
    );
    assert_eq!(
        scrape(
            r.admin,
            "pinproxy_connections_open",
            &[("listener", "mobile")]
        )
        .await,
        1.0
    );
}

#[tokio::test]
async fn idle_keep_alive_connections_close_after_idle_timeout_not_at_the_header_timeout() {
    let up = TestUpstream::plain(UpstreamMode::Echo).await;
    let s = TestProxy::new(&format!(
        "[limits]\nheader_read_timeout = \"100ms\"\nidle_timeout = \"800ms\"\n\n{}",
        route_to(up.addr)
    ));
    let r = s.start().await;
    let mut conn = s.client(&r).connect().await.expect("connect");
    assert_eq!(
        conn.send(client::get("localhost", "/", false))
            .await
            .expect("first")
            .status,
        200
    );
    tokio::time::sleep(Duration::from_millis(300)).await; // idle well past the header timeout
    assert_eq!(
        conn.send(client::get("localhost", "/", false))
            .await
            .expect("still open")
            .status,
        200
    );
    let open = eventually(Duration::from_secs(5), || async {
        let n = scrape(
            r.admin,
            "pinproxy_connections_open",
            &[("listener", "mobile")],
        )
        .await;
        (n == 0.0).then_some(n)
    })
    .await;
    assert_eq!(open, 0.0, "the idle connection was closed");
}

#[tokio::test]
async fn a_request_head_that_stalls_is_cut_at_header_read_timeout() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let up = TestUpstream::plain(UpstreamMode::Echo).await;
    let s = TestProxy::new(&format!(
        "[limits]\nheader_read_timeout = \"200ms\"\nidle_timeout = \"60s\"\n\n{}",
        route_to(up.addr)
    ));
    let r = s.start().await;
    let (mut tls, _) = s.client(&r).handshake().await.expect("handshake");
    tls.write_all(b"GET / HTTP/1.1\r\nHost: local")
        .await
        .expect("partial head");
    let started = std::time::Instant::now();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(10), tls.read(&mut buf))
        .await
        .expect("closed in time")
        .unwrap_or(0);
    assert_eq!(n, 0, "closed without a response");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(up.hits(), 0);
}

#[tokio::test]
async fn a_client_that_never_finishes_the_handshake_is_counted_as_a_timeout() {
    let up = TestUpstream::plain(UpstreamMode::Echo).await;
    let s = TestProxy::new(&format!(
        "[limits]\ntls_handshake_timeout = \"100ms\"\n\n{}",
        route_to(up.addr)
    ));
    let r = s.start().await;
    let _silent = tokio::net::TcpStream::connect(r.listener("mobile").expect("listener"))
        .await
        .expect("connect");
    let labels = [("listener", "mobile"), ("reason", "timeout")];
    eventually(Duration::from_secs(5), || async {
        (scrape(r.admin, "pinproxy_tls_handshake_errors_total", &labels).await == 1.0).then_some(())
    })
    .await;
}

#[tokio::test]
async fn admin_endpoints_report_health_readiness_status_and_metrics() {
    let up = TestUpstream::plain(UpstreamMode::Echo).await;
    let s = TestProxy::new(&route_to(up.addr));
    let r = s.start().await;
    assert_eq!(admin_get(r.admin, "/healthz").await.0, 200);
    let (code, ready) = admin_get(r.admin, "/readyz").await;
    assert_eq!(code, 200);
    assert!(ready.contains("generation=1"), "{ready}");
    let (code, status) = admin_get(r.admin, "/status").await;
    assert_eq!(code, 200);
    let st = json(&status);
    assert_eq!(st["generation"], 1);
    let cert = &st["listeners"][0]["certs"][0];
    assert_eq!(cert["path"][0]["pin"], format!("sha256/{}", s.leaf.pin));
    assert_eq!(cert["pin_sets"][0]["matched"][0]["label"], "current");
    assert_eq!(st["pin_sets"][0]["backups"], serde_json::json!(["backup"]));
    let (_, metrics) = admin_get(r.admin, "/metrics").await;
    for name in [
        "pinproxy_build_info",
        "pinproxy_config_generation",
        "pinproxy_config_info",
        "pinproxy_connections_open",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }
    assert_eq!(
        metric(&metrics, "pinproxy_config_generation", &[]),
        Some(1.0)
    );
    assert!(r.shutdown().await, "drains at once with nothing in flight");
}

#[path = "proxy/adoption.rs"]
mod adoption;
#[path = "proxy/app_files.rs"]
mod app_files;
#[path = "proxy/auth.rs"]
mod auth;
#[path = "proxy/h2_negative.rs"]
mod h2_negative;
#[path = "proxy/hardening.rs"]
mod hardening;
#[path = "proxy/okhttp.rs"]
mod okhttp;
#[path = "proxy/oncall.rs"]
mod oncall;
#[path = "proxy/paths.rs"]
mod paths;
#[path = "proxy/pool.rs"]
mod pool;
#[path = "proxy/proxy_protocol.rs"]
mod proxy_protocol;
#[path = "proxy/response_headers.rs"]
mod response_headers;
#[path = "proxy/upstream_pins.rs"]
mod upstream_pins;
