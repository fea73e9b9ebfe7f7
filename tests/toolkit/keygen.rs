//! `pinproxy keygen`: key type, file mode, never overwriting, and a pin openssl agrees with.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use crate::support::{Obj, have, openssl_pin, pinproxy};

/// What `openssl pkey -text` prints for each `--algorithm`.
fn keygen_makes(algorithm: &str, openssl_says: &str) {
    if !have("openssl") {
        return;
    }
    let tmp = tempfile::tempdir().expect("temp dir");
    let d = tmp.path();
    let run = pinproxy(
        d,
        &[
            "keygen",
            "--out",
            "keys",
            "--algorithm",
            algorithm,
            "--name",
            "api.example.com",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);

    let today = time::OffsetDateTime::now_utc().date();
    let prefix = format!(
        "backup-{algorithm}-{:04}{:02}{:02}-",
        today.year(),
        u8::from(today.month()),
        today.day()
    );
    let key = only_file(&d.join("keys"), "key");
    let stem = key
        .file_stem()
        .expect("a stem")
        .to_string_lossy()
        .into_owned();
    assert!(stem.starts_with(&prefix), "{stem}");
    let csr = d.join(format!("keys/{stem}.csr"));
    let mode = std::fs::metadata(&key)
        .expect("key written")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "key file mode {mode:o}");
    let key_pem = std::fs::read_to_string(&key).expect("key is text");
    assert!(
        key_pem.starts_with("-----BEGIN PRIVATE KEY-----"),
        "PKCS#8 PEM"
    );
    assert!(openssl_text(&["pkey", "-noout", "-text", "-in"], &key).contains(openssl_says));

    let key_pin = openssl_pin(&key, Obj::PrivateKey, false);
    let csr_pin = openssl_pin(&csr, Obj::Csr, false);
    assert_eq!(key_pin, csr_pin, "the CSR carries the new key");
    let pin_hex: String =
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &key_pin)
            .expect("pin is base64")[..4]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
    assert_eq!(stem, format!("{prefix}{pin_hex}"), "named after its pin");
    assert_eq!(
        run.pins(),
        vec![key_pin.clone(), key_pin.clone()],
        "{}",
        run.stdout
    );
    let csr_text = openssl_text(&["req", "-noout", "-text", "-verify", "-in"], &csr);
    assert!(
        csr_text.contains("CN = api.example.com") || csr_text.contains("CN=api.example.com"),
        "{csr_text}"
    );
    assert!(csr_text.contains("DNS:api.example.com"), "{csr_text}");

    let block = &run.stdout[run.stdout.find("[[pin]]").expect("a [[pin]] block")..];
    let parsed: toml::Table = toml::from_str(block).expect("the block is TOML");
    let pin = &parsed["pin"].as_array().expect("[[pin]] is an array")[0];
    assert_eq!(pin["sha256"].as_str(), Some(key_pin.as_str()));
    assert_eq!(pin["kind"].as_str(), Some("key"));
    assert_eq!(
        pin["source"].as_str(),
        Some(format!("keys/{stem}.csr").as_str())
    );
    let label = pin["label"].as_str().expect("a label");
    assert!(
        label.contains(&stem) && label.contains(&today.to_string()),
        "{label}"
    );
    assert!(
        run.stdout.contains("offline"),
        "tells to keep the key offline: {}",
        run.stdout
    );
}

fn openssl_text(args: &[&str], file: &Path) -> String {
    let out = Command::new("openssl")
        .args(args)
        .arg(file)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn keygen_ecdsa_p256_writes_a_0600_key_and_csr_with_the_pin_openssl_computes() {
    keygen_makes("ecdsa-p256", "NIST CURVE: P-256");
}

#[test]
fn keygen_ecdsa_p384_writes_a_0600_key_and_csr_with_the_pin_openssl_computes() {
    keygen_makes("ecdsa-p384", "NIST CURVE: P-384");
}

#[test]
fn keygen_rsa_2048_writes_a_0600_key_and_csr_with_the_pin_openssl_computes() {
    keygen_makes("rsa-2048", "(2048 bit");
}

#[test]
fn keygen_rsa_3072_writes_a_0600_key_and_csr_with_the_pin_openssl_computes() {
    keygen_makes("rsa-3072", "(3072 bit");
}

#[test]
fn keygen_twice_the_same_day_makes_a_second_key_and_leaves_the_first_untouched() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let d = tmp.path();
    let first = pinproxy(d, &["keygen", "--out", "keys"]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    let before = files(d);
    assert_eq!(before.len(), 2, "a key and a CSR");
    let second = pinproxy(d, &["keygen", "--out", "keys"]);
    assert_eq!(
        second.code, 0,
        "a rotation makes a new backup the same day: {}",
        second.stderr
    );
    let after = files(d);
    assert_eq!(after.len(), 4, "two keys and two CSRs: {after:?}");
    for f in &before {
        assert!(after.contains(f), "{} unchanged", f.0);
    }
    assert_ne!(first.pins(), second.pins(), "a new key");
}

/// Every file in DIR/keys with its contents, sorted.
fn files(d: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(d.join("keys"))
        .expect("keys dir")
        .map(|e| {
            let p = e.expect("entry").path();
            (p.display().to_string(), std::fs::read(&p).expect("read"))
        })
        .collect();
    v.sort();
    v
}

/// The one file of `dir` with extension `ext`.
fn only_file(dir: &Path, ext: &str) -> std::path::PathBuf {
    let found: Vec<_> = std::fs::read_dir(dir)
        .expect("dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    found[0].clone()
}

#[test]
fn keygen_with_a_name_that_is_not_a_host_makes_a_csr_without_a_dns_san() {
    if !have("openssl") {
        return;
    }
    let tmp = tempfile::tempdir().expect("temp dir");
    let d = tmp.path();
    let run = pinproxy(
        d,
        &["keygen", "--out", "k", "--name", "payments backup 2027"],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let csr = std::fs::read_dir(d.join("k"))
        .expect("out dir")
        .map(|e| e.expect("entry").path())
        .find(|p| p.extension().is_some_and(|x| x == "csr"))
        .expect("a CSR");
    let text = openssl_text(&["req", "-noout", "-text", "-in"], &csr);
    assert!(text.contains("payments backup 2027"), "{text}");
    assert!(!text.contains("DNS:"), "{text}");
}
