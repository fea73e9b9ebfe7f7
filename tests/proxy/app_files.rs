//! Pin sets read from the app's own files (`from`, `domain`): an Android network security config
//! and Info.plists (TrustKit, Apple NSPinnedDomains, XML and binary) produced by `pinproxy export`
//! serve and gate exactly like the TOML set they came from; broken files name file and element.

use super::*;

/// `pinproxy export --pin-set SET --format FORMAT --domain localhost`: stdout.
fn export(dir: &TestDir, set: &str, format: &str) -> String {
    let out = bin::with_config(
        dir,
        &[
            "export",
            "--pin-set",
            set,
            "--format",
            format,
            "--domain",
            "localhost",
        ],
    );
    assert!(out.code == 0, "export {format}: {}", out.stderr);
    out.stdout
}

/// The lines of `check` that say which pin of a set matches where, with the set name replaced.
fn match_lines(report: &str, set: &str) -> Vec<String> {
    report
        .lines()
        .filter(|l| l.starts_with("  pin set "))
        .map(|l| l.replace(&format!("pin set {set}:"), "pin set SET:"))
        .collect()
}

/// Makes `set` the listener's only pin set.
fn serve_with(s: &TestProxy, set: &str, up: std::net::SocketAddr) {
    s.dir
        .write("config.toml", basic_config("api", &[set], &route_to(up)));
}

#[tokio::test]
async fn pin_sets_read_from_exported_android_trustkit_and_apple_files_serve_and_gate_like_the_toml()
{
    let up = TestUpstream::plain(UpstreamMode::Echo).await;
    let s = TestProxy::new(&route_to(up.addr));
    let toml = pinproxy::check::check(&s.dir.config_path(), false).await;
    assert!(toml.ok, "{}", toml.text);
    let want = match_lines(&toml.text, "app");
    assert_eq!(want.len(), 1, "{}", toml.text);

    let mut variants = vec![
        (
            "android",
            "app/src/main/res/xml/network_security_config.xml",
        ),
        ("trustkit", "app/ios/TrustKit-Info.plist"),
        ("apple", "app/ios/Info.plist"),
    ];
    for (format, file) in &variants {
        s.dir.write(file, export(&s.dir, "app", format));
    }
    if have_tool("python3") {
        // Xcode ships Info.plist compiled to the binary format.
        let src = s.dir.path().join("app/ios/TrustKit-Info.plist");
        let dst = s.dir.path().join("app/ios/TrustKit-binary.plist");
        let out = std::process::Command::new("python3")
            .args([
                "-c",
                "import plistlib,sys; d=plistlib.load(open(sys.argv[1],'rb')); plistlib.dump(d, open(sys.argv[2],'wb'), fmt=plistlib.FMT_BINARY)",
            ])
            .arg(&src)
            .arg(&dst)
            .output()
            .expect("python3");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            std::fs::read(&dst)
                .expect("binary plist")
                .starts_with(b"bplist00")
        );
        variants.push(("trustkit-binary", "app/ios/TrustKit-binary.plist"));
    }

    let unpinned = s.pki.leaf(&["localhost", "127.0.0.1"]);
    for (format, file) in &variants {
        serves_and_gates(&s, up.addr, format, file, &want, &unpinned).await;
    }
}

/// One app file variant as the pin set's `from`: `check` agrees with the TOML set, the proxy
/// serves the shipped key, and a certificate on another key is refused.
async fn serves_and_gates(
    s: &TestProxy,
    up: std::net::SocketAddr,
    format: &str,
    file: &str,
    want: &[String],
    unpinned: &Issued,
) {
    let set = format!("from-{format}");
    s.dir.write(
        &format!("pins/{set}.toml"),
        format!("description = \"read from the app\"\nfrom = \"{file}\"\ndomain = \"localhost\"\n"),
    );
    serve_with(s, &set, up);
    let report = pinproxy::check::check(&s.dir.config_path(), false).await;
    assert!(report.ok, "{format}: {}", report.text);
    assert!(
        report
            .text
            .contains(&format!("pin set {set}: pins, kinds and expiry from"))
            && report.text.contains(file),
        "check says where the pins come from: {}",
        report.text
    );
    if format == "trustkit-binary" {
        // No comments in a binary plist: the pins match, under positional labels.
        assert!(
            report
                .text
                .contains("\"TSKPublicKeyHashes[0]\" on the leaf"),
            "{}",
            report.text
        );
    } else {
        assert_eq!(
            match_lines(&report.text, &set),
            want,
            "{format}: {}",
            report.text
        );
    }

    // Serves: a client pinning the shipped key gets through.
    let r = s.start().await;
    let reply = s
        .client(&r)
        .pin(&[&s.leaf.pin])
        .get("localhost", "/from-app")
        .await
        .expect("pinned request");
    assert_eq!(reply.status, 200, "{format}");
    let (_, status) = admin_get(r.admin, "/status").await;
    let status = json(&status);
    let entry = status["pin_sets"]
        .as_array()
        .expect("pin_sets")
        .iter()
        .find(|p| p["name"] == set.as_str())
        .expect("the set in /status")
        .clone();
    assert!(
        entry["from"]["file"]
            .as_str()
            .is_some_and(|f| f.ends_with(file)),
        "{entry}"
    );
    let expires = if format.starts_with("apple") {
        "9999-12-31"
    } else {
        "2099-01-01"
    };
    assert_eq!(
        entry["expires"], expires,
        "{format}: expiry from the app file"
    );
    r.shutdown().await;

    // Gates: a certificate on a key the app file does not hold is refused, as with TOML.
    s.dir.write_cert("api", unpinned);
    let refused = pinproxy::check::check(&s.dir.config_path(), false).await;
    assert!(!refused.ok, "{format}: {}", refused.text);
    assert!(
        refused
            .text
            .contains(&format!("no pin of pin set \"{set}\"")),
        "{format}: {}",
        refused.text
    );
    assert!(
        start_proxy(&s.dir.config_path()).await.is_err(),
        "{format}: run refuses"
    );
    s.dir.write_cert("api", &s.leaf);
}

#[tokio::test]
async fn an_app_file_without_the_domain_or_with_a_bad_pin_is_refused_naming_file_and_element() {
    let s = TestProxy::new(
        "[[route]]\npath_prefix = \"/\"\nupstream = \"b\"\n[upstream.b]\nurl = \"http://127.0.0.1:9\"\n",
    );
    let nsc = |domain: &str, second: &str| {
        format!(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<network-security-config>\n  <domain-config>\n    \
             <domain includeSubdomains=\"false\">{domain}</domain>\n    <pin-set>\n      \
             <pin digest=\"SHA-256\">{}</pin>\n      <pin digest=\"SHA-256\">{second}</pin>\n    \
             </pin-set>\n  </domain-config>\n</network-security-config>\n",
            s.leaf.pin
        )
    };
    s.dir.write(
        "pins/app.toml",
        "from = \"app/nsc.xml\"\ndomain = \"localhost\"\n",
    );

    s.dir
        .write("app/nsc.xml", nsc("api.example.com", &backup_pin(1)));
    let r = pinproxy::check::check(&s.dir.config_path(), false).await;
    assert!(!r.ok);
    assert!(
        r.text.contains("app/nsc.xml: no <domain-config> entry covers \"localhost\" (entries for: api.example.com)"),
        "{}",
        r.text
    );

    s.dir.write("app/nsc.xml", nsc("localhost", "not-a-pin"));
    let r = pinproxy::check::check(&s.dir.config_path(), false).await;
    assert!(!r.ok);
    assert!(
        r.text.contains(
            "app/nsc.xml: `network-security-config.domain-config[0].pin-set.pin[1]`: \"not-a-pin\" not standard base64"
        ),
        "{}",
        r.text
    );

    // Hand-written: nested domain-configs, trust anchors beside the pin set, overridePins.
    s.dir.write(
        "app/nsc.xml",
        format!(
            "<network-security-config>\n<domain-config>\n<domain includeSubdomains=\"true\">example.com</domain>\n\
             <pin-set expiration=\"2099-01-01\"><pin digest=\"SHA-256\">{}</pin></pin-set>\n</domain-config>\n\
             <domain-config>\n<domain includeSubdomains=\"true\">localhost</domain>\n\
             <trust-anchors><certificates src=\"system\"/><certificates src=\"user\" overridePins=\"true\"/></trust-anchors>\n\
             <pin-set expiration=\"2099-01-01\"><pin digest=\"SHA-256\">{}</pin><pin digest=\"SHA-256\">{}</pin></pin-set>\n\
             <domain-config><domain>v2.localhost</domain></domain-config>\n</domain-config>\n</network-security-config>\n",
            backup_pin(3),
            s.leaf.pin,
            backup_pin(1)
        ),
    );
    let r = pinproxy::check::check(&s.dir.config_path(), false).await;
    assert!(r.ok, "{}", r.text);
    assert!(
        r.text.contains("warning: ")
            && r.text
                .contains("certificates[1] (line 8): overridePins=\"true\""),
        "{}",
        r.text
    );
    assert!(
        r.text.contains("\"pin[0] (line 9)\" on the leaf"),
        "{}",
        r.text
    );
}

#[test]
fn hostile_app_files_are_refused_by_check_within_bounded_time_and_memory() {
    if !have_tool("prlimit") {
        return;
    }
    let s = TestProxy::new(
        "[[route]]\npath_prefix = \"/\"\nupstream = \"b\"\n[upstream.b]\nurl = \"http://127.0.0.1:9\"\n",
    );
    s.dir.write(
        "pins/app.toml",
        "from = \"app/hostile.plist\"\ndomain = \"localhost\"\n",
    );
    for (what, bytes, limit) in common::hostile::app_files() {
        s.dir.write("app/hostile.plist", bytes);
        let config = s.dir.config_path();
        let started = std::time::Instant::now();
        let out = std::process::Command::new("prlimit")
            .arg("--as=2147483648")
            .arg(env!("CARGO_BIN_EXE_pinproxy"))
            .args(["check", "-c"])
            .arg(&config)
            .output()
            .expect("prlimit pinproxy check");
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{what}: {text}");
        assert!(
            text.contains("app/hostile.plist")
                && text.contains(&format!("over the app file limit of {limit}")),
            "{what}: {text}"
        );
        assert!(started.elapsed() < Duration::from_secs(20), "{what}");
    }
}

#[tokio::test]
async fn a_hostile_app_file_on_reload_is_refused_and_the_proxy_keeps_serving_the_old_pins() {
    let up = TestUpstream::plain(UpstreamMode::Echo).await;
    let s = TestProxy::new(&route_to(up.addr));
    s.dir
        .write("app/Info.plist", export(&s.dir, "app", "trustkit"));
    s.dir.write(
        "pins/from-app.toml",
        "description = \"read from the app\"\nfrom = \"app/Info.plist\"\ndomain = \"localhost\"\n",
    );
    serve_with(&s, "from-app", up.addr);
    let r = s.start().await;
    let get = async || {
        s.client(&r)
            .pin(&[&s.leaf.pin])
            .get("localhost", "/x")
            .await
            .expect("pinned request")
            .status
    };
    assert_eq!(get().await, 200);
    for (n, (what, bytes, limit)) in common::hostile::app_files().into_iter().enumerate() {
        common::reload::write_atomic(&s.dir.path().join("app/Info.plist"), bytes);
        r.reload();
        let want = (n + 1) as f64;
        common::eventually(common::reload::RELOAD_WAIT, || async move {
            (common::reload::failures(r.admin).await >= want).then_some(())
        })
        .await;
        let status = common::reload::reload_status(r.admin).await.to_string();
        assert!(
            status.contains("app/Info.plist") && status.contains(limit),
            "{what}: {status}"
        );
        assert_eq!(get().await, 200, "{what}: the old pin sets keep serving");
    }
}
