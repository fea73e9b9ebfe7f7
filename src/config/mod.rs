//! `config.toml` and `pins/` → a validated [`Config`].
//!
//! Parsing happens in stages: raw serde structs (unknown keys rejected), then checks that need
//! only the config file itself. Rules that need certificates and pins together (DESIGN.md §4)
//! belong to the TLS layer and run when a snapshot is built. Every problem names the file and
//! the dotted field. This module opens no sockets and builds no TLS objects.

mod auth;
mod fields;
mod raw;
mod response_headers;
mod validate;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::uri::Authority;

use crate::diag::{Kind, Problem, Problems};
use crate::files::Files;
use crate::pin::{self, PinSet};
use crate::tomlfile::parse_toml;
use raw::RawConfig;
use validate::Validator;

pub use auth::{AuthKind, AuthMode, AuthPolicy, JwtPolicy, KeyFile};
pub use response_headers::{DEFAULT_REMOVE, ResponseHeaders};

/// Everything `run` needs from the files, checked for consistency.
#[derive(Debug, Clone)]
pub struct Config {
    pub file: PathBuf,
    pub dir: PathBuf,
    pub admin: Admin,
    pub expiry: Expiry,
    pub reload: Reload,
    pub log: Log,
    pub limits: Limits,
    pub listeners: Vec<Listener>,
    pub routes: Vec<Route>,
    pub upstreams: BTreeMap<String, Upstream>,
    pub pin_sets: BTreeMap<String, PinSet>,
    /// `[auth.NAME]` token policies, by name.
    pub auth: BTreeMap<String, AuthPolicy>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admin {
    pub listen: SocketAddr,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expiry {
    pub warn_before: Duration,
    pub critical_before: Duration,
    pub pin_set_warn_before: Duration,
    pub pin_set_critical_before: Duration,
    pub pin_set_grace: Duration,
    pub check_every: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reload {
    /// `Some` when file contents are also polled.
    pub poll_interval: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Log {
    pub format: LogFormat,
    pub access: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub tls_handshake_timeout: Duration,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub max_header_bytes: usize,
    pub upstream_connect_timeout: Duration,
    pub upstream_response_timeout: Duration,
    pub upstream_idle_timeout: Duration,
    pub shutdown_delay: Duration,
    pub shutdown_grace: Duration,
    /// Longest wait between two reads of an upstream response body.
    pub upstream_read_timeout: Duration,
    /// Longest a client may leave the proxy's writes blocked (takes no bytes).
    pub client_write_timeout: Duration,
    /// Upstream response heads above this give 502.
    pub max_response_header_bytes: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub name: String,
    pub listen: SocketAddr,
    pub pin_sets: Vec<String>,
    pub certs: Vec<CertSpec>,
    /// Where a request's app version is read (adoption per pin set).
    pub app_version: Option<AppVersionFrom>,
    /// `Some` when connections must start with a PROXY protocol header.
    pub proxy_protocol: Option<ProxyProtocol>,
    /// A file of shared session-ticket keys (first encrypts, all decrypt); `None`: per process.
    pub session_ticket_keys: Option<PathBuf>,
}

/// Where the app version of a request is read; checked to compile, compiled at snapshot build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppVersionFrom {
    /// A request header (lower-case name) holding the version, e.g. `X-App-Version: 4.3.1`.
    Header(String),
    /// A pattern on `User-Agent` whose first capture group is the version.
    UserAgent(String),
}

/// `proxy_protocol = true` with the peers allowed to send the header (the load balancers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyProtocol {
    pub from: Vec<ipnet::IpNet>,
}

impl ProxyProtocol {
    /// Whether `peer` may send a PROXY header; IPv4 peers of a `[::]` socket match IPv4 ranges.
    pub fn allows(&self, peer: std::net::IpAddr) -> bool {
        let peer = peer.to_canonical();
        self.from.iter().any(|net| net.contains(&peer))
    }
}

/// One `[[listener.cert]]`, paths resolved against the config directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSpec {
    /// Dotted field of this entry, e.g. `listener[0].cert[1]`, for messages.
    pub field: String,
    pub server_names: Vec<String>,
    pub chain: PathBuf,
    pub key: PathBuf,
    pub anchor: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub name: String,
    /// Lower-case; exact or `*.example.com`.
    pub host: Option<String>,
    /// Without a trailing slash; empty for `/`.
    pub path_prefix: String,
    pub upstream: String,
    pub strip_prefix: bool,
    pub preserve_host: bool,
    pub timeout: Duration,
    /// Name of the `[auth.NAME]` policy checked before forwarding.
    pub auth: Option<String>,
    /// Final per-route list: the defaults, plus `remove`, minus `keep`; and `add`.
    pub response_headers: ResponseHeaders,
    /// Overrides the upstream's Host for this route (`host_header`).
    pub host_header: Option<Authority>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    WebPki,
    System,
    Ca(PathBuf),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinMatch {
    /// Any certificate of the verified path.
    Chain,
    Leaf,
}

impl PinMatch {
    pub fn as_str(self) -> &'static str {
        match self {
            PinMatch::Chain => "chain",
            PinMatch::Leaf => "leaf",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    pub name: String,
    pub tls: bool,
    pub authority: Authority,
    /// Host from the url, without brackets.
    pub host: String,
    /// Prepended to every request path; empty or starting with `/`, no trailing slash.
    pub base_path: String,
    pub trust: Trust,
    /// SNI and the name verified, when it differs from the url host.
    pub server_name: Option<String>,
    pub pin_set: Option<String>,
    pub pin_match: PinMatch,
    /// The Host sent upstream (unless a route preserves the client's): `host_header`, else
    /// `server_name` with the url's port when it is not the scheme's default; `None`: the url's.
    pub host_header: Option<Authority>,
}

impl Upstream {
    /// The name the upstream certificate is checked against.
    pub fn verify_name(&self) -> &str {
        self.server_name.as_deref().unwrap_or(&self.host)
    }
}

/// Reads and validates the config file and the pin sets beside it. Warnings come back with the
/// config; any error fails the whole load.
pub fn load(path: &Path, files: &mut Files) -> Result<(Config, Problems), Problems> {
    let bytes = files.read(path).map_err(|e| {
        Problem::error(
            Kind::File,
            path,
            "",
            format!("cannot read the config file: {e}"),
        )
    })?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| Problem::error(Kind::Parse, path, "", "not UTF-8 text"))?;
    let raw: RawConfig = parse_toml(text, path)?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let dir = if dir.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        dir
    };
    let pin_dir = dir.join(pin::PIN_DIR);
    let pin_sets = pin::load_pin_sets(&pin_dir, &dir, files);
    let mut v = Validator {
        file: path,
        dir: &dir,
        problems: Problems::default(),
    };
    let config = v.config(raw, pin_sets.as_ref().ok().map(|(sets, _)| sets));
    let mut problems = v.problems;
    match pin_sets {
        Ok((_, warnings)) => problems.extend(warnings),
        Err(p) => problems.extend(p),
    }
    match (config, problems.has_errors()) {
        (Some(c), false) => Ok((c, problems)),
        _ => Err(problems),
    }
}

/// The `[log] format` of a config file, read before logging is set up; anything unreadable
/// gives the default (the full load reports it properly).
pub fn peek_log_format(path: &Path) -> LogFormat {
    let format = std::fs::read_to_string(path)
        .ok()
        .and_then(|t| t.parse::<toml::Table>().ok())
        .and_then(|t| t.get("log")?.get("format")?.as_str().map(str::to_string));
    match format.as_deref() {
        Some("json") => LogFormat::Json,
        _ => LogFormat::Text,
    }
}

/// `host` as a Host header names it: with `:port` only when the port is not the scheme's
/// default (80, or 443 with `tls`).
pub fn host_with_port(host: &str, port: Option<u16>, tls: bool) -> String {
    match port {
        Some(p) if p != if tls { 443 } else { 80 } => format!("{host}:{p}"),
        _ => host.to_string(),
    }
}

/// `.` or `..` as a segment, also percent-encoded (`%2e`).
pub fn has_dot_segment(path: &str) -> bool {
    // Runs on every request: compares in place instead of building decoded copies.
    path.split('/').any(|seg| {
        let rest = dot(seg.as_bytes());
        rest.is_some_and(|r| r.is_empty() || dot(r).is_some_and(<[u8]>::is_empty))
    })
}

/// `s` after one leading `.` or `%2e` (any case), if it starts with one.
fn dot(s: &[u8]) -> Option<&[u8]> {
    match s {
        [b'.', rest @ ..] => Some(rest),
        [b'%', b'2', e, rest @ ..] if e.eq_ignore_ascii_case(&b'e') => Some(rest),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::fields::valid_host_pattern;
    use super::*;

    #[test]
    fn dot_segments_are_found_encoded_or_not() {
        assert!(has_dot_segment("/a/../b"));
        assert!(has_dot_segment("/a/%2E%2e/b"));
        assert!(has_dot_segment("/./x"));
        assert!(!has_dot_segment("/a/..b/c"));
        assert!(!has_dot_segment("/a/.well-known"));
        assert!(has_dot_segment("/a/.%2E"));
        assert!(has_dot_segment(".."));
        assert!(has_dot_segment("/a/%2e"));
        assert!(!has_dot_segment("/a/%2e%2e%2e/b"));
        assert!(!has_dot_segment("/a/%2/b"));
        assert!(!has_dot_segment("/a/%2f/b"));
        assert!(!has_dot_segment(""));
    }

    #[test]
    fn host_patterns() {
        assert!(valid_host_pattern("api.example.com"));
        assert!(valid_host_pattern("*.example.com"));
        assert!(!valid_host_pattern("*.com"));
        assert!(!valid_host_pattern("a.*.com"));
        assert!(!valid_host_pattern(""));
    }
}
