//! Property tests over the parsers that read operator files: `config.toml`, `pins/*.toml` and
//! PEM/DER material. Whatever the bytes, they answer with problems naming the file (or a
//! typed error), never a panic; valid material survives any framing and yields the pin an
//! independent oracle computes. Case counts are bounded so CI stays fast.

use std::path::Path;

use pinproxy::files::Files;
use proptest::prelude::*;

use super::support::{Alg, Pki};

const CONFIG: &str = r#"[admin]
listen = "127.0.0.1:0"
[limits]
idle_timeout = "60s"
max_header_bytes = 65536
upstream_read_timeout = "60s"
[[listener]]
name = "mobile"
listen = "127.0.0.1:0"
pin_sets = ["app"]
  [[listener.cert]]
  server_names = ["api.example.com", "*.example.com"]
  chain = "certs/api.pem"
  key = "certs/api.key"
[[route]]
host = "api.example.com"
path_prefix = "/pay/"
upstream = "pay"
timeout = "5s"
[upstream.pay]
url = "https://pay.example.net/v1"
pin_set = "app"
pin_match = "leaf"
"#;

const PINS: &str = r#"description = "app 4"
expires = 2099-06-30
mode = "enforce"
[[pin]]
sha256 = "tM/u/k5HeJDvkIGDie9SHfQDQ7YyORlmFwn21Gyen0g="
label = "current"
kind = "key"
[[pin]]
sha256 = "ZHWbyPsLHYRcwbW4Jmib8fxi16zaENPKDS1DCV4tSqM="
label = "backup"
kind = "ca"
"#;

/// `text` with one edit: a byte replaced, a range deleted, or text inserted.
fn mutated(text: &'static str) -> impl Strategy<Value = String> {
    let len = text.len();
    (
        0..len,
        0..len,
        any::<u8>(),
        "[ -~\n\"=\\[\\]{}.,#]{0,12}",
        0..3u8,
    )
        .prop_map(move |(at, to, byte, insert, how)| {
            let mut b = text.as_bytes().to_vec();
            let (lo, hi) = (at.min(to), at.max(to));
            match how {
                0 => b[at] = byte,
                1 => {
                    b.drain(lo..hi.min(lo + 40));
                }
                _ => {
                    b.splice(at..at, insert.bytes());
                }
            }
            String::from_utf8_lossy(&b).into_owned()
        })
}

fn load_config(dir: &Path, text: &str) -> Result<(), Vec<pinproxy::diag::Problem>> {
    std::fs::write(dir.join("config.toml"), text).expect("write config");
    match pinproxy::config::load(&dir.join("config.toml"), &mut Files::new()) {
        Ok(_) => Ok(()),
        Err(p) => Err(p.errors().cloned().collect()),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn any_edit_of_a_config_is_loaded_or_refused_naming_a_file(text in mutated(CONFIG)) {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::create_dir(dir.path().join("pins")).expect("pins");
        std::fs::write(dir.path().join("pins/app.toml"), PINS).expect("pins");
        if let Err(problems) = load_config(dir.path(), &text) {
            prop_assert!(!problems.is_empty());
            for p in problems {
                prop_assert!(p.file.starts_with(dir.path()), "{p}");
            }
        }
    }

    #[test]
    fn arbitrary_text_as_config_never_panics(text in "[ -~\n]{0,400}") {
        let dir = tempfile::tempdir().expect("dir");
        let _ = load_config(dir.path(), &text);
    }

    #[test]
    fn any_edit_of_a_pin_file_is_loaded_or_refused_naming_it(text in mutated(PINS)) {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(dir.path().join("app.toml"), &text).expect("pins");
        if let Err(problems) = pinproxy::pin::load_pin_sets(dir.path(), dir.path(), &mut Files::new()) {
            for p in problems.errors() {
                prop_assert!(p.file.starts_with(dir.path()), "{p}");
            }
        }
    }

    #[test]
    fn arbitrary_bytes_as_key_material_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = pinproxy::pin::material_from_bytes(&bytes);
    }

    #[test]
    fn corrupted_pem_and_der_never_panic(at in 0usize..2000, byte in any::<u8>(), cut in 0usize..2000) {
        let pki = &*PKI;
        for data in [pki.leaf_pem.as_bytes(), pki.leaf_der.as_slice()] {
            let mut b = data.to_vec();
            let i = at % b.len();
            b[i] = byte;
            let _ = pinproxy::pin::material_from_bytes(&b);
            let _ = pinproxy::pin::material_from_bytes(&data[..cut % data.len()]);
        }
    }

    #[test]
    fn a_certificate_in_any_framing_gives_the_oracle_pin(crlf in any::<bool>(), junk in "[ -~]{0,40}", der in any::<bool>()) {
        let pki = &*PKI;
        let bytes = if der {
            pki.leaf_der.clone()
        } else {
            let mut pem = format!("{junk}\n{}", pki.leaf_pem);
            if crlf {
                pem = pem.replace('\n', "\r\n");
            }
            pem.into_bytes()
        };
        let found = pinproxy::pin::material_from_bytes(&bytes).expect("a certificate");
        prop_assert_eq!(found.len(), 1);
        prop_assert_eq!(found[0].pin().to_base64(), pki.leaf_pin.clone());
    }
}

static PKI: std::sync::LazyLock<Pki> =
    std::sync::LazyLock::new(|| Pki::new(Alg::P256, &["api.example.com"]));
