//! Adoption per pin set: requests counted under the pin set their app version ships, over
//! HTTP/1.1 and HTTP/2, in `/metrics`, `/status` and `pinproxy check`.

use super::*;

/// "app" ships in 4.2–4.x, "app-5" from 5.0; both pin the served key with their own backup.
fn adoption_setup(source: &str, up: std::net::SocketAddr) -> TestProxy {
    let s = TestProxy::new(&route_to(up));
    let pins = std::fs::read_to_string(s.dir.path().join("pins/app.toml")).expect("pins");
    s.dir.write(
        "pins/app.toml",
        format!("app_versions = \">=4.2.0, <5.0.0\"\n{pins}"),
    );
    s.dir.write_pin_set(
        "app-5",
        "2099-01-01",
        "enforce",
        &[
            (&s.leaf.pin, "current", "key"),
            (&backup_pin(2), "backup 5", "key"),
        ],
    );
    let pins5 = std::fs::read_to_string(s.dir.path().join("pins/app-5.toml")).expect("pins");
    s.dir.write(
        "pins/app-5.toml",
        format!("app_versions = \">=5\"\n{pins5}"),
    );
    let config = basic_config("api", &["app", "app-5"], &route_to(up)).replace(
        "pin_sets = [\"app\", \"app-5\"]\n",
        &format!("pin_sets = [\"app\", \"app-5\"]\napp_version = {source}\n"),
    );
    s.dir.write("config.toml", config);
    s
}

async fn send(conn: &mut client::Conn, h2: bool, header: Option<(&str, &str)>) {
    let mut req = client::get("localhost", "/adoption", h2);
    if let Some((k, v)) = header {
        req.headers_mut().insert(
            http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
            http::HeaderValue::from_str(v).expect("value"),
        );
    }
    assert_eq!(conn.send(req).await.expect("request").status, 200);
}

async fn count(r: &Running, set: &str) -> f64 {
    scrape(
        r.admin,
        "pinproxy_pin_set_requests_total",
        &[("listener", "mobile"), ("pin_set", set)],
    )
    .await
}

#[tokio::test]
async fn requests_with_mixed_app_versions_are_counted_per_pin_set_over_http1_and_http2() {
    let up = TestUpstream::plain(UpstreamMode::Echo).await;
    let s = adoption_setup("{ header = \"X-App-Version\" }", up.addr);
    let r = s.start().await;
    for set in ["app", "app-5", "unknown"] {
        assert_eq!(
            count(&r, set).await,
            0.0,
            "{set} is exported before traffic"
        );
    }

    let client = s.client(&r).pin(&[&s.leaf.pin]);
    let mut h1 = client.connect().await.expect("h1");
    for v in ["4.3.1", "4.2", "4.9.9 (1234)"] {
        send(&mut h1, false, Some(("x-app-version", v))).await;
    }
    send(&mut h1, false, Some(("x-app-version", "4.1.0"))).await; // older than any range
    send(&mut h1, false, None).await;
    let mut h2 = client.clone().h2().connect().await.expect("h2");
    for v in ["5.0.0", "5.1"] {
        send(&mut h2, true, Some(("x-app-version", v))).await;
    }
    send(&mut h2, true, Some(("x-app-version", "nightly"))).await;

    assert_eq!(count(&r, "app").await, 3.0);
    assert_eq!(count(&r, "app-5").await, 2.0);
    assert_eq!(count(&r, "unknown").await, 3.0);

    let (_, body) = admin_get(r.admin, "/status").await;
    let status = json(&body);
    let adoption = &status["listeners"][0]["adoption"];
    assert_eq!(adoption["requests"], 8, "{adoption}");
    let share = |set: &str| {
        adoption["pin_sets"]
            .as_array()
            .expect("pin_sets")
            .iter()
            .find(|p| p["pin_set"] == set)
            .map(|p| p["share"].as_f64().expect("share"))
            .expect("set listed")
    };
    assert_eq!(share("app"), 0.375);
    assert_eq!(share("app-5"), 0.25);
    assert_eq!(share("unknown"), 0.375);
    // Each backup key ships in one set: switching to either would fail most apps.
    let backups = adoption["backups"].as_array().expect("backups");
    assert_eq!(backups.len(), 2, "{adoption}");
    assert_eq!(backups[0]["label"], "backup");
    assert_eq!(backups[0]["pin_sets"], serde_json::json!(["app"]));
    assert_eq!(backups[0]["share"], 0.375);
    assert_eq!(backups[0]["safe_to_switch"], false);
    assert_eq!(backups[1]["pin_sets"], serde_json::json!(["app-5"]));
    assert_eq!(backups[1]["share"], 0.25);

    // `check` reads the running proxy's figures from the admin address in the config.
    let config = std::fs::read_to_string(s.dir.config_path()).expect("config");
    s.dir.write(
        "config.toml",
        config.replacen(
            "listen = \"127.0.0.1:0\"",
            &format!("listen = \"{}\"", r.admin),
            1,
        ),
    );
    let report = pinproxy::check::check(&s.dir.config_path(), false).await;
    assert!(report.ok, "{}", report.text);
    assert!(
        report.text.contains(&format!(
            "adoption on listener mobile (last 24h, 8 requests, proxy at {}): app 37.50 % (3), app-5 25.00 % (2), unknown 37.50 % (3)",
            r.admin
        )),
        "{}",
        report.text
    );
    assert!(
        report.text.contains(&format!(
            "  backup \"backup 5\" (sha256/{}): shipped by app-5 = 25.00 % of requests; not yet safe to switch to (needs 99.9 %)",
            backup_pin(2)
        )),
        "{}",
        report.text
    );
    assert!(
        report
            .text
            .contains("pin set app: app versions >=4.2.0, <5.0.0"),
        "{}",
        report.text
    );
}

#[tokio::test]
async fn the_app_version_is_read_from_the_user_agent_pattern() {
    let up = TestUpstream::plain(UpstreamMode::Echo).await;
    let s = adoption_setup("{ user_agent = \"MyShop/(\\\\S+)\" }", up.addr);
    let r = s.start().await;
    let client = s.client(&r).pin(&[&s.leaf.pin]);
    let mut h2 = client.h2().connect().await.expect("h2");
    send(
        &mut h2,
        true,
        Some(("user-agent", "MyShop/5.2.0 (iPhone; iOS 18.1)")),
    )
    .await;
    send(
        &mut h2,
        true,
        Some(("user-agent", "MyShop/4.4.0 okhttp/4.12.0")),
    )
    .await;
    send(&mut h2, true, Some(("user-agent", "curl/8.5.0"))).await;
    assert_eq!(count(&r, "app").await, 1.0);
    assert_eq!(count(&r, "app-5").await, 1.0);
    assert_eq!(count(&r, "unknown").await, 1.0);
}
