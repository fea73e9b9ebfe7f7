//! Helpers for the toolkit tests: a test PKI minted with rcgen, the `pinproxy` binary, and the
//! independent oracles (the openssl CLI, python3's XML and plist parsers).
//!
//! A test that needs an external tool fails when `CI` is set and the tool is missing, and skips
//! with a note otherwise.

#![allow(dead_code)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, PKCS_ECDSA_P256_SHA256,
    PKCS_ECDSA_P384_SHA384, PKCS_ED25519, PKCS_RSA_SHA256, RsaKeySize,
};

/// Key types the tests mint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    P256,
    P384,
    Rsa2048,
    Ed25519,
}

pub fn key(alg: Alg) -> KeyPair {
    match alg {
        Alg::P256 => KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256),
        Alg::P384 => KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384),
        Alg::Rsa2048 => KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_2048),
        Alg::Ed25519 => KeyPair::generate_for(&PKCS_ED25519),
    }
    .expect("rcgen generates every key type the tests use")
}

/// Root → intermediate → leaf, the leaf with the given key type and DNS names.
pub struct Pki {
    pub root_pem: String,
    pub inter_pem: String,
    pub leaf_pem: String,
    pub leaf_der: Vec<u8>,
    pub inter_der: Vec<u8>,
    pub leaf_key: KeyPair,
    /// Pins from rcgen's SPKI bytes, hashed here: an oracle independent of the code under test.
    pub leaf_pin: String,
    pub inter_pin: String,
    pub root_pin: String,
}

impl Pki {
    pub fn new(leaf_alg: Alg, names: &[&str]) -> Pki {
        Pki::with_leaf_key(key(leaf_alg), names)
    }

    pub fn with_leaf_key(leaf_key: KeyPair, names: &[&str]) -> Pki {
        let root_key = key(Alg::P256);
        let root_params = ca_params("pinproxy test root");
        let root = root_params.self_signed(&root_key).expect("root");
        let root_pin = spki_pin(&root_key);
        let root_issuer = Issuer::new(root_params, root_key);

        let inter_key = key(Alg::P256);
        let inter_params = ca_params("pinproxy test intermediate");
        let inter = inter_params
            .signed_by(&inter_key, &root_issuer)
            .expect("intermediate");
        let inter_pin = spki_pin(&inter_key);
        let inter_issuer = Issuer::new(inter_params, inter_key);

        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut leaf_params = CertificateParams::new(names.clone()).expect("valid names");
        leaf_params.distinguished_name.push(
            DnType::CommonName,
            names.first().cloned().unwrap_or_else(|| "leaf".into()),
        );
        let leaf = leaf_params
            .signed_by(&leaf_key, &inter_issuer)
            .expect("leaf");
        Pki {
            root_pem: root.pem(),
            inter_pem: inter.pem(),
            leaf_pem: leaf.pem(),
            leaf_der: leaf.der().to_vec(),
            inter_der: inter.der().to_vec(),
            leaf_pin: spki_pin(&leaf_key),
            leaf_key,
            inter_pin,
            root_pin,
        }
    }

    /// What a listener serves: leaf, then intermediate.
    pub fn chain_pem(&self) -> String {
        format!("{}{}", self.leaf_pem, self.inter_pem)
    }
}

/// base64(sha256(SPKI)) from rcgen's own encoding of the public key.
pub fn spki_pin(key: &KeyPair) -> String {
    use base64::Engine as _;
    use rcgen::PublicKeyData as _;
    use sha2::Digest as _;
    base64::engine::general_purpose::STANDARD
        .encode(sha2::Sha256::digest(key.subject_public_key_info()))
}

fn ca_params(cn: &str) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("no names");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, cn);
    p
}

pub fn write(dir: &Path, rel: &str, data: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.join(rel);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("create test directory");
    }
    std::fs::write(&path, data).expect("write test file");
    path
}

/// The result of one `pinproxy` run.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The `sha256/...` first tokens of stdout, in order.
    pub fn pins(&self) -> Vec<String> {
        self.stdout
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|t| t.starts_with("sha256/"))
            .map(|t| t.trim_start_matches("sha256/").to_string())
            .collect()
    }
}

pub fn pinproxy(dir: &Path, args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_pinproxy"))
        .args(args)
        .current_dir(dir)
        .env_remove("PINPROXY_CONFIG")
        .output()
        .expect("run the pinproxy binary");
    to_run(out)
}

fn to_run(out: Output) -> Run {
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Whether `tool` can be run; a missing tool fails the test under CI and skips it elsewhere.
pub fn have(tool: &str) -> bool {
    let found = Command::new(tool)
        .arg(if tool == "openssl" {
            "version"
        } else {
            "--version"
        })
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        if std::env::var_os("CI").is_some() {
            panic!("{tool} is required for this test under CI but was not found");
        }
        eprintln!("note: skipping, {tool} is not installed");
    }
    found
}

/// What kind of object an openssl oracle reads.
#[derive(Debug, Clone, Copy)]
pub enum Obj {
    Cert,
    PrivateKey,
    PublicKey,
    Csr,
}

/// base64(sha256(SPKI DER)) of the object in `file`, computed by the openssl CLI only.
pub fn openssl_pin(file: &Path, obj: Obj, der: bool) -> String {
    let form = if der { "DER" } else { "PEM" };
    let spki_der = match obj {
        Obj::Cert => {
            "openssl x509 -in \"$1\" -inform $2 -pubkey -noout | openssl pkey -pubin -outform DER"
        }
        Obj::Csr => {
            "openssl req -in \"$1\" -inform $2 -pubkey -noout | openssl pkey -pubin -outform DER"
        }
        Obj::PrivateKey => "openssl pkey -in \"$1\" -inform $2 -pubout -outform DER",
        Obj::PublicKey => "openssl pkey -pubin -in \"$1\" -inform $2 -outform DER",
    };
    let script =
        format!("set -o pipefail; {spki_der} | openssl dgst -sha256 -binary | openssl base64 -A");
    let out = Command::new("bash")
        .args(["-c", &script, "oracle"])
        .arg(file)
        .arg(form)
        .output()
        .expect("run the openssl oracle");
    assert!(
        out.status.success(),
        "openssl oracle failed on {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let pin = String::from_utf8(out.stdout)
        .expect("base64 is ASCII")
        .trim()
        .to_string();
    assert_eq!(pin.len(), 44, "oracle gave {pin:?}");
    pin
}

/// Runs `openssl ARGS` (for format conversions) and insists it worked.
pub fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs a python3 script with `input` on stdin and parses the JSON it prints.
pub fn python_json(script: &str, input: &[u8]) -> serde_json::Value {
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(input)
        .expect("feed python3");
    let out = child.wait_with_output().expect("python3 finishes");
    assert!(
        out.status.success(),
        "python3 rejected the document: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(input)
    );
    serde_json::from_slice(&out.stdout).expect("python3 printed JSON")
}

/// The parsed plist as JSON (dicts, arrays, strings, booleans).
pub fn parse_plist(doc: &str) -> serde_json::Value {
    python_json(
        "import json, plistlib, sys; print(json.dumps(plistlib.loads(sys.stdin.buffer.read())))",
        doc.as_bytes(),
    )
}

/// The parsed XML as nested `{"tag", "attrib", "text", "children"}` objects (text stripped).
pub fn parse_xml(doc: &str) -> serde_json::Value {
    python_json(
        "import json, sys, xml.etree.ElementTree as ET\n\
         def walk(e):\n    \
             return {'tag': e.tag, 'attrib': dict(e.attrib), 'text': (e.text or '').strip(), \
                     'children': [walk(c) for c in e]}\n\
         print(json.dumps(walk(ET.fromstring(sys.stdin.buffer.read()))))",
        doc.as_bytes(),
    )
}

/// `(name, pin_sets, [(server_names, chain file)])` of one `[[listener]]`.
pub type ListenerSpec<'a> = (&'a str, &'a [&'a str], &'a [(&'a [&'a str], &'a str)]);

/// A config directory (config.toml) with the given listeners and one catch-all route.
pub fn site(dir: &Path, listeners: &[ListenerSpec<'_>]) -> PathBuf {
    let mut cfg = String::new();
    for (i, (name, pin_sets, certs)) in listeners.iter().enumerate() {
        let sets: Vec<String> = pin_sets.iter().map(|s| format!("\"{s}\"")).collect();
        cfg.push_str(&format!(
            "[[listener]]\nname = \"{name}\"\nlisten = \"127.0.0.1:{}\"\npin_sets = [{}]\n",
            18443 + i,
            sets.join(", ")
        ));
        for (names, chain) in certs.iter() {
            let names: Vec<String> = names.iter().map(|s| format!("\"{s}\"")).collect();
            cfg.push_str(&format!(
                "  [[listener.cert]]\n  server_names = [{}]\n  chain = \"{chain}\"\n  key = \"{chain}.key\"\n",
                names.join(", ")
            ));
        }
    }
    cfg.push_str("[[route]]\npath_prefix = \"/\"\nupstream = \"app\"\n[upstream.app]\nurl = \"http://127.0.0.1:9\"\n");
    write(dir, "config.toml", cfg)
}

/// `pins/NAME.toml` with `(base64, kind, label)` pins.
pub fn pin_set(dir: &Path, name: &str, expires: &str, pins: &[(&str, &str, &str)]) {
    let mut s = format!("description = \"test set {name}\"\nexpires = {expires}\n");
    for (pin, kind, label) in pins {
        s.push_str(&format!(
            "[[pin]]\nsha256 = \"{pin}\"\nkind = \"{kind}\"\nlabel = \"{label}\"\n"
        ));
    }
    write(dir, &format!("pins/{name}.toml"), s);
}
