//! `pinproxy export` from a config directory: the served chain is read from disk, the domain is
//! defaulted or asked for, refusals exit 1. curl itself checks the exported `--pinnedpubkey`.

use std::path::Path;
use std::process::Command;

use crate::support::{Alg, Pki, have, parse_plist, parse_xml, pin_set, pinproxy, site, write};

const BACKUP: &str = "ZHWbyPsLHYRcwbW4Jmib8fxi16zaENPKDS1DCV4tSqM=";

/// One listener serving `pki`'s chain for api.example.com, naming pin set `app`.
fn one_listener(d: &Path, pki: &Pki) {
    write(d, "certs/api.pem", pki.chain_pem());
    site(
        d,
        &[(
            "mobile",
            &["app"],
            &[(&["api.example.com"], "certs/api.pem")],
        )],
    );
}

#[test]
fn export_reads_the_served_chain_and_renders_every_format_with_its_leaf_pin() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let d = tmp.path();
    let pki = Pki::new(Alg::P256, &["api.example.com"]);
    one_listener(d, &pki);
    pin_set(
        d,
        "app",
        "2027-06-30",
        &[(&pki.leaf_pin, "key", "current"), (BACKUP, "key", "backup")],
    );
    for format in ["android", "trustkit", "apple", "okhttp", "curl", "envoy"] {
        let run = pinproxy(d, &["export", "--pin-set", "app", "--format", format]);
        assert_eq!(run.code, 0, "{format}: {}", run.stderr);
        assert!(
            run.stdout.contains(&pki.leaf_pin),
            "{format}:\n{}",
            run.stdout
        );
        assert!(run.stdout.contains(BACKUP), "{format}:\n{}", run.stdout);
        assert!(run.stdout.contains("api.example.com") || format == "curl" || format == "envoy");
    }
    let apple = pinproxy(d, &["export", "--pin-set", "app", "--format", "apple"]);
    assert!(
        apple
            .stderr
            .contains("warning: NSPinnedDomains pins never expire"),
        "{}",
        apple.stderr
    );
    if !have("python3") {
        return;
    }
    let android = pinproxy(d, &["export", "--pin-set", "app", "--format", "android"]);
    let xml = parse_xml(&android.stdout);
    let pins: Vec<&str> = xml["children"][0]["children"][1]["children"]
        .as_array()
        .expect("pin-set children")
        .iter()
        .map(|p| p["text"].as_str().expect("pin text"))
        .collect();
    assert_eq!(pins, vec![pki.leaf_pin.as_str(), BACKUP]);
    let trustkit = pinproxy(d, &["export", "--pin-set", "app", "--format", "trustkit"]);
    let plist = parse_plist(&trustkit.stdout);
    assert_eq!(
        plist["TSKConfiguration"]["TSKPinnedDomains"]["api.example.com"]["TSKPublicKeyHashes"],
        serde_json::json!([pki.leaf_pin, BACKUP])
    );
}

#[test]
fn export_to_curl_envoy_or_apple_exits_1_when_no_key_pin_matches_the_served_leaf() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let d = tmp.path();
    let pki = Pki::new(Alg::P256, &["api.example.com"]);
    one_listener(d, &pki);
    pin_set(
        d,
        "app",
        "2027-06-30",
        &[
            (&pki.inter_pin, "ca", "intermediate"),
            (BACKUP, "key", "backup"),
        ],
    );
    for format in ["curl", "envoy", "apple"] {
        let run = pinproxy(d, &["export", "--pin-set", "app", "--format", format]);
        assert_eq!(run.code, 1, "{format}: {}", run.stdout);
        assert!(run.stdout.is_empty(), "{format} printed {}", run.stdout);
        assert!(
            run.stderr
                .contains("no kind = \"key\" pin for the leaf of `listener[0].cert[0]`"),
            "{format}: {}",
            run.stderr
        );
    }
    let android = pinproxy(d, &["export", "--pin-set", "app", "--format", "android"]);
    assert_eq!(
        android.code, 0,
        "the intermediate pin satisfies Android: {}",
        android.stderr
    );
}

#[test]
fn export_to_trustkit_exits_1_for_a_set_with_one_pin() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let d = tmp.path();
    let pki = Pki::new(Alg::P256, &["api.example.com"]);
    one_listener(d, &pki);
    pin_set(d, "app", "2027-06-30", &[(&pki.leaf_pin, "key", "current")]);
    let run = pinproxy(d, &["export", "--pin-set", "app", "--format", "trustkit"]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("fewer than 2 pins"), "{}", run.stderr);
    assert!(
        run.stderr.contains("pinproxy keygen"),
        "says what to do: {}",
        run.stderr
    );
}

#[test]
fn export_asks_for_domain_when_listeners_serve_different_names() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let d = tmp.path();
    let api = Pki::new(Alg::P256, &["api.example.com"]);
    let cdn = Pki::new(Alg::P256, &["cdn.example.com"]);
    write(d, "certs/api.pem", api.chain_pem());
    write(d, "certs/cdn.pem", cdn.chain_pem());
    site(
        d,
        &[(
            "mobile",
            &["app"],
            &[
                (&["api.example.com"], "certs/api.pem"),
                (&["cdn.example.com"], "certs/cdn.pem"),
            ],
        )],
    );
    pin_set(
        d,
        "app",
        "2027-06-30",
        &[(&api.leaf_pin, "key", "api"), (&cdn.leaf_pin, "key", "cdn")],
    );
    let run = pinproxy(d, &["export", "--pin-set", "app", "--format", "curl"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("api.example.com, cdn.example.com") && run.stderr.contains("--domain"),
        "{}",
        run.stderr
    );
    let run = pinproxy(
        d,
        &[
            "export",
            "--pin-set",
            "app",
            "--format",
            "okhttp",
            "--domain",
            "cdn.example.com",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains(".add(\"cdn.example.com\""),
        "{}",
        run.stdout
    );
}

#[test]
fn export_asks_for_domain_when_the_listener_serves_a_wildcard() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let d = tmp.path();
    let pki = Pki::new(Alg::P256, &["*.example.com"]);
    write(d, "certs/wild.pem", pki.chain_pem());
    site(
        d,
        &[(
            "mobile",
            &["app"],
            &[(&["*.example.com"], "certs/wild.pem")],
        )],
    );
    pin_set(
        d,
        "app",
        "2027-06-30",
        &[(&pki.leaf_pin, "key", "current"), (BACKUP, "key", "backup")],
    );
    let run = pinproxy(d, &["export", "--pin-set", "app", "--format", "android"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr
            .contains("--domain example.com --include-subdomains"),
        "{}",
        run.stderr
    );
    let run = pinproxy(
        d,
        &[
            "export",
            "--pin-set",
            "app",
            "--format",
            "curl",
            "--domain",
            "api.example.com",
        ],
    );
    assert_eq!(
        run.code, 0,
        "the wildcard cert serves api.example.com: {}",
        run.stderr
    );
}

#[test]
fn export_of_a_set_no_listener_names_asks_for_domain_and_leaf_only_formats_refuse() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let d = tmp.path();
    let pki = Pki::new(Alg::P256, &["api.example.com"]);
    one_listener(d, &pki);
    pin_set(
        d,
        "app",
        "2027-06-30",
        &[(&pki.leaf_pin, "key", "current"), (BACKUP, "key", "backup")],
    );
    pin_set(
        d,
        "next",
        "2028-06-30",
        &[(&pki.leaf_pin, "key", "current"), (BACKUP, "key", "backup")],
    );
    let run = pinproxy(d, &["export", "--pin-set", "next", "--format", "android"]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("give --domain"), "{}", run.stderr);
    let args = [
        "export",
        "--pin-set",
        "next",
        "--domain",
        "api.example.com",
        "--format",
    ];
    let android = pinproxy(d, &[&args[..], &["android"]].concat());
    assert_eq!(android.code, 0, "{}", android.stderr);
    let curl = pinproxy(d, &[&args[..], &["curl"]].concat());
    assert_eq!(curl.code, 1);
    assert!(
        curl.stderr.contains("no listener serves pin set \"next\""),
        "{}",
        curl.stderr
    );
}

#[test]
fn export_of_an_unknown_pin_set_names_the_ones_there_are() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let d = tmp.path();
    let pki = Pki::new(Alg::P256, &["api.example.com"]);
    one_listener(d, &pki);
    pin_set(
        d,
        "app",
        "2027-06-30",
        &[(&pki.leaf_pin, "key", "current"), (BACKUP, "key", "backup")],
    );
    let run = pinproxy(d, &["export", "--pin-set", "ap", "--format", "android"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("no pin set \"ap\"") && run.stderr.contains("there are: app"),
        "{}",
        run.stderr
    );
    let run = pinproxy(
        d,
        &[
            "export",
            "-c",
            "nowhere.toml",
            "--pin-set",
            "app",
            "--format",
            "android",
        ],
    );
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("cannot load nowhere.toml"),
        "{}",
        run.stderr
    );
}

#[test]
fn curl_accepts_the_exported_pins_from_the_proxy_and_rejects_a_set_without_its_key() {
    if !have("curl") {
        return;
    }
    let tmp = tempfile::tempdir().expect("temp dir");
    let d = tmp.path();
    let pki = Pki::new(Alg::P256, &["api.example.com"]);
    one_listener(d, &pki);
    pin_set(
        d,
        "app",
        "2027-06-30",
        &[(&pki.leaf_pin, "key", "current"), (BACKUP, "key", "backup")],
    );
    let run = pinproxy(d, &["export", "--pin-set", "app", "--format", "curl"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let pinned = run
        .stdout
        .trim()
        .strip_prefix("--pinnedpubkey '")
        .and_then(|s| s.strip_suffix('\''))
        .expect("one quoted argument");

    let server = crate::connect::serve(&pki, crate::connect::Mode::Http);
    let curl = |pins: &str| {
        Command::new("curl")
            .args(["-sS", "-k", "--max-time", "10", "--pinnedpubkey", pins])
            .arg(format!("https://127.0.0.1:{}/", server.addr.port()))
            .output()
            .expect("run curl")
    };
    let ok = curl(pinned);
    assert!(
        ok.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&ok.stdout), "ok");
    let wrong = curl(&format!("sha256//{BACKUP}"));
    assert_eq!(
        wrong.status.code(),
        Some(90),
        "CURLE_SSL_PINNEDPUBKEYNOTMATCH"
    );
}
