//! `pinproxy pin FILE...` against the openssl CLI, for every key type and file form.

use std::collections::BTreeMap;
use std::path::Path;

use rcgen::CertificateParams;

use crate::support::{Alg, Obj, Pki, have, openssl, openssl_pin, pinproxy, write};

/// Output lines keyed by `file` or `file[i]`: (pin, description).
fn lines_by_file(stdout: &str) -> BTreeMap<String, (String, String)> {
    stdout
        .lines()
        .map(|l| {
            let (pin, rest) = l.split_once("  ").expect("`sha256/...  file: what`");
            let (file, what) = rest.split_once(": ").expect("`file: what`");
            let pin = pin
                .strip_prefix("sha256/")
                .expect("pin is the first token")
                .to_string();
            (file.to_string(), (pin, what.to_string()))
        })
        .collect()
}

/// Writes the leaf key of `alg` in every form and checks each printed pin against openssl run
/// on that very file.
fn every_form_matches_openssl(alg: Alg) {
    if !have("openssl") {
        return;
    }
    let tmp = tempfile::tempdir().expect("temp dir");
    let d = tmp.path();
    let pki = if alg == Alg::Ed25519 {
        // OpenSSL 3.0 cannot read the PKCS#8 v2 form aws-lc writes for Ed25519; start from its own.
        let path = d.join("ed25519.pem").to_string_lossy().into_owned();
        openssl(&["genpkey", "-algorithm", "ed25519", "-out", &path]);
        let pem = std::fs::read_to_string(&path).expect("openssl wrote the key");
        Pki::with_leaf_key(
            rcgen::KeyPair::from_pem(&pem).expect("rcgen reads it"),
            &["api.example.com"],
        )
    } else {
        Pki::new(alg, &["api.example.com"])
    };
    let csr = CertificateParams::new(vec!["api.example.com".to_string()])
        .and_then(|mut p| {
            p.distinguished_name
                .push(rcgen::DnType::CommonName, "api.example.com");
            p.serialize_request(&pki.leaf_key)
        })
        .expect("CSR");

    // (file, openssl object, DER?, what the description must mention)
    let mut files: Vec<(&str, Obj, bool, &str)> = vec![
        (
            "cert.pem",
            Obj::Cert,
            false,
            "certificate CN=api.example.com",
        ),
        (
            "cert.der",
            Obj::Cert,
            true,
            "certificate CN=api.example.com",
        ),
        (
            "key.pk8.pem",
            Obj::PrivateKey,
            false,
            "private key (PKCS#8)",
        ),
        ("key.pk8.der", Obj::PrivateKey, true, "private key (PKCS#8)"),
        ("pub.pem", Obj::PublicKey, false, "public key"),
        ("pub.der", Obj::PublicKey, true, "public key"),
        ("csr.pem", Obj::Csr, false, "CSR CN=api.example.com"),
        ("csr.der", Obj::Csr, true, "CSR CN=api.example.com"),
    ];
    write(d, "cert.pem", &pki.leaf_pem);
    write(d, "cert.der", &pki.leaf_der);
    write(d, "inter.pem", &pki.inter_pem);
    write(d, "chain.pem", pki.chain_pem());
    write(d, "key.pk8.pem", pki.leaf_key.serialize_pem());
    write(d, "key.pk8.der", pki.leaf_key.serialize_der());
    write(d, "csr.pem", csr.pem().expect("CSR PEM"));
    write(d, "csr.der", csr.der());
    let at = |f: &str| d.join(f).to_string_lossy().into_owned();
    openssl(&[
        "pkey",
        "-in",
        &at("key.pk8.pem"),
        "-pubout",
        "-out",
        &at("pub.pem"),
    ]);
    openssl(&[
        "pkey",
        "-in",
        &at("key.pk8.pem"),
        "-pubout",
        "-outform",
        "DER",
        "-out",
        &at("pub.der"),
    ]);
    match alg {
        Alg::P256 | Alg::P384 => {
            openssl(&["ec", "-in", &at("key.pk8.pem"), "-out", &at("key.sec1.pem")]);
            assert_pem_label(&d.join("key.sec1.pem"), "EC PRIVATE KEY");
            files.push(("key.sec1.pem", Obj::PrivateKey, false, "private key (SEC1)"));
        }
        Alg::Rsa2048 => {
            openssl(&[
                "rsa",
                "-traditional",
                "-in",
                &at("key.pk8.pem"),
                "-out",
                &at("key.pkcs1.pem"),
            ]);
            assert_pem_label(&d.join("key.pkcs1.pem"), "RSA PRIVATE KEY");
            files.push((
                "key.pkcs1.pem",
                Obj::PrivateKey,
                false,
                "private key (PKCS#1)",
            ));
        }
        Alg::Ed25519 => {}
    }

    let mut args: Vec<&str> = vec!["pin"];
    args.extend(files.iter().map(|f| f.0));
    args.push("chain.pem");
    let run = pinproxy(d, &args);
    assert_eq!(run.code, 0, "stderr: {}", run.stderr);
    let got = lines_by_file(&run.stdout);

    let key_pin = openssl_pin(&d.join("key.pk8.pem"), Obj::PrivateKey, false);
    assert_eq!(
        key_pin, pki.leaf_pin,
        "openssl and rcgen agree on the leaf SPKI"
    );
    for (file, obj, der, what) in &files {
        let (pin, described) = got
            .get(*file)
            .unwrap_or_else(|| panic!("no line for {file}:\n{}", run.stdout));
        assert_eq!(pin, &openssl_pin(&d.join(file), *obj, *der), "{file}");
        assert_eq!(pin, &key_pin, "{file} holds the leaf key");
        assert!(
            described.contains(what),
            "{file}: {described:?} should mention {what:?}"
        );
    }
    assert_eq!(
        got["chain.pem[0]"].0, key_pin,
        "a chain prints the leaf first"
    );
    assert_eq!(
        got["chain.pem[1]"].0,
        openssl_pin(&d.join("inter.pem"), Obj::Cert, false)
    );
    assert_eq!(
        got.len(),
        files.len() + 2,
        "one line per object:\n{}",
        run.stdout
    );
}

fn assert_pem_label(path: &Path, label: &str) {
    let text = std::fs::read_to_string(path).expect("converted key");
    assert!(
        text.contains(&format!("-----BEGIN {label}-----")),
        "{}: {text}",
        path.display()
    );
}

#[test]
fn pin_prints_the_openssl_pin_of_every_ecdsa_p256_file_form() {
    every_form_matches_openssl(Alg::P256);
}

#[test]
fn pin_prints_the_openssl_pin_of_every_ecdsa_p384_file_form() {
    every_form_matches_openssl(Alg::P384);
}

#[test]
fn pin_prints_the_openssl_pin_of_every_rsa_2048_file_form() {
    every_form_matches_openssl(Alg::Rsa2048);
}

#[test]
fn pin_prints_the_openssl_pin_of_every_ed25519_file_form() {
    every_form_matches_openssl(Alg::Ed25519);
}

#[test]
fn pin_of_a_file_without_key_material_exits_1_naming_the_file() {
    let tmp = tempfile::tempdir().expect("temp dir");
    write(
        tmp.path(),
        "notes.txt",
        "these are not the keys you are looking for\n",
    );
    let run = pinproxy(tmp.path(), &["pin", "notes.txt"]);
    assert_eq!(run.code, 1);
    assert!(run.stdout.is_empty(), "{}", run.stdout);
    assert!(
        run.stderr.contains("notes.txt") && run.stderr.contains("no certificate, key or CSR"),
        "{}",
        run.stderr
    );
}

#[test]
fn pin_prints_the_readable_files_and_exits_1_naming_each_unreadable_one() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let pki = Pki::new(Alg::P256, &["api.example.com"]);
    write(tmp.path(), "api.pem", &pki.leaf_pem);
    write(tmp.path(), "empty.pem", "");
    let run = pinproxy(tmp.path(), &["pin", "missing.pem", "api.pem", "empty.pem"]);
    assert_eq!(run.code, 1);
    assert_eq!(
        run.pins(),
        vec![pki.leaf_pin.clone()],
        "the good file is still printed"
    );
    assert!(
        run.stderr.contains("cannot read missing.pem"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("empty.pem: no certificate"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("2 of 3 files"), "{}", run.stderr);
}

#[test]
fn pin_without_files_or_connect_is_a_usage_error() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let run = pinproxy(tmp.path(), &["pin"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
}

#[test]
fn pin_reads_an_ed25519_key_in_the_pkcs8_v2_form_aws_lc_writes() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let key = crate::support::key(Alg::Ed25519);
    write(tmp.path(), "ed.pem", key.serialize_pem());
    let run = pinproxy(tmp.path(), &["pin", "ed.pem"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.pins(), vec![crate::support::spki_pin(&key)]);
}
