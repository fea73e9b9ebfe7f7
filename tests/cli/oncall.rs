//! What the on-call engineer reads: `check` says what the running proxy says (one judge),
//! `check --probe` dry-runs every upstream handshake, and the log has one line per failure,
//! no per-handshake noise, every reload trigger and what a reload changed.

use super::*;
use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};

/// A date `days` from today (UTC), as TOML wants it.
fn date_in(days: i64) -> String {
    (time::OffsetDateTime::now_utc().date() + time::Duration::days(days)).to_string()
}

/// An HTTPS upstream block `name` for `addr`, verified by certs/NAME-ca.pem, optionally pinned.
fn https_upstream(name: &str, addr: std::net::SocketAddr, pin_set: Option<&str>) -> String {
    let pins = pin_set.map_or(String::new(), |p| format!("pin_set = \"{p}\"\n"));
    format!(
        "[upstream.{name}]\nurl = \"https://{addr}\"\nca = \"certs/{name}-ca.pem\"\nserver_name = \"pay.test\"\n{pins}\n"
    )
}

#[tokio::test]
async fn check_and_status_say_the_same_about_expired_and_expiring_pin_sets_of_either_kind() {
    let pki = Pki::new("judge");
    let leaf = pki.leaf(&["localhost"]);
    let dir = TestDir::new();
    dir.write_cert("api", &leaf);
    // Expired two days ago: inside the 2-day grace for the last hours of the day.
    dir.write_pin_set(
        "app",
        &date_in(-2),
        "enforce",
        &[
            (&leaf.pin, "current", "key"),
            (&backup_pin(1), "backup", "key"),
        ],
    );
    // An upstream pin set inside its 60-day warning window: `check` used to say nothing.
    dir.write_pin_set(
        "psp",
        &date_in(30),
        "enforce",
        &[(&backup_pin(2), "psp", "ca")],
    );
    let psp = Pki::new("psp");
    dir.write("certs/pay-ca.pem", psp.root_pem());
    let extra = format!(
        "[[route]]\npath_prefix = \"/\"\nupstream = \"pay\"\n\n{}",
        https_upstream("pay", "127.0.0.1:9".parse().expect("addr"), Some("psp"))
    );
    dir.write("config.toml", basic_config("api", &["app"], &extra));

    let (code, text) = run_check(&dir, &[]);
    assert_eq!(code, 0, "warnings only:\n{text}");
    assert!(
        text.contains("pin set \"app\" expired 2 days ago, still live for 0 days of grace"),
        "{text}"
    );
    assert!(
        text.contains("pin set \"psp\" expires on")
            && (text.contains("(in 29 days)") || text.contains("(in 30 days)")),
        "{text}"
    );
    assert!(!text.contains("(-2 days)"), "{text}");
    // Serial and not_after of each served certificate, to confirm a renewal before serving it.
    let (_, x) = x509_parser::parse_x509_certificate(&leaf.cert_der).expect("leaf");
    let serial = x.tbs_certificate.raw_serial_as_string();
    assert!(
        text.lines()
            .any(|l| l.contains("leaf") && l.contains(&serial) && l.contains("not_after")),
        "serial {serial} in:\n{text}"
    );

    // The running proxy says the same sentences in /status.
    let r = start_proxy(&dir.config_path()).await.expect("starts");
    let (_, body) = admin_get(r.admin, "/status").await;
    let st: serde_json::Value = serde_json::from_str(&body).expect("json");
    for set in st["pin_sets"].as_array().expect("pin_sets") {
        let message = set["message"].as_str().expect("a message for both sets");
        assert!(
            text.contains(message),
            "check says what /status says: {message:?}\n{text}"
        );
    }
    assert_eq!(st["pin_sets"][0]["live"], true, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_probe_dry_runs_every_upstream_handshake_with_its_trust_and_pins() {
    let psp = Pki::with_intermediate("psp");
    let leaf = psp.leaf(&["pay.test"]);
    let good = TestUpstream::tls(&leaf, UpstreamMode::Echo).await;
    let other = Pki::new("impostor");
    let untrusted = TestUpstream::tls(&other.leaf(&["pay.test"]), UpstreamMode::Echo).await;

    let pki = Pki::new("probe");
    let served = pki.leaf(&["localhost"]);
    let dir = TestDir::new();
    dir.write_pinned("api", &served);
    let inter = psp.intermediate_pin.clone().expect("intermediate");
    dir.write_pin_set(
        "psp",
        "2099-01-01",
        "enforce",
        &[(&inter, "psp intermediate", "ca")],
    );
    dir.write_pin_set(
        "wrong",
        "2099-01-01",
        "enforce",
        &[(&backup_pin(5), "not it", "ca")],
    );
    for name in ["good", "mismatch", "untrusted"] {
        dir.write(&format!("certs/{name}-ca.pem"), psp.root_pem());
    }
    let extra = format!(
        "[[route]]\npath_prefix = \"/\"\nupstream = \"good\"\n\n{}{}{}",
        https_upstream("good", good.addr, Some("psp")),
        https_upstream("mismatch", good.addr, Some("wrong")),
        https_upstream("untrusted", untrusted.addr, Some("psp")),
    );
    dir.write("config.toml", basic_config("api", &["app"], &extra));

    // Without --probe nothing connects.
    let (code, _) = run_check(&dir, &[]);
    assert_eq!(code, 0);
    assert_eq!(good.hits() + untrusted.hits(), 0);

    let (code, text) = tokio::task::spawn_blocking(move || {
        let r = run_check(&dir, &["--probe"]);
        drop(dir);
        r
    })
    .await
    .expect("join");
    assert_eq!(code, 1, "a failed probe fails the check:\n{text}");
    let line = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("probe upstream {name}:")))
            .unwrap_or_else(|| panic!("no probe line for {name}:\n{text}"))
            .to_string()
    };
    let ok = line("good");
    assert!(
        ok.contains(": ok: ") && ok.contains("matches pin \"psp intermediate\""),
        "{ok}"
    );
    let mismatch = line("mismatch");
    assert!(
        mismatch.contains("FAILED")
            && mismatch.contains("the verified path matches no pin of pin set \"wrong\""),
        "{mismatch}"
    );
    assert!(!mismatch.contains("Other("), "no Debug form: {mismatch}");
    let unverified = line("untrusted");
    assert!(
        unverified.contains("FAILED") && unverified.contains("handshake failed"),
        "{unverified}"
    );
    assert_eq!(good.hits() + untrusted.hits(), 0, "a handshake, no request");
}

/// A JSON-logging proxy in front of upstream `up` (HTTPS, pinned by set "psp" = `pins`).
fn logging_proxy(up: std::net::SocketAddr, ca_pem: &str, pins: &[&str]) -> (Pki, TestDir) {
    let pki = Pki::new("logs");
    let leaf = pki.leaf(&["localhost"]);
    let TestProxy { dir, pki, .. } = TestProxy::builder()
        .serve(pki, leaf)
        .json_log()
        .config(&format!(
            "[[route]]\npath_prefix = \"/\"\nupstream = \"pay\"\n\n{}",
            https_upstream("pay", up, Some("psp"))
        ))
        .build();
    dir.write("certs/pay-ca.pem", ca_pem);
    let entries: Vec<(&str, &str, &str)> = pins.iter().map(|p| (*p, "psp", "key")).collect();
    dir.write_pin_set("psp", "2099-01-01", "enforce", &entries);
    (pki, dir)
}

fn warnings_and_errors(log: &str) -> Vec<serde_json::Value> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["level"] == "WARN" || v["level"] == "ERROR")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_upstream_handshake_logs_one_line_with_its_cause_as_text() {
    let psp = Pki::new("psp");
    let up = TestUpstream::tls(&psp.leaf(&["pay.test"]), UpstreamMode::Echo).await;
    let (pki, dir) = logging_proxy(up.addr, &psp.root_pem(), &[&backup_pin(9)]);
    let mut proc = Proc::start(&dir);
    let addr = proc.wait_addr("listening");
    let reply = Client::new(addr, &pki.root_pem())
        .get("localhost", "/pay")
        .await
        .expect("request");
    assert_eq!(reply.status, 502);
    let line = proc.wait_for("upstream request failed");
    let cause = line["cause"].as_str().expect("cause is text");
    assert!(
        cause.contains("the verified path matches no pin of pin set \"psp\""),
        "{cause}"
    );
    assert!(!cause.contains("Other("), "no Debug form: {cause}");
    let log = proc.rest_of_log();
    let loud = warnings_and_errors(&log);
    assert_eq!(loud.len(), 1, "exactly one line for one failure:\n{log}");
}

/// `n` handshakes that send an IP address as SNI (openssl sends what it is told).
fn ip_sni_handshakes(addr: std::net::SocketAddr, n: usize) {
    for _ in 0..n {
        let out = Command::new("openssl")
            .args(["s_client", "-connect", &addr.to_string()])
            .args(["-servername", "127.0.0.1", "-verify_quiet"])
            .stdin(Stdio::null())
            .output()
            .expect("openssl");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("BEGIN CERTIFICATE")
                || out.status.success(),
            "handshake completed"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_ip_address_sni_handshakes_writes_no_log_line_per_handshake() {
    if !have_tool("openssl") {
        return;
    }
    let up = TestUpstream::plain(UpstreamMode::Echo).await;
    let (_, _, dir) = json_proxy(up.addr, "");
    // What an explicit RUST_LOG with rustls warnings shows: one warning per handshake.
    let mut noisy = Proc::start_with_env(&dir, &[("RUST_LOG", "info,rustls=warn")]);
    let addr = noisy.wait_addr("listening");
    let noisy_log = tokio::task::spawn_blocking(move || {
        ip_sni_handshakes(addr, 5);
        noisy.rest_of_log()
    })
    .await
    .expect("join");
    let per_handshake = warnings_and_errors(&noisy_log).len();
    assert!(
        per_handshake >= 5,
        "rustls warns per IP-SNI handshake:\n{noisy_log}"
    );

    // The default filter: no line at all.
    let mut quiet = Proc::start(&dir);
    let addr = quiet.wait_addr("listening");
    let quiet_log = tokio::task::spawn_blocking(move || {
        ip_sni_handshakes(addr, 50);
        quiet.rest_of_log()
    })
    .await
    .expect("join");
    assert_eq!(
        warnings_and_errors(&quiet_log),
        Vec::<serde_json::Value>::new(),
        "{quiet_log}"
    );
    assert!(!quiet_log.contains("SNI"), "{quiet_log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_lists_what_is_served_and_reloads_say_what_changed_even_when_nothing_did() {
    let up = TestUpstream::plain(UpstreamMode::Echo).await;
    let (pki, leaf, dir) = json_proxy(up.addr, "");
    let mut proc = Proc::start(&dir);
    let served = proc.wait_for("serving certificate");
    assert_eq!(served["listener"], "mobile");
    assert_eq!(served["pin"], format!("sha256/{}", leaf.pin).as_str());
    assert!(served["not_after"].is_string() && served["serial"].is_string());
    let matches = proc.wait_for("pin set matches");
    // Lists are JSON arrays in JSON logs.
    assert_eq!(
        matches["matched"],
        serde_json::json!(["\"current\" on the leaf"]),
        "{matches}"
    );
    let _ = proc.wait_addr("listening");
    proc.signal("HUP");
    let noop = proc.wait_for("reload: files match the running config; nothing to do");
    assert_eq!(noop["trigger"], "sighup", "{noop}");

    dir.write_pin_set(
        "app",
        "2099-01-01",
        "enforce",
        &[
            (&leaf.pin, "current", "key"),
            (&backup_pin(1), "backup", "key"),
            (&backup_pin(2), "second backup", "key"),
        ],
    );
    proc.signal("HUP");
    let done = proc.wait_for("config reloaded");
    assert_eq!(
        done["files"],
        serde_json::json!(["pins/app.toml"]),
        "{done}"
    );
    assert_eq!(done["routes"], serde_json::json!([]));
    assert_eq!(done["certificates"], serde_json::json!([]));

    // A renewal on the same key is told apart from a rotation.
    let key = rcgen::KeyPair::from_pem(&leaf.key_pem).expect("key");
    dir.write_cert("api", &pki.leaf_with_key(&["localhost"], key, 120));
    proc.signal("HUP");
    let renewed = proc.wait_for("config reloaded");
    assert_eq!(
        renewed["files"],
        serde_json::json!(["certs/api.pem"]),
        "{renewed}"
    );
    assert_eq!(
        renewed["certificates"],
        serde_json::json!(["mobile listener[0].cert[0] (renewal)"]),
        "{renewed}"
    );
}

/// One version directory of a Kubernetes ConfigMap/Secret volume.
fn k8s_version(root: &std::path::Path, version: &str, config: &str, leaf: &Issued) {
    let v = root.join(version);
    std::fs::create_dir_all(v.join("pins")).expect("pins");
    std::fs::create_dir_all(v.join("certs")).expect("certs");
    std::fs::write(v.join("config.toml"), config).expect("config");
    let pins = format!(
        "description = \"k8s\"\nexpires = 2099-01-01\nmode = \"enforce\"\n\
         [[pin]]\nsha256 = \"{}\"\nlabel = \"current\"\nkind = \"key\"\n\
         [[pin]]\nsha256 = \"{}\"\nlabel = \"backup\"\nkind = \"key\"\n",
        leaf.pin,
        backup_pin(1)
    );
    std::fs::write(v.join("pins/app.toml"), pins).expect("pin set");
    std::fs::write(v.join("certs/api.pem"), leaf.chain_pem()).expect("chain");
    std::fs::write(v.join("certs/api.key"), &leaf.key_pem).expect("key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_data_swaps_log_pinproxy_lines_only() {
    let up = TestUpstream::plain(UpstreamMode::Echo).await;
    let pki = Pki::new("k8s-logs");
    let leaf = pki.leaf(&["localhost"]);
    let tmp = tempfile::tempdir().expect("temp dir");
    let root = tmp.path();
    let config = |prefix: &str| {
        basic_config(
            "api",
            &["app"],
            &format!(
                "[[route]]\npath_prefix = \"{prefix}\"\nupstream = \"b\"\n\n[upstream.b]\nurl = \"http://{}\"\n",
                up.addr
            ),
        )
        .replace("[log]\n", "[log]\nformat = \"json\"\n")
    };
    k8s_version(root, "..2026_a", &config("/a"), &leaf);
    std::os::unix::fs::symlink("..2026_a", root.join("..data")).expect("..data");
    for name in ["config.toml", "pins", "certs"] {
        std::os::unix::fs::symlink(format!("..data/{name}"), root.join(name)).expect("link");
    }
    // With RUST_LOG=info the watcher library logs "unable to remove watch descriptor from
    // inotify" with its cargo registry path at each swap; the default filter keeps it out.
    let mut proc = Proc::spawn(&root.join("config.toml"), &[]);
    let _ = proc.wait_addr("listening");
    // The watcher is armed before the first trigger is served: a SIGHUP's answer says so.
    proc.signal("HUP");
    let _ = proc.wait_for("reload: files match the running config; nothing to do");

    // What the kubelet does: a new version, `..data` renamed over, the old version deleted.
    for (new, old, prefix, gone) in [
        ("..2026_b", "..2026_a", "/b", "/a"),
        ("..2026_c", "..2026_b", "/c", "/b"),
    ] {
        k8s_version(root, new, &config(prefix), &leaf);
        std::os::unix::fs::symlink(new, root.join("..data_tmp")).expect("..data_tmp");
        std::fs::rename(root.join("..data_tmp"), root.join("..data")).expect("swap");
        std::fs::remove_dir_all(root.join(old)).expect("remove old version");
        let done = proc.wait_for("config reloaded");
        assert_eq!(
            done["routes"],
            serde_json::json!([format!("{prefix} (added)"), format!("{gone} (removed)")]),
            "{done}"
        );
    }
    let log = proc.rest_of_log();
    for line in log.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            v["target"]
                .as_str()
                .is_some_and(|t| t.starts_with("pinproxy")),
            "only pinproxy's own lines by default: {line}"
        );
        assert!(!line.contains(".cargo/registry"), "{line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_reader_that_stops_reading_never_stalls_a_request() {
    let up = TestUpstream::plain(UpstreamMode::Echo).await;
    let (pki, _, dir) = json_proxy(up.addr, "");
    // A small queue, so this run also overflows it: drops are counted, not silent.
    let mut child = bin::command(&dir.config_path(), &[("PINPROXY_LOG_BUFFER_LINES", "500")])
        .spawn()
        .expect("spawn pinproxy");
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
    // Read up to the admin address, then never again: the pipe (64 KiB) fills after a few
    // hundred access-log lines, and a blocking writer would hold every request from then on.
    let mut addrs = Vec::new();
    let mut line = String::new();
    while addrs.len() < 2 {
        line.clear();
        let n = stderr.read_line(&mut line).expect("read log");
        assert!(n > 0, "pinproxy exited before listening");
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
            && (v["message"] == "listening" || v["message"] == "admin listening")
        {
            let addr: std::net::SocketAddr =
                v["addr"].as_str().expect("addr").parse().expect("addr");
            addrs.push(addr);
        }
    }
    let client = Client::new(addrs[0], &pki.root_pem());
    let mut conn = client.connect().await.expect("connect");
    let sent = tokio::time::timeout(Duration::from_secs(60), async {
        for i in 0..2000 {
            let reply = conn
                .send(client::get("localhost", "/x", false))
                .await
                .unwrap_or_else(|e| panic!("request {i}: {e}"));
            assert_eq!(reply.status, 200);
        }
    })
    .await;
    let dropped = scrape(addrs[1], "pinproxy_log_lines_dropped_total", &[]).await;
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        sent.is_ok(),
        "2000 requests (~1 MB of access log) went through while nobody read the log"
    );
    // 2000 lines, at most 500 queued and ~150 in the pipe: the rest were dropped and counted.
    assert!(dropped >= 1000.0, "dropped lines counted: {dropped}");
    drop(stderr);
}
