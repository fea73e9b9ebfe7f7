//! The operator's toolkit behind `pinproxy pin`, `pinproxy export` and `pinproxy keygen`.
//!
//! Each command is a library function that writes its result to the `out` and `err` it is given
//! (stdout and stderr in the binary, buffers in tests) and returns a typed [`ToolError`] whose
//! message names the file or host and says what to do. This layer reads files, opens the one
//! outgoing connection `pin --connect` needs and writes keys; it never touches the proxy's
//! runtime state (snapshots, listeners, reload).

mod compute;
mod connect;
mod export_cmd;
mod freeze;
mod keygen;

use std::io::{self, Write};
use std::path::PathBuf;

use crate::cli::{ExportArgs, KeygenArgs, PinArgs};
use crate::diag::Problems;
use crate::export::ExportError;
use crate::pin::MaterialError;

/// `pinproxy pin FILE...` or `pinproxy pin --connect HOST:PORT`.
pub fn pin_command(
    args: &PinArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), ToolError> {
    match &args.connect {
        Some(target) => connect::pin_connect(target, args.servername.as_deref(), out),
        None => compute::pin_files(&args.files, out, err),
    }
}

/// `pinproxy export`: the text on `out`, warnings on `err`.
pub fn export_command(
    args: &ExportArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), ToolError> {
    export_cmd::export(args, out, err)
}

/// `pinproxy keygen`: writes the key and CSR, prints the pin and a `[[pin]]` block. Nothing goes
/// to `err` today; it is there so the three commands are called alike.
pub fn keygen_command(
    args: &KeygenArgs,
    out: &mut dyn Write,
    _err: &mut dyn Write,
) -> Result<(), ToolError> {
    keygen::keygen(args, out)
}

/// Why a toolkit command failed. `Display` is one level; the cause is the `source`.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}", path.display())]
    Material {
        path: PathBuf,
        #[source]
        source: MaterialError,
    },
    #[error(
        "{failed} of {total} files could not be read or held no key material (each is named above)"
    )]
    FilesFailed { failed: usize, total: usize },

    #[error(
        "\"{target}\" is not HOST:PORT (like api.example.com:443, 192.0.2.7:8443 or [2001:db8::1]:443)"
    )]
    BadTarget { target: String },
    #[error("\"{name}\" is not a DNS name to send as SNI")]
    BadServerName { name: String },
    #[error("cannot resolve {target}")]
    Resolve {
        target: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot connect to {target}")]
    Connect {
        target: String,
        #[source]
        source: io::Error,
    },
    #[error("no TLS handshake with {target} within {secs}s")]
    Timeout { target: String, secs: u64 },
    #[error("TLS handshake with {target} failed")]
    Handshake {
        target: String,
        #[source]
        source: io::Error,
    },
    #[error("{target} sent no certificate")]
    NoCertificate { target: String },
    #[error("the certificate at position {position} from {target} cannot be parsed")]
    PeerCertificate {
        target: String,
        position: usize,
        #[source]
        source: MaterialError,
    },
    #[error("cannot build the TLS client configuration")]
    TlsConfig(#[source] rustls::Error),

    #[error("cannot load {}", path.display())]
    Config {
        path: PathBuf,
        #[source]
        source: Problems,
    },
    #[error("no pin set \"{name}\" in pins/ (there are: {available})")]
    NoPinSet { name: String, available: String },
    #[error(
        "no listener that names pin set \"{pin_set}\" lists a server name to default to: give --domain"
    )]
    NoDomain { pin_set: String },
    #[error(
        "the listeners naming pin set \"{pin_set}\" serve several names ({candidates}): choose one with --domain"
    )]
    AmbiguousDomain { pin_set: String, candidates: String },
    #[error(
        "the listener naming pin set \"{pin_set}\" serves \"{name}\", a wildcard; apps pin a host name: give \
         --domain (e.g. --domain {base} --include-subdomains)"
    )]
    WildcardDomain {
        pin_set: String,
        name: String,
        base: String,
    },
    #[error(
        "--domain \"{domain}\" is not a DNS name (no wildcard, port or scheme; add --include-subdomains for subdomains)"
    )]
    BadDomain { domain: String },
    #[error("cannot read the chain of `{field}` ({})", path.display())]
    ChainRead {
        field: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the chain of `{field}` ({}) holds no usable certificate", path.display())]
    ChainParse {
        field: String,
        path: PathBuf,
        #[source]
        source: MaterialError,
    },
    #[error("cannot export pin set \"{pin_set}\" as {format}")]
    Export {
        pin_set: String,
        format: &'static str,
        #[source]
        source: ExportError,
    },

    #[error("{} already exists; keygen never overwrites a key or CSR: move it away or choose another --out", path.display())]
    Exists { path: PathBuf },
    #[error("cannot generate a {algorithm} key")]
    Generate {
        algorithm: &'static str,
        #[source]
        source: rcgen::Error,
    },
    #[error("cannot make the CSR for \"{name}\"")]
    Csr {
        name: String,
        #[source]
        source: rcgen::Error,
    },
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("cannot freeze pin set \"{pin_set}\": {} is not TOML that can be edited", path.display())]
    FreezeParse {
        pin_set: String,
        path: PathBuf,
        #[source]
        source: Box<toml_edit::TomlError>,
    },

    #[error("cannot write the output")]
    Output(#[from] io::Error),
}

/// A DNS host name: letters, digits, `-` and `_` in dot-separated labels (no wildcard, no IP).
pub(crate) fn is_dns_name(s: &str) -> bool {
    let s = s.strip_suffix('.').unwrap_or(s);
    !s.is_empty()
        && s.len() <= 253
        && s.parse::<std::net::IpAddr>().is_err()
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_names() {
        assert!(is_dns_name("api.example.com"));
        assert!(is_dns_name("localhost"));
        assert!(!is_dns_name("*.example.com"));
        assert!(!is_dns_name("127.0.0.1"));
        assert!(!is_dns_name("api.example.com:443"));
        assert!(!is_dns_name("pinproxy backup key"));
    }
}
