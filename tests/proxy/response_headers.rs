//! Responses say no more than needed: headers that name the backend's stack never reach the
//! app, per-route `keep`/`remove`/`add` work, and the proxy's own answers name nothing.

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::*;

/// The OWASP Secure Headers Project's removal list (ci/headers_remove.json, 2024-09-02) and the
/// two the issue adds, copied here as the test's own oracle.
const LEAKY: &[&str] = &[
    "$wsep",
    "Host-Header",
    "K-Proxy-Request",
    "Liferay-Portal",
    "OracleCommerceCloud-Version",
    "Pega-Host",
    "Powered-By",
    "Product",
    "Server",
    "SourceMap",
    "X-AspNet-Version",
    "X-AspNetMvc-Version",
    "X-Atmosphere-error",
    "X-Atmosphere-first-request",
    "X-Atmosphere-tracking-id",
    "X-B3-ParentSpanId",
    "X-B3-Sampled",
    "X-B3-SpanId",
    "X-B3-TraceId",
    "X-BEServer",
    "X-CF-Powered-By",
    "X-CMS",
    "X-CalculatedBETarget",
    "X-Cocoon-Version",
    "X-Content-Encoded-By",
    "X-DiagInfo",
    "X-Envoy-Attempt-Count",
    "X-Envoy-External-Address",
    "X-Envoy-Internal",
    "X-Envoy-Original-Dst-Host",
    "X-Envoy-Upstream-Service-Time",
    "X-FEServer",
    "X-Framework",
    "X-Generated-By",
    "X-Generator",
    "X-Jitsi-Release",
    "X-Joomla-Version",
    "X-Kubernetes-PF-FlowSchema-UI",
    "X-Kubernetes-PF-PriorityLevel-UID",
    "X-LiteSpeed-Cache",
    "X-LiteSpeed-Purge",
    "X-LiteSpeed-Tag",
    "X-LiteSpeed-Vary",
    "X-Litespeed-Cache-Control",
    "X-Mod-Pagespeed",
    "X-Nextjs-Cache",
    "X-Nextjs-Matched-Path",
    "X-Nextjs-Page",
    "X-Nextjs-Redirect",
    "X-OWA-Version",
    "X-Old-Content-Length",
    "X-OneAgent-JS-Injection",
    "X-Page-Speed",
    "X-Php-Version",
    "X-Powered-By",
    "X-Powered-By-Plesk",
    "X-Powered-CMS",
    "X-Redirect-By",
    "X-Server-Powered-By",
    "X-SourceFiles",
    "X-SourceMap",
    "X-Turbo-Charged-By",
    "X-Umbraco-Version",
    "X-Varnish-Backend",
    "X-Varnish-Server",
    "X-dtAgentId",
    "X-dtHealthCheck",
    "X-dtInjectedServlet",
    "X-ruxit-JS-Agent",
    "X-Runtime",
    "X-Version",
];

/// A chatty origin written with raw sockets: every request gets a 200 carrying every leaky
/// header plus `X-Internal` and `Cache-Control: public`, on a keep-alive connection.
async fn chatty_origin() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind origin");
    let addr = listener.local_addr().expect("addr");
    let mut head = String::from("HTTP/1.1 200 OK\r\n");
    for h in LEAKY {
        head.push_str(&format!("{h}: backend-detail-1.2.3\r\n"));
    }
    head.push_str("X-Internal: db-7.internal\r\nCache-Control: public\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok");
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else {
                continue;
            };
            let head = head.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    match tcp.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                    // GETs without a body: one answer per complete request head.
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        if tcp.write_all(head.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    (addr, task)
}

#[tokio::test]
async fn no_header_on_the_removal_list_reaches_the_app_and_routes_keep_remove_and_add() {
    let (addr, _origin) = chatty_origin().await;
    let s = TestProxy::new(&format!(
        "[[route]]\npath_prefix = \"/\"\nupstream = \"origin\"\n\n\
         [[route]]\npath_prefix = \"/pay\"\nupstream = \"origin\"\n\
         response_headers = {{ keep = [\"Server\"], remove = [\"X-Internal\"], add = {{ Cache-Control = \"no-store\", X-Content-Type-Options = \"nosniff\" }} }}\n\n\
         [upstream.origin]\nurl = \"http://{addr}\"\n"
    ));
    let r = s.start().await;
    for client in [s.client(&r), s.client(&r).h2()] {
        let plain = client.get("localhost", "/api").await.expect("request");
        assert_eq!(plain.status, 200);
        assert_eq!(plain.body, "ok");
        for h in LEAKY {
            assert!(
                plain.headers.get(*h).is_none(),
                "{h} reached the client over {:?}",
                plain.version
            );
        }
        assert_eq!(
            plain.headers.get("x-internal").map(|v| v.as_bytes()),
            Some(&b"db-7.internal"[..])
        );
        assert_eq!(
            plain.headers.get("cache-control").map(|v| v.as_bytes()),
            Some(&b"public"[..])
        );

        let pay = client.get("localhost", "/pay/1").await.expect("request");
        assert_eq!(pay.status, 200);
        assert_eq!(
            pay.headers.get("server").map(|v| v.as_bytes()),
            Some(&b"backend-detail-1.2.3"[..]),
            "kept"
        );
        assert!(
            pay.headers.get("x-powered-by").is_none(),
            "the rest of the defaults still go"
        );
        assert!(
            pay.headers.get("x-internal").is_none(),
            "removed by the route"
        );
        assert_eq!(pay.headers.get_all("cache-control").iter().count(), 1);
        assert_eq!(
            pay.headers.get("cache-control").map(|v| v.as_bytes()),
            Some(&b"no-store"[..])
        );
        assert_eq!(
            pay.headers
                .get("x-content-type-options")
                .map(|v| v.as_bytes()),
            Some(&b"nosniff"[..])
        );
    }
}

#[tokio::test]
async fn the_proxys_own_answers_name_neither_it_nor_an_internal_host() {
    let (addr, _origin) = chatty_origin().await;
    // An upstream that refuses connections: the 502 must not carry its address.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let dead = closed.local_addr().expect("addr");
    drop(closed);
    let s = TestProxy::new(&format!(
        "[[route]]\npath_prefix = \"/api\"\nupstream = \"origin\"\n\n\
         [[route]]\npath_prefix = \"/dead\"\nupstream = \"dead\"\n\n\
         [upstream.origin]\nurl = \"http://{addr}\"\n\n[upstream.dead]\nurl = \"http://{dead}\"\n"
    ));
    let r = s.start().await;
    for client in [s.client(&r), s.client(&r).h2()] {
        for (path, status) in [("/nothing-here", 404), ("/dead/x", 502)] {
            let reply = client.get("localhost", path).await.expect("request");
            assert_eq!(reply.status, status);
            let mut all = reply.body.to_ascii_lowercase();
            for (k, v) in &reply.headers {
                all.push_str(&format!("\n{k}: {}", String::from_utf8_lossy(v.as_bytes())));
            }
            for leak in [
                "pinproxy",
                "server",
                "127.0.0.1",
                &dead.port().to_string(),
                "hyper",
                "rust",
            ] {
                assert!(!all.contains(leak), "{path}: {leak:?} in {all}");
            }
        }
    }
}
