//! `pinproxy keygen`: a new (backup) key, a CSR for it, its pin and a `[[pin]]` block to paste.
//!
//! A backup pin only saves the apps if its key exists and stays secret, so the key is written
//! with mode 0600 and never over an existing file, and the output says to keep it offline. Only
//! key types every client and public CA accept are offered (TrustKit: RSA 2048/3072/4096, EC
//! P-256/P-384).

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rcgen::{
    CertificateParams, DistinguishedName, DnType, KeyPair, PublicKeyData as _, RsaKeySize,
};

use super::{ToolError, is_dns_name};
use crate::cli::{KeyAlgorithmArg, KeygenArgs};
use crate::pin::Pin;

pub(super) fn keygen(args: &KeygenArgs, out: &mut dyn Write) -> Result<(), ToolError> {
    let today = time::OffsetDateTime::now_utc().date();
    let algorithm = algorithm_name(args.algorithm);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&args.out)
        .map_err(|source| ToolError::Write {
            path: args.out.clone(),
            source,
        })?;
    let key =
        generate(args.algorithm).map_err(|source| ToolError::Generate { algorithm, source })?;
    let pin = Pin::of_spki(&key.subject_public_key_info());
    // The pin's first bytes make the name unique: a second backup made the same day (the usual
    // case in a rotation) gets its own files instead of an error, and a clash is still refused.
    let stem = format!(
        "backup-{algorithm}-{:04}{:02}{:02}-{}",
        today.year(),
        u8::from(today.month()),
        today.day(),
        pin.as_bytes()[..4]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    let key_path = args.out.join(format!("{stem}.key"));
    let csr_path = args.out.join(format!("{stem}.csr"));
    for path in [&key_path, &csr_path] {
        if path.symlink_metadata().is_ok() {
            return Err(ToolError::Exists { path: path.clone() });
        }
    }
    let csr_pem = csr(&key, &args.name).map_err(|source| ToolError::Csr {
        name: args.name.clone(),
        source,
    })?;

    write_new(&key_path, key.serialize_pem().as_bytes(), 0o600)?;
    if let Err(e) = write_new(&csr_path, csr_pem.as_bytes(), 0o644) {
        // Only this run created the key file; without its CSR it would just be confusing.
        let _ = std::fs::remove_file(&key_path);
        return Err(e);
    }

    writeln!(
        out,
        "{}  {}: new {algorithm} private key",
        pin.to_prefixed(),
        key_path.display()
    )?;
    writeln!(
        out,
        "{}  {}: CSR for it",
        pin.to_prefixed(),
        csr_path.display()
    )?;
    writeln!(out)?;
    writeln!(
        out,
        "# Paste into the app's pin set (pins/NAME.toml) as its backup pin; `source` is relative to the config directory."
    )?;
    writeln!(out, "[[pin]]")?;
    writeln!(out, "sha256 = {}", toml_string(&pin.to_base64()))?;
    writeln!(
        out,
        "label = {}",
        toml_string(&format!("backup key {stem}, created {today}"))
    )?;
    writeln!(out, "kind = \"key\"")?;
    writeln!(out, "source = {}", toml_string(&csr_path.to_string_lossy()))?;
    writeln!(out)?;
    writeln!(
        out,
        "# Keep {} offline (not on the proxy host) until you rotate to it: apps trust it from the day they ship this pin.",
        key_path.display()
    )?;
    Ok(())
}

/// The `--algorithm` value as the operator types it.
fn algorithm_name(a: KeyAlgorithmArg) -> &'static str {
    match a {
        KeyAlgorithmArg::EcdsaP256 => "ecdsa-p256",
        KeyAlgorithmArg::EcdsaP384 => "ecdsa-p384",
        KeyAlgorithmArg::Rsa2048 => "rsa-2048",
        KeyAlgorithmArg::Rsa3072 => "rsa-3072",
    }
}

fn generate(a: KeyAlgorithmArg) -> Result<KeyPair, rcgen::Error> {
    match a {
        KeyAlgorithmArg::EcdsaP256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
        KeyAlgorithmArg::EcdsaP384 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384),
        KeyAlgorithmArg::Rsa2048 => {
            KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, RsaKeySize::_2048)
        }
        KeyAlgorithmArg::Rsa3072 => {
            KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, RsaKeySize::_3072)
        }
    }
}

/// A PEM CSR with CN = `name`, and a DNS SAN when `name` is a host name.
fn csr(key: &KeyPair, name: &str) -> Result<String, rcgen::Error> {
    let sans = if is_dns_name(name) {
        vec![name.to_string()]
    } else {
        Vec::new()
    };
    let mut params = CertificateParams::new(sans)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    params.serialize_request(key)?.pem()
}

/// Creates `path` (never replacing anything) with `mode` from the start, so the key is never
/// readable by others, not even briefly.
fn write_new(path: &Path, data: &[u8], mode: u32) -> Result<(), ToolError> {
    let fail = |source| ToolError::Write {
        path: PathBuf::from(path),
        source,
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|source| match source.kind() {
            std::io::ErrorKind::AlreadyExists => ToolError::Exists {
                path: path.to_path_buf(),
            },
            _ => fail(source),
        })?;
    file.write_all(data).map_err(fail)?;
    file.sync_all().map_err(fail)
}

/// A TOML basic string, escaped by the toml crate.
fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}
