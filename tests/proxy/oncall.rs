//! What the on-call engineer sees: the Host an upstream gets, the request id on both sides,
//! `/status` telling which upstream pins matched and which pins are backups, and the status
//! page people read.

use super::*;

/// A proxy whose route "/" goes to upstream "pay" configured by `upstream` (TOML lines).
fn pay_route(upstream: &str) -> String {
    format!("[[route]]\npath_prefix = \"/\"\nupstream = \"pay\"\n\n[upstream.pay]\n{upstream}\n")
}

fn header<'a>(echo: &'a serde_json::Value, name: &str) -> Vec<&'a str> {
    echo["headers"][name]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn the_upstream_gets_server_name_as_host_and_host_header_overrides_it() {
    let psp = Pki::new("psp");
    let up = TestUpstream::tls(&psp.leaf(&["pay.test"]), UpstreamMode::Echo).await;
    let s = TestProxy::new(&pay_route(&format!(
        "url = \"https://{}\"\nca = \"certs/psp-ca.pem\"\nserver_name = \"pay.test\"\n",
        up.addr
    )));
    s.dir.write("certs/psp-ca.pem", psp.root_pem());
    let r = s.start().await;
    for client in [s.client(&r), s.client(&r).h2()] {
        let reply = client.get("localhost", "/x").await.expect("request");
        assert_eq!(reply.status, 200, "{}", reply.body);
        let echo = json(&reply.body);
        let want = format!("pay.test:{}", up.addr.port());
        if echo["version"] == "HTTP/2.0" {
            assert_eq!(echo["authority"], want.as_str(), "{echo}");
            assert!(
                header(&echo, "host").is_empty(),
                "no Host beside :authority: {echo}"
            );
        } else {
            assert_eq!(
                header(&echo, "host"),
                vec![want.as_str()],
                "Host is server_name plus the non-default port, once: {echo}"
            );
        }
    }

    // An upstream's host_header, and a route's over it.
    let plain = TestUpstream::plain(UpstreamMode::Echo).await;
    let s2 = TestProxy::new(&format!(
        "[[route]]\npath_prefix = \"/legacy/\"\nupstream = \"pay\"\nhost_header = \"old.example.net:8080\"\n\n{}",
        pay_route(&format!(
            "url = \"http://{}\"\nhost_header = \"cdn.example.net\"\n",
            plain.addr
        ))
    ));
    let r2 = s2.start().await;
    let client = s2.client(&r2);
    let reply = client.get("localhost", "/x").await.expect("request");
    assert_eq!(header(&json(&reply.body), "host"), vec!["cdn.example.net"]);
    let reply = client.get("localhost", "/legacy/x").await.expect("request");
    assert_eq!(
        header(&json(&reply.body), "host"),
        vec!["old.example.net:8080"]
    );

    let bad = TestProxy::new(&pay_route(&format!(
        "url = \"http://{}\"\nhost_header = \"cdn example\"\n",
        plain.addr
    )));
    let err = start_proxy(&bad.dir.config_path())
        .await
        .err()
        .expect("refused");
    assert!(
        err.to_string().contains("`upstream.pay.host_header`"),
        "{err}"
    );
}

#[tokio::test]
async fn a_sane_request_id_travels_both_ways_and_anything_else_is_replaced() {
    let up = TestUpstream::plain(UpstreamMode::Echo).await;
    let s = TestProxy::new(&route_to(up.addr));
    let r = s.start().await;
    let client = s.client(&r);
    let send = |id: Option<&'static str>| {
        let client = &client;
        async move {
            let mut conn = client.connect().await.expect("connect");
            let mut req = client::get("localhost", "/x", false);
            if let Some(id) = id {
                req.headers_mut()
                    .insert("x-request-id", id.parse().expect("header"));
            }
            conn.send(req).await.expect("request")
        }
    };
    let reply = send(Some("app-4.2.1:7f3c9e")).await;
    let echo = json(&reply.body);
    assert_eq!(header(&echo, "x-request-id"), vec!["app-4.2.1:7f3c9e"]);
    assert_eq!(reply.headers["x-request-id"], "app-4.2.1:7f3c9e");

    let reply = send(Some("a b<script>")).await;
    let sent_up = header(&json(&reply.body), "x-request-id")[0].to_string();
    assert_eq!(sent_up.len(), 32, "a generated id replaces an odd one");
    assert_eq!(reply.headers["x-request-id"], sent_up.as_str());

    let none = send(None).await;
    assert_ne!(none.headers["x-request-id"], sent_up.as_str());
    // The proxy's own answers carry one too.
    let mut conn = client.connect().await.expect("connect");
    let refused = conn
        .send(client::get("localhost", "/../x", false))
        .await
        .expect("request");
    assert_eq!(refused.status, 400);
    assert_eq!(refused.headers["x-request-id"].len(), 32);
}

#[tokio::test]
async fn status_says_which_upstream_pins_matched_and_decides_backups_by_pin() {
    let psp = Pki::with_intermediate("psp");
    let up = TestUpstream::tls(&psp.leaf(&["pay.test"]), UpstreamMode::Echo).await;
    let inter = psp.intermediate_pin.clone().expect("intermediate");
    let s = psp_proxy(
        &psp,
        &up,
        &[
            (&inter, "psp intermediate", "ca"),
            (&psp.root_pin, "psp root", "ca"),
            (&backup_pin(7), "psp next CA", "ca"),
        ],
    );
    // Two pins under one label: only the one the served chain uses is "in use".
    s.dir.write_pin_set(
        "app",
        "2099-01-01",
        "enforce",
        &[
            (&s.leaf.pin, "api key", "key"),
            (&backup_pin(1), "api key", "key"),
        ],
    );
    let r = s.start().await;
    let reply = s.client(&r).get("localhost", "/x").await.expect("request");
    assert_eq!(reply.status, 200, "{}", reply.body);

    let (_, body) = admin_get(r.admin, "/status").await;
    let st = json(&body);
    let set = |name: &str| {
        st["pin_sets"]
            .as_array()
            .expect("pin_sets")
            .iter()
            .find(|p| p["name"] == name)
            .cloned()
            .expect("pin set in /status")
    };
    let psp_set = set("psp");
    let in_use: Vec<(&str, bool)> = psp_set["pins"]
        .as_array()
        .expect("pins")
        .iter()
        .map(|p| (p["label"].as_str().unwrap_or(""), p["in_use"] == true))
        .collect();
    assert_eq!(
        in_use,
        vec![
            ("psp intermediate", true),
            ("psp root", true),
            ("psp next CA", false)
        ],
        "{psp_set}"
    );
    assert_eq!(psp_set["backups"], serde_json::json!(["psp next CA"]));
    assert_eq!(psp_set["role"], "upstream");
    assert_eq!(psp_set["live"], true);

    let app = set("app");
    assert_eq!(app["pins"][0]["in_use"], true);
    assert_eq!(app["pins"][1]["in_use"], false, "decided by pin, not label");
    assert_eq!(app["backups"], serde_json::json!(["api key"]));

    let upstream = &st["upstreams"][0];
    let path = upstream["last_verified_path"].as_array().expect("path");
    let matched: Vec<&serde_json::Value> = path.iter().map(|c| &c["matched_pins"]).collect();
    assert_eq!(
        matched,
        vec![
            &serde_json::json!([]),
            &serde_json::json!(["psp intermediate"]),
            &serde_json::json!(["psp root"])
        ],
        "{upstream}"
    );
}

/// Runs headless Chromium on `url` with `args` (its own profile, bounded in time): stdout.
fn chromium(url: &str, args: &[String]) -> String {
    let profile = tempfile::tempdir().expect("profile dir");
    let out = std::process::Command::new("timeout")
        .args([
            "120",
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
        ])
        .args([
            "--no-first-run",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(url)
        .output()
        .expect("run chromium");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_shows_people_certificates_pins_and_upstreams_in_a_browser() {
    if !have_tool("chromium") {
        return;
    }
    let psp = Pki::with_intermediate("psp");
    let up = TestUpstream::tls(&psp.leaf(&["pay.test"]), UpstreamMode::Echo).await;
    let inter = psp.intermediate_pin.clone().expect("intermediate");
    let s = psp_proxy(
        &psp,
        &up,
        &[
            (&inter, "psp intermediate", "ca"),
            (&backup_pin(7), "psp next CA", "ca"),
        ],
    );
    // Inside the 60-day warning window: an amber light and a line under "Needs attention".
    let expires = time::OffsetDateTime::now_utc().date() + time::Duration::days(40);
    s.dir.write_pin_set(
        "app",
        &expires.to_string(),
        "enforce",
        &[
            (&s.leaf.pin, "api key 2026", "key"),
            (&backup_pin(1), "offline backup key", "key"),
        ],
    );
    let r = s.start().await;
    let reply = s.client(&r).get("localhost", "/x").await.expect("request");
    assert_eq!(reply.status, 200);

    let (code, html) = admin_get(r.admin, "/").await;
    assert_eq!(code, 200);
    for banned in ["<script", " src=", " href=", "url(", "@import"] {
        assert!(
            !html.contains(banned),
            "no script, no external asset ({banned}):\n{html}"
        );
    }

    let url = format!("http://{}/", r.admin);
    let png = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    let _ = std::fs::remove_file(&png);
    let (dom, png_bytes) = {
        let png = png.clone();
        tokio::task::spawn_blocking(move || {
            let dom = chromium(&url, &["--dump-dom".to_string()]);
            chromium(
                &url,
                &[
                    format!("--screenshot={}", png.display()),
                    "--window-size=1280,1500".to_string(),
                ],
            );
            (dom, std::fs::read(&png).expect("screenshot written"))
        })
        .await
        .expect("join")
    };
    // What a person reads on the rendered page.
    for text in [
        "Served certificates",
        "listener mobile",
        s.leaf.pin.as_str(),
        "“api key 2026” on the leaf",
        "offline backup key",
        "backup",
        "Needs attention",
        "pin set \"app\" expires on",
        "upstream pay",
        "psp intermediate",
        "pin mismatches 0",
        "Last reload",
        "generation 1",
    ] {
        assert!(dom.contains(text), "{text:?} on the rendered page:\n{dom}");
    }
    assert!(
        dom.contains("class=\"light warning\""),
        "an amber light for the pin set 40 days from expiry"
    );
    assert_eq!(&png_bytes[..8], b"\x89PNG\r\n\x1a\n", "a PNG");
    let width = u32::from_be_bytes(png_bytes[16..20].try_into().expect("IHDR"));
    assert_eq!(width, 1280, "rendered at the requested width");
    assert!(png_bytes.len() > 20_000, "a page with content, not a blank");
}

/// A proxy whose "pay" route goes to `up`, verified against the PSP's root as `pay.test` and
/// pinned by pin set "psp" with these pins.
fn psp_proxy(psp: &Pki, up: &TestUpstream, pins: &[(&str, &str, &str)]) -> TestProxy {
    let s = TestProxy::new(&pay_route(&format!(
        "url = \"https://{}\"\nca = \"certs/psp-ca.pem\"\nserver_name = \"pay.test\"\npin_set = \"psp\"\n",
        up.addr
    )));
    s.dir.write("certs/psp-ca.pem", psp.root_pem());
    s.dir.write_pin_set("psp", "2099-01-01", "enforce", pins);
    s
}
