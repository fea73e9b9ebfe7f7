//! Helpers for the toolkit tests: a test PKI minted with rcgen, the `pinproxy` binary, and the
//! independent oracles (the openssl CLI, python3's XML and plist parsers).
//!
//! A test that needs an external tool fails when `CI` is set and the tool is missing, and skips
//! with a note otherwise.

#![allow(dead_code)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

// One PKI for every test binary: the toolkit's chain lives in common/pki.rs.
#[path = "pki.rs"]
mod pki;
pub use pki::{Alg, Chain as Pki, key, spki_pin};

pub fn write(dir: &Path, rel: &str, data: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.join(rel);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("create test directory");
    }
    std::fs::write(&path, data).expect("write test file");
    path
}

// One runner for the binary: common/bin.rs.
#[path = "bin.rs"]
mod bin;
#[allow(unused_imports)]
pub use bin::{Run, pinproxy};

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
