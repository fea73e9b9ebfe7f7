//! The binary as an operator runs it: `check` and `run` refuse every broken pin rule naming
//! the file and field; SIGTERM drains in-flight requests; the access log keeps secrets out.

mod common;

use std::time::Duration;

use common::bin::Proc;
use common::*;
use rcgen::PublicKeyData as _;

/// A directory with a leaf for localhost served under pin set "app" = `pins`.
fn setup(pki: &Pki, leaf: &Issued, pins: &[(&str, &str, &str)], extra: &str) -> TestDir {
    let dir = TestDir::new();
    dir.write_cert("api", leaf);
    dir.write_pin_set("app", "2099-01-01", "enforce", pins);
    let route = "[[route]]\npath_prefix = \"/\"\nupstream = \"backend\"\n\n[upstream.backend]\nurl = \"http://127.0.0.1:9\"\n";
    dir.write(
        "config.toml",
        basic_config("api", &["app"], &format!("{extra}\n{route}")),
    );
    let _ = pki;
    dir
}

/// Runs `pinproxy check ARGS -c DIR/config.toml`: (exit code, stdout + stderr).
fn run_check(dir: &TestDir, args: &[&str]) -> (i32, String) {
    let run = bin::with_config(dir, &[&["check"], args].concat());
    (run.code, run.text())
}

/// Runs `pinproxy check -c DIR/config.toml`: (exit code, stdout + stderr).
fn check(dir: &TestDir) -> (i32, String) {
    run_check(dir, &[])
}

/// `run` must refuse to start: exit 1 before binding, with the same message.
fn run_refuses(dir: &TestDir, needle: &str) {
    let run = bin::with_config(dir, &["run"]);
    let err = run.stderr;
    assert_eq!(run.code, 1, "run must refuse: {err}");
    assert!(err.contains(needle), "run's error names {needle}: {err}");
}

fn assert_refused(dir: &TestDir, needles: &[&str]) {
    let (code, text) = check(dir);
    assert_eq!(code, 1, "check must fail:\n{text}");
    for n in needles {
        assert!(text.contains(n), "expected {n:?} in:\n{text}");
    }
    run_refuses(dir, needles[0]);
}

/// A leaf for localhost pinned by "app" with its key and a backup, and `extra` config.
fn pinned(name: &str, extra: &str) -> (Pki, Issued, TestDir) {
    let pki = Pki::new(name);
    let leaf = pki.leaf(&["localhost"]);
    let dir = setup(
        &pki,
        &leaf,
        &[
            (&leaf.pin, "current", "key"),
            (&backup_pin(1), "backup", "key"),
        ],
        extra,
    );
    (pki, leaf, dir)
}

/// Replaces `from` with `to` in the file `rel` of `dir`.
fn edit(dir: &TestDir, rel: &str, from: &str, to: &str) {
    let text = std::fs::read_to_string(dir.path().join(rel))
        .expect("read")
        .replace(from, to);
    dir.write(rel, text);
}

#[test]
fn check_passes_a_good_config_and_says_which_pin_matches_where() {
    let pki = Pki::new("ok");
    let leaf = pki.leaf(&["localhost"]);
    let dir = setup(
        &pki,
        &leaf,
        &[
            (&leaf.pin, "current key", "key"),
            (&backup_pin(1), "backup", "key"),
        ],
        "",
    );
    let (code, text) = check(&dir);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("\"current key\" on the leaf"), "{text}");
    assert!(text.contains(&format!("sha256/{}", leaf.pin)), "{text}");
}

#[test]
fn check_warns_when_a_key_file_is_readable_by_the_group_or_everyone() {
    use std::os::unix::fs::PermissionsExt as _;
    let (_, _, dir) = pinned("mode", "");
    let key = dir.path().join("certs/api.key");
    for (mode, warned) in [
        (0o600, None),
        (0o640, Some("the group")),
        (0o644, Some("the group and everyone")),
    ] {
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(mode)).expect("chmod");
        let (code, text) = check(&dir);
        assert_eq!(code, 0, "a warning, not an error:\n{text}");
        match warned {
            None => assert!(!text.contains("readable by"), "{mode:o}: {text}"),
            Some(who) => assert!(
                text.contains(&format!(
                    "certs/api.key is readable by {who} (mode 0{mode:o})"
                )) && text.contains("listener[0].cert[0].key"),
                "{mode:o}: {text}"
            ),
        }
    }
}

#[test]
fn a_served_key_missing_from_a_live_pin_set_is_refused() {
    let pki = Pki::new("unpinned");
    let leaf = pki.leaf(&["localhost"]);
    let dir = setup(
        &pki,
        &leaf,
        &[
            (&backup_pin(1), "old key", "key"),
            (&backup_pin(2), "backup", "key"),
        ],
        "",
    );
    assert_refused(
        &dir,
        &[
            "listener[0].cert[0].chain",
            "config.toml",
            "pin set \"app\"",
            &leaf.pin,
            "renew on the same key, or switch to a backup that shipped in the set (\"old key\", \"backup\")",
            "not what the installed apps pin",
        ],
    );
    let (_, text) = check(&dir);
    assert!(
        !text.contains("or pin this key"),
        "the hint must not suggest pinning the served key: {text}"
    );
}

#[test]
fn a_pin_set_without_a_backup_pin_is_refused() {
    let pki = Pki::new("nobackup");
    let leaf = pki.leaf(&["localhost"]);
    let dir = setup(&pki, &leaf, &[(&leaf.pin, "current", "key")], "");
    assert_refused(&dir, &["app.toml", "`pin`", "backup"]);
}

#[test]
fn placeholder_and_malformed_pins_are_refused() {
    let pki = Pki::new("placeholder");
    let leaf = pki.leaf(&["localhost"]);
    let dir = setup(
        &pki,
        &leaf,
        &[
            (&leaf.pin, "current", "key"),
            (
                "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
                "todo",
                "key",
            ),
        ],
        "",
    );
    assert_refused(&dir, &["app.toml", "pin[1].sha256", "placeholder"]);
    let dir = setup(
        &pki,
        &leaf,
        &[(&leaf.pin, "current", "key"), ("c2hvcnQ=", "short", "key")],
        "",
    );
    assert_refused(&dir, &["app.toml", "pin[1].sha256", "32"]);
}

#[test]
fn a_pin_whose_source_hashes_to_another_value_is_refused() {
    let pki = Pki::new("source");
    let leaf = pki.leaf(&["localhost"]);
    let backup_key = rcgen::KeyPair::generate().expect("key");
    let csr = rcgen::CertificateParams::new(vec!["backup.test".to_string()])
        .expect("params")
        .serialize_request(&backup_key)
        .expect("csr");
    let real_pin = oracle_pin(&backup_key.subject_public_key_info());
    for (written, ok) in [(backup_pin(4), false), (real_pin.clone(), true)] {
        let dir = setup(&pki, &leaf, &[(&leaf.pin, "current", "key")], "");
        dir.write("keys/backup.csr", csr.pem().expect("pem"));
        let mut set = std::fs::read_to_string(dir.path().join("pins/app.toml")).expect("read");
        set.push_str(&format!(
            "[[pin]]\nsha256 = \"{written}\"\nlabel = \"backup\"\nsource = \"keys/backup.csr\"\n"
        ));
        dir.write("pins/app.toml", set);
        if ok {
            let (code, text) = check(&dir);
            assert_eq!(code, 0, "{text}");
        } else {
            assert_refused(
                &dir,
                &["app.toml", "pin[1].sha256", "keys/backup.csr", &real_pin],
            );
        }
    }
}

#[test]
fn a_key_that_does_not_match_its_certificate_is_refused() {
    let (pki, _, dir) = pinned("mismatch", "");
    let other = pki.leaf(&["localhost"]);
    dir.write("certs/api.key", &other.key_pem);
    assert_refused(
        &dir,
        &["listener[0].cert[0].key", "not the key of the leaf"],
    );
}

#[test]
fn an_expired_leaf_is_refused() {
    let pki = Pki::new("expired");
    let leaf = pki.leaf_valid_days(&["localhost"], -1);
    let dir = setup(
        &pki,
        &leaf,
        &[
            (&leaf.pin, "current", "key"),
            (&backup_pin(1), "backup", "key"),
        ],
        "",
    );
    assert_refused(&dir, &["listener[0].cert[0].chain", "expired"]);
}

#[test]
fn pin_kinds_must_match_where_the_pin_matches_on_the_chain() {
    let pki = Pki::with_intermediate("kinds");
    let leaf = pki.leaf(&["localhost"]);
    let inter = pki.intermediate_pin.clone().expect("intermediate");
    let wrong = setup(
        &pki,
        &leaf,
        &[
            (&leaf.pin, "leaf", "key"),
            (&inter, "issuing CA", "key"),
            (&backup_pin(1), "backup", "key"),
        ],
        "",
    );
    assert_refused(&wrong, &["app.toml", "pin[1].kind", "kind = \"ca\""]);
    let right = setup(
        &pki,
        &leaf,
        &[
            (&inter, "issuing CA", "ca"),
            (&backup_pin(1), "backup", "key"),
        ],
        "",
    );
    let (code, text) = check(&right);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("\"issuing CA\" on the intermediate"),
        "{text}"
    );
}

#[test]
fn unknown_keys_and_bad_values_name_the_dotted_field() {
    let (_, _, dir) = pinned("fields", "[limits]\nidle_timeout = \"soon\"\n");
    assert_refused(&dir, &["config.toml", "limits.idle_timeout"]);
    let (_, _, dir) = pinned("fields", "[limits]\nmax_conections = 5\n");
    assert_refused(&dir, &["config.toml", "max_conections"]);
    let (_, _, dir) = pinned("fields", "");
    edit(
        &dir,
        "config.toml",
        "upstream = \"backend\"",
        "upstream = \"nope\"",
    );
    assert_refused(&dir, &["route[0].upstream", "no [upstream.nope]"]);
}

#[test]
fn proxy_protocol_and_ticket_key_mistakes_name_the_listener_field() {
    let listener = "pin_sets = [\"app\"]\n";
    let with = |extra: &str| {
        let (_, _, dir) = pinned("deploy", "");
        edit(&dir, "config.toml", listener, &format!("{listener}{extra}"));
        dir
    };
    let dir = with("proxy_protocol = true\n");
    assert_refused(
        &dir,
        &[
            "listener[0].proxy_protocol_from",
            "load balancers' addresses",
        ],
    );
    let dir = with("proxy_protocol = true\nproxy_protocol_from = [\"10.0.0.0/8\", \"10.1/33\"]\n");
    assert_refused(&dir, &["listener[0].proxy_protocol_from[1]", "\"10.1/33\""]);
    let dir = with("proxy_protocol_from = [\"10.0.0.0/8\"]\n");
    assert_refused(
        &dir,
        &[
            "listener[0].proxy_protocol_from",
            "without `proxy_protocol = true`",
        ],
    );
    let dir = with("session_ticket_keys = \"secrets/tickets\"\n");
    dir.write("secrets/tickets", [7u8; 48]);
    assert_refused(&dir, &["listener[0].session_ticket_keys", "48 bytes"]);
    let dir = with(
        "proxy_protocol = true\nproxy_protocol_from = [\"10.0.0.0/8\", \"192.0.2.7\", \"2001:db8::/32\"]\nsession_ticket_keys = \"secrets/tickets\"\n",
    );
    let key: Vec<u8> = (0..80u8).map(|i| i.wrapping_mul(97) ^ 0x3c).collect();
    dir.write("secrets/tickets", key);
    let (code, text) = check(&dir);
    assert_eq!(code, 0, "{text}");
}

#[test]
fn a_report_mode_pin_set_cannot_protect_a_listener() {
    let (_, _, dir) = pinned("report", "");
    edit(&dir, "pins/app.toml", "\"enforce\"", "\"report\"");
    assert_refused(&dir, &["listener[0].pin_sets[0]", "report"]);
}

#[test]
fn an_expired_pin_set_is_a_loud_warning_not_an_error() {
    let (_, _, dir) = pinned("oldset", "");
    edit(&dir, "pins/app.toml", "2099-01-01", "2020-01-01");
    let (code, text) = check(&dir);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("warning:") && text.contains("expired") && text.contains("no longer pin"),
        "{text}"
    );
}

fn json_proxy(up: std::net::SocketAddr, limits: &str) -> (Pki, Issued, TestDir) {
    let pki = Pki::new("binary");
    let leaf = pki.leaf(&["localhost"]);
    let TestProxy { dir, pki, leaf } = TestProxy::builder()
        .serve(pki, leaf)
        .json_log()
        .config(&format!("[limits]\n{limits}\n\n{}", route_to(up)))
        .build();
    (pki, leaf, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_an_in_flight_request_and_keeps_secrets_out_of_the_access_log() {
    let up = TestUpstream::plain(UpstreamMode::Delay(Duration::from_millis(1500))).await;
    let (pki, _, dir) = json_proxy(
        up.addr,
        "shutdown_delay = \"300ms\"\nshutdown_grace = \"20s\"",
    );
    let mut proc = Proc::start(&dir);
    let addr = proc.wait_addr("listening");
    let admin = proc.wait_addr("admin listening");
    let client = Client::new(addr, &pki.root_pem());
    let mut conn = client.connect().await.expect("connect");
    let req = http::Request::get("/slow/thing?token=hunter2")
        .header("host", "localhost")
        .header("authorization", "Bearer sekrit-token")
        .header("cookie", "session=sekrit-cookie")
        .header("user-agent", "MyShop/4.2.1 (iPhone; iOS 18.1)")
        .header("x-request-id", "bug-report-1234")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .expect("request");
    let in_flight = tokio::spawn(async move { conn.send(req).await });
    eventually(Duration::from_secs(10), || async {
        (up.hits() == 1).then_some(())
    })
    .await;

    proc.signal("TERM");
    let (code, _) = eventually(Duration::from_secs(5), || async {
        let r = admin_get(admin, "/readyz").await;
        (r.0 == 503).then_some(r)
    })
    .await;
    assert_eq!(code, 503, "readyz turns 503 once shutdown begins");
    let reply = in_flight
        .await
        .expect("join")
        .expect("the in-flight request completes");
    assert_eq!(reply.status, 200);
    let exit = tokio::task::spawn_blocking(move || {
        let code = proc.wait_exit(Duration::from_secs(20));
        (code, proc.rest_of_log())
    })
    .await
    .expect("join");
    assert_eq!(exit.0, Some(0), "clean exit after draining:\n{}", exit.1);
    let log = exit.1;
    let access = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["target"] == "pinproxy::access")
        .unwrap_or_else(|| panic!("no access log line in:\n{log}"));
    assert_eq!(access["path"], "/slow/thing");
    assert_eq!(access["status"], 200);
    assert_eq!(access["method"], "GET");
    assert_eq!(access["route"], "/");
    assert_eq!(access["tls"], "TLSv1.3");
    assert_eq!(access["sni"], "localhost");
    assert_eq!(access["user_agent"], "MyShop/4.2.1 (iPhone; iOS 18.1)");
    assert_eq!(access["version"], "HTTP/1.1");
    assert_eq!(access["request_id"], "bug-report-1234");
    let upstream_ms = access["upstream_ms"]
        .as_f64()
        .expect("upstream_ms is a number");
    let duration_ms = access["duration_ms"]
        .as_f64()
        .expect("duration_ms is a number");
    assert!(
        (1500.0..duration_ms + 0.001).contains(&upstream_ms),
        "the upstream took its 1.5 s, within the request's time: {access}"
    );
    for ms in [duration_ms, upstream_ms] {
        let decimals = ms.to_string().split('.').nth(1).map_or(0, str::len);
        assert!(decimals <= 3, "milliseconds with three decimals: {access}");
    }
    for secret in ["hunter2", "sekrit-token", "sekrit-cookie"] {
        assert!(
            !log.contains(secret),
            "{secret} leaked into the log:\n{log}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_sigterm_exits_at_once() {
    let up = TestUpstream::plain(UpstreamMode::Delay(Duration::from_secs(30))).await;
    let (pki, _, dir) = json_proxy(up.addr, "shutdown_grace = \"60s\"");
    let mut proc = Proc::start(&dir);
    let addr = proc.wait_addr("listening");
    let mut conn = Client::new(addr, &pki.root_pem())
        .connect()
        .await
        .expect("connect");
    let _stuck =
        tokio::spawn(async move { conn.send(client::get("localhost", "/stuck", false)).await });
    eventually(Duration::from_secs(10), || async {
        (up.hits() == 1).then_some(())
    })
    .await;
    proc.signal("TERM");
    let _ = proc.wait_for("shutting down");
    proc.signal("TERM");
    let code = tokio::task::spawn_blocking(move || proc.wait_exit(Duration::from_secs(5)))
        .await
        .expect("join");
    assert_eq!(code, Some(1), "exits at once, not after the 60 s grace");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_drain_the_process_exits_within_100_ms() {
    let up = TestUpstream::plain(UpstreamMode::Echo).await;
    let (pki, _, dir) = json_proxy(up.addr, "shutdown_grace = \"20s\"");
    let mut proc = Proc::start(&dir);
    let addr = proc.wait_addr("listening");
    // A pooled upstream connection and a finished client connection: what real traffic leaves.
    let reply = Client::new(addr, &pki.root_pem())
        .get("localhost", "/warm")
        .await
        .expect("request");
    assert_eq!(reply.status, 200);
    assert_exits_within_100_ms_of_the_drain(proc).await;
}

/// Sends SIGTERM and asserts a clean exit within 100 ms of "all connections finished".
async fn assert_exits_within_100_ms_of_the_drain(mut proc: Proc) {
    proc.signal("TERM");
    let (drained, code) = tokio::task::spawn_blocking(move || {
        let _ = proc.wait_for("all connections finished");
        let drained = std::time::Instant::now();
        let code = proc.wait_exit(Duration::from_secs(10));
        (drained.elapsed(), code)
    })
    .await
    .expect("join");
    assert_eq!(code, Some(0));
    assert!(
        drained < Duration::from_millis(100),
        "exited {drained:?} after the drain finished"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_still_settling_does_not_hold_the_exit() {
    let up = TestUpstream::plain(UpstreamMode::Echo).await;
    let (pki, leaf, dir) = json_proxy(up.addr, "shutdown_grace = \"20s\"");
    let next = pki.leaf(&["localhost"]);
    dir.write_pin_set(
        "app",
        "2099-01-01",
        "enforce",
        &[
            (&leaf.pin, "current", "key"),
            (&next.pin, "next", "key"),
            (&backup_pin(1), "backup", "key"),
        ],
    );
    let mut proc = Proc::start(&dir);
    let _ = proc.wait_for("listening");
    // The next certificate, whose key never follows: the reload waits for the pair on a
    // blocking thread.
    dir.write("certs/api.pem", next.chain_pem());
    proc.signal("HUP");
    let _ = proc
        .wait_for("a certificate and its key do not match (yet); waiting for the pair to settle");
    assert_exits_within_100_ms_of_the_drain(proc).await;
}

#[path = "cli/oncall.rs"]
mod oncall;
/// The frozen digest computed independently: SHA-256 over sorted "kind base64\n" lines.
fn oracle_digest(pins: &[(&str, &str)]) -> String {
    use sha2::Digest as _;
    let mut lines: Vec<String> = pins.iter().map(|(k, p)| format!("{k} {p}\n")).collect();
    lines.sort();
    let hash = sha2::Sha256::digest(lines.concat().as_bytes());
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

#[test]
fn export_freeze_records_the_digest_and_a_changed_frozen_set_is_refused_by_check_and_run() {
    let (_pki, leaf, dir) = pinned("frozen", "");
    let pins_file = "pins/app.toml";
    let original = std::fs::read_to_string(dir.path().join(pins_file)).expect("pins");
    dir.write(
        pins_file,
        format!("# app 4.2, shipped to the stores\n{original}"),
    );
    let backup = backup_pin(1);
    let digest = oracle_digest(&[("key", &leaf.pin), ("key", &backup)]);

    let freeze = || {
        let args = ["export", "--pin-set", "app", "--format", "android"];
        bin::with_config(
            &dir,
            &[&args[..], &["--domain", "localhost", "--freeze"]].concat(),
        )
    };
    let out = freeze();
    let (stdout, stderr) = (&out.stdout, &out.stderr);
    assert!(out.code == 0, "{stderr}");
    assert!(
        stdout.contains(&format!("frozen {digest}")),
        "the exported file records the digest: {stdout}"
    );
    assert!(stderr.contains("froze pin set \"app\""), "{stderr}");
    let frozen = std::fs::read_to_string(dir.path().join(pins_file)).expect("pins");
    assert!(
        frozen.starts_with("# app 4.2, shipped to the stores\n"),
        "comments kept: {frozen}"
    );
    assert!(
        frozen.contains(&format!("frozen = \"{digest}\"")),
        "{frozen}"
    );
    assert_eq!(
        frozen.matches("[[pin]]").count(),
        2,
        "pins untouched: {frozen}"
    );
    assert!(freeze().code == 0, "freezing again is a no-op");
    assert_eq!(
        std::fs::read_to_string(dir.path().join(pins_file)).expect("pins"),
        frozen
    );

    let (code, text) = check(&dir);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains(&format!("pin set app: frozen {digest}")),
        "{text}"
    );

    // The hint of the old error message: add another key to the shipped set.
    dir.write(
        pins_file,
        format!(
            "{frozen}[[pin]]\nsha256 = \"{}\"\nlabel = \"added\"\n",
            backup_pin(5)
        ),
    );
    assert_refused(
        &dir,
        &[
            "pins/app.toml: `frozen`",
            &format!("pin set app shipped with digest {digest}"),
            "a shipped set cannot change",
            "make pins/app-next.toml for the next release",
        ],
    );
    dir.write(pins_file, &frozen);

    // A pin's kind is part of what shipped too; its label and the expiry are not.
    edit(
        &dir,
        pins_file,
        "kind = \"key\"\n[[pin]]",
        "kind = \"ca\"\n[[pin]]",
    );
    let (code, text) = check(&dir);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("shipped with digest"), "{text}");
    dir.write(pins_file, &frozen);
    edit(&dir, pins_file, "2099-01-01", "2099-06-30");
    edit(
        &dir,
        pins_file,
        "label = \"backup\"",
        "label = \"offline backup\"",
    );
    let (code, text) = check(&dir);
    assert_eq!(code, 0, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_tokens_are_logged_once_a_minute_per_result_and_never_verbatim() {
    let up = TestUpstream::plain(UpstreamMode::Echo).await;
    let (pki, _, dir) = json_proxy(up.addr, "");
    let digest: String = {
        use sha2::Digest as _;
        sha2::Sha256::digest(b"the-real-app-key")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    let config = std::fs::read_to_string(dir.config_path()).expect("config");
    dir.write(
        "config.toml",
        config.replace(
            "upstream = \"backend\"\n",
            "upstream = \"backend\"\nauth = \"appkey\"\n",
        ) + &format!("\n[auth.appkey]\nkind = \"api_key\"\nsha256 = [\"{digest}\"]\n"),
    );
    let mut proc = Proc::start(&dir);
    let addr = proc.wait_addr("listening");
    let client = Client::new(addr, &pki.root_pem());
    for _ in 0..3 {
        let mut conn = client.connect().await.expect("connect");
        let req = http::Request::get("/")
            .header("host", "localhost")
            .header("x-api-key", "sekrit-guessed-key")
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .expect("request");
        assert_eq!(conn.send(req).await.expect("reply").status, 403);
    }
    let first = tokio::task::spawn_blocking(move || {
        let line = proc.wait_for("token check failed");
        (proc, line)
    })
    .await
    .expect("join");
    let (mut proc, line) = first;
    assert_eq!(line["route"], "/");
    assert_eq!(line["policy"], "appkey");
    assert_eq!(line["result"], "unknown_key");
    assert_eq!(line["mode"], "enforce");
    assert_eq!(line["suppressed"], 0);
    proc.signal("TERM");
    let log = tokio::task::spawn_blocking(move || {
        proc.wait_exit(Duration::from_secs(20));
        proc.rest_of_log()
    })
    .await
    .expect("join");
    assert_eq!(
        log.matches("token check failed").count(),
        1,
        "the other two are held back:\n{log}"
    );
    assert!(!log.contains("sekrit-guessed-key"), "key leaked:\n{log}");
    assert_eq!(up.hits(), 0);
}

#[test]
fn app_version_sources_and_ranges_are_validated_naming_the_field() {
    let cases = [
        (
            "app_version = { header = \"X App Version\" }",
            "`listener[0].app_version.header`: \"X App Version\" is not a header name",
        ),
        (
            "app_version = { user_agent = \"MyShop/\\\\S+\" }",
            "`listener[0].app_version.user_agent`: \"MyShop/\\S+\" has no capture group",
        ),
        (
            "app_version = { header = \"X-App-Version\", user_agent = \"MyShop/(\\\\S+)\" }",
            "`listener[0].app_version`: give exactly one of `header`",
        ),
    ];
    for (line, needle) in cases {
        let (_pki, _leaf, dir) = pinned("appversion", "");
        edit(
            &dir,
            "config.toml",
            "pin_sets = [\"app\"]\n",
            &format!("pin_sets = [\"app\"]\n{line}\n"),
        );
        assert_refused(&dir, &[needle]);
    }

    let (_pki, _leaf, dir) = pinned("appversion", "");
    edit(
        &dir,
        "config.toml",
        "pin_sets = [\"app\"]\n",
        "pin_sets = [\"app\"]\napp_version = { header = \"X-App-Version\" }\n",
    );
    let (code, text) = check(&dir);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("none of this listener's pin sets has `app_versions`"),
        "{text}"
    );
    edit(
        &dir,
        "pins/app.toml",
        "mode = ",
        "app_versions = \"4.x.y\"\nmode = ",
    );
    assert_refused(
        &dir,
        &["pins/app.toml: `app_versions`: \"4.x.y\" is not a version range"],
    );
}
