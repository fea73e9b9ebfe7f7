//! `config.toml` and `pins/` → a validated [`Config`].
//!
//! Parsing happens in stages: raw serde structs (unknown keys rejected), then checks that need
//! only the config file itself. Rules that need certificates and pins together (DESIGN.md §4)
//! belong to the TLS layer and run when a snapshot is built. Every problem names the file and
//! the dotted field. This module opens no sockets and builds no TLS objects.

mod raw;

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::uri::{Authority, Scheme, Uri};
use serde::de::DeserializeOwned;

use crate::diag::{Kind, Problem, Problems};
use crate::files::Files;
use crate::pin::{self, PinSet};
use raw::*;

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
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub name: String,
    pub listen: SocketAddr,
    pub pin_sets: Vec<String>,
    pub certs: Vec<CertSpec>,
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
    let config = v.config(raw, pin_sets.as_ref().ok());
    let mut problems = v.problems;
    if let Err(p) = pin_sets {
        problems.extend(p);
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

/// Deserializes TOML with the dotted path of the failing field in the message.
pub(crate) fn parse_toml<T: DeserializeOwned>(text: &str, file: &Path) -> Result<T, Problem> {
    let de = toml::Deserializer::parse(text)
        .map_err(|e| Problem::error(Kind::Parse, file, "", one_line(&e.to_string())))?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let field = e.path().to_string();
        let field = if field == "." { String::new() } else { field };
        Problem::error(
            Kind::Parse,
            file,
            field,
            one_line(&e.into_inner().to_string()),
        )
    })
}

/// toml's messages span several lines with a source excerpt; keep the first and the note.
fn one_line(msg: &str) -> String {
    let lines: Vec<&str> = msg
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let mut out = lines.first().copied().unwrap_or_default().to_string();
    if let Some(last) = lines.last().filter(|_| lines.len() > 1) {
        let note = last.trim_start_matches(['|', '^', ' ']).trim();
        if !note.is_empty() && note != out {
            out.push_str(": ");
            out.push_str(note);
        }
    }
    out
}

struct Validator<'a> {
    file: &'a Path,
    dir: &'a Path,
    problems: Problems,
}

impl Validator<'_> {
    fn err(&mut self, kind: Kind, field: impl Into<String>, msg: impl Into<String>) {
        self.problems
            .push(Problem::error(kind, self.file, field, msg));
    }

    fn warn(&mut self, field: impl Into<String>, msg: impl Into<String>) {
        self.problems
            .push(Problem::warning(Kind::Validation, self.file, field, msg));
    }

    fn config(
        &mut self,
        raw: RawConfig,
        pin_sets: Option<&BTreeMap<String, PinSet>>,
    ) -> Option<Config> {
        let admin = self
            .addr("admin.listen", &raw.admin.listen)
            .map(|listen| Admin { listen });
        let expiry = self.expiry(&raw.expiry);
        let limits = self.limits(&raw.limits);
        let listeners = self.listeners(raw.listener, pin_sets);
        let upstreams = self.upstreams(raw.upstream, pin_sets);
        let routes = self.routes(raw.route, &upstreams, &limits);
        Some(Config {
            file: self.file.to_path_buf(),
            dir: self.dir.to_path_buf(),
            admin: admin?,
            expiry,
            reload: Reload {
                poll_interval: Some(raw.reload.poll_interval).filter(|d| !d.is_zero()),
            },
            log: Log {
                format: match raw.log.format {
                    RawLogFormat::Text => LogFormat::Text,
                    RawLogFormat::Json => LogFormat::Json,
                },
                access: raw.log.access,
            },
            limits,
            listeners,
            routes,
            upstreams,
            pin_sets: pin_sets.cloned().unwrap_or_default(),
        })
    }

    fn addr(&mut self, field: &str, s: &str) -> Option<SocketAddr> {
        match s.parse() {
            Ok(a) => Some(a),
            Err(_) => {
                self.err(
                    Kind::Validation,
                    field,
                    format!("\"{s}\" is not an IP address and port like \"127.0.0.1:8443\" or \"[::]:443\""),
                );
                None
            }
        }
    }

    fn expiry(&mut self, r: &RawExpiry) -> Expiry {
        if r.critical_before > r.warn_before {
            self.err(
                Kind::Validation,
                "expiry.critical_before",
                "must not be longer than `expiry.warn_before`",
            );
        }
        if r.pin_set_critical_before > r.pin_set_warn_before {
            self.err(
                Kind::Validation,
                "expiry.pin_set_critical_before",
                "must not be longer than `expiry.pin_set_warn_before`",
            );
        }
        if r.check_every < Duration::from_secs(1) {
            self.err(
                Kind::Validation,
                "expiry.check_every",
                "must be at least 1s",
            );
        }
        Expiry {
            warn_before: r.warn_before,
            critical_before: r.critical_before,
            pin_set_warn_before: r.pin_set_warn_before,
            pin_set_critical_before: r.pin_set_critical_before,
            pin_set_grace: r.pin_set_grace,
            check_every: r.check_every,
        }
    }

    fn limits(&mut self, r: &RawLimits) -> Limits {
        for (name, d) in [
            ("tls_handshake_timeout", r.tls_handshake_timeout),
            ("header_read_timeout", r.header_read_timeout),
            ("idle_timeout", r.idle_timeout),
            ("upstream_connect_timeout", r.upstream_connect_timeout),
            ("upstream_response_timeout", r.upstream_response_timeout),
            ("upstream_idle_timeout", r.upstream_idle_timeout),
        ] {
            if d.is_zero() {
                self.err(
                    Kind::Validation,
                    format!("limits.{name}"),
                    "must be greater than 0",
                );
            }
        }
        if r.max_connections == 0 {
            self.err(
                Kind::Validation,
                "limits.max_connections",
                "must be at least 1",
            );
        }
        if r.max_header_bytes < 8192 {
            self.err(
                Kind::Validation,
                "limits.max_header_bytes",
                "must be at least 8192",
            );
        }
        Limits {
            tls_handshake_timeout: r.tls_handshake_timeout,
            header_read_timeout: r.header_read_timeout,
            idle_timeout: r.idle_timeout,
            max_connections: r.max_connections,
            max_header_bytes: r.max_header_bytes,
            upstream_connect_timeout: r.upstream_connect_timeout,
            upstream_response_timeout: r.upstream_response_timeout,
            upstream_idle_timeout: r.upstream_idle_timeout,
            shutdown_delay: r.shutdown_delay,
            shutdown_grace: r.shutdown_grace,
        }
    }

    fn listeners(
        &mut self,
        raw: Vec<RawListener>,
        pin_sets: Option<&BTreeMap<String, PinSet>>,
    ) -> Vec<Listener> {
        if raw.is_empty() {
            self.err(
                Kind::Validation,
                "listener",
                "at least one [[listener]] is required",
            );
        }
        let mut names = HashSet::new();
        let mut addrs = HashSet::new();
        let mut out = Vec::new();
        for (i, l) in raw.into_iter().enumerate() {
            let at = format!("listener[{i}]");
            if l.name.is_empty()
                || !l
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                self.err(
                    Kind::Validation,
                    format!("{at}.name"),
                    "must be non-empty letters, digits, '-' or '_'",
                );
            }
            if !names.insert(l.name.clone()) {
                self.err(
                    Kind::Validation,
                    format!("{at}.name"),
                    format!("\"{}\" is used by another listener", l.name),
                );
            }
            if l.proxy_protocol.is_some() {
                self.err(
                    Kind::Validation,
                    format!("{at}.proxy_protocol"),
                    "is reserved and not available in this version; remove it",
                );
            }
            let listen = self.addr(&format!("{at}.listen"), &l.listen);
            if let Some(a) = listen.filter(|a| a.port() != 0)
                && !addrs.insert(a)
            {
                self.err(
                    Kind::Validation,
                    format!("{at}.listen"),
                    format!("{a} is used by another listener"),
                );
            }
            if l.pin_sets.is_empty() {
                self.err(
                    Kind::Validation,
                    format!("{at}.pin_sets"),
                    "name at least one pin set from pins/ (what the shipped apps pin)",
                );
            }
            for (j, ps) in l.pin_sets.iter().enumerate() {
                match pin_sets.map(|s| s.get(ps)) {
                    Some(None) => self.err(
                        Kind::Validation,
                        format!("{at}.pin_sets[{j}]"),
                        format!("no pin set \"{ps}\" in {}/ (expected {}/{ps}.toml)", pin::PIN_DIR, pin::PIN_DIR),
                    ),
                    Some(Some(set)) if set.mode == crate::pin::PinMode::Report => self.err(
                        Kind::Validation,
                        format!("{at}.pin_sets[{j}]"),
                        format!("pin set \"{ps}\" has mode = \"report\", which is for upstream pin sets only; apps always enforce"),
                    ),
                    _ => {}
                }
            }
            if l.cert.is_empty() {
                self.err(
                    Kind::Validation,
                    format!("{at}.cert"),
                    "at least one [[listener.cert]] is required",
                );
            }
            let mut seen_names = HashSet::new();
            let mut certs = Vec::new();
            for (j, c) in l.cert.into_iter().enumerate() {
                let cat = format!("{at}.cert[{j}]");
                for (k, n) in c.server_names.iter().enumerate() {
                    let n = n.to_ascii_lowercase();
                    if !valid_host_pattern(&n) {
                        self.err(
                            Kind::Validation,
                            format!("{cat}.server_names[{k}]"),
                            format!("\"{n}\" is not a DNS name or \"*.example.com\" wildcard"),
                        );
                    }
                    if !seen_names.insert(n.clone()) {
                        self.err(
                            Kind::Validation,
                            format!("{cat}.server_names[{k}]"),
                            format!("\"{n}\" is served by another certificate of this listener"),
                        );
                    }
                }
                if c.server_names.is_empty() && j > 0 {
                    self.err(
                        Kind::Validation,
                        format!("{cat}.server_names"),
                        "only the first certificate may have no server_names (it answers unknown SNI)",
                    );
                }
                certs.push(CertSpec {
                    field: cat,
                    server_names: c
                        .server_names
                        .iter()
                        .map(|n| n.to_ascii_lowercase())
                        .collect(),
                    chain: self.dir.join(c.chain),
                    key: self.dir.join(c.key),
                    anchor: c.anchor.map(|a| self.dir.join(a)),
                });
            }
            if let Some(listen) = listen {
                out.push(Listener {
                    name: l.name,
                    listen,
                    pin_sets: l.pin_sets,
                    certs,
                });
            }
        }
        out
    }

    fn upstreams(
        &mut self,
        raw: BTreeMap<String, RawUpstream>,
        pin_sets: Option<&BTreeMap<String, PinSet>>,
    ) -> BTreeMap<String, Upstream> {
        let mut out = BTreeMap::new();
        for (name, u) in raw {
            let at = format!("upstream.{name}");
            let Some((tls, authority, host, base_path)) = self.url(&format!("{at}.url"), &u.url)
            else {
                continue;
            };
            let trust = match (u.trust, u.ca) {
                (Some(_), Some(_)) => {
                    self.err(
                        Kind::Validation,
                        format!("{at}.ca"),
                        "give either `trust` or `ca`, not both",
                    );
                    continue;
                }
                (_, Some(ca)) => Trust::Ca(self.dir.join(ca)),
                (Some(RawTrust::System), None) => Trust::System,
                (Some(RawTrust::Webpki) | None, None) => Trust::WebPki,
            };
            if !tls
                && (!matches!(trust, Trust::WebPki)
                    || u.server_name.is_some()
                    || u.pin_set.is_some())
            {
                self.err(
                    Kind::Validation,
                    format!("{at}.url"),
                    "`trust`, `ca`, `server_name` and `pin_set` need an https:// url",
                );
                continue;
            }
            if let Some(sn) = &u.server_name {
                if !valid_host_pattern(sn) || sn.starts_with("*.") {
                    self.err(
                        Kind::Validation,
                        format!("{at}.server_name"),
                        format!("\"{sn}\" is not a DNS name"),
                    );
                }
            } else if tls && host.parse::<std::net::IpAddr>().is_ok() {
                self.warn(
                    format!("{at}.url"),
                    "the url holds an IP address: the certificate must carry it as an IP SAN, or set `server_name`",
                );
            }
            if let Some(ps) = &u.pin_set {
                if let Some(None) = pin_sets.map(|s| s.get(ps)) {
                    self.err(
                        Kind::Validation,
                        format!("{at}.pin_set"),
                        format!(
                            "no pin set \"{ps}\" in {}/ (expected {}/{ps}.toml)",
                            pin::PIN_DIR,
                            pin::PIN_DIR
                        ),
                    )
                }
            } else if u.pin_match.is_some() {
                self.err(
                    Kind::Validation,
                    format!("{at}.pin_match"),
                    "needs `pin_set`",
                );
            }
            out.insert(
                name.clone(),
                Upstream {
                    name,
                    tls,
                    authority,
                    host,
                    base_path,
                    trust,
                    server_name: u.server_name,
                    pin_set: u.pin_set,
                    pin_match: match u.pin_match {
                        Some(RawPinMatch::Leaf) => PinMatch::Leaf,
                        Some(RawPinMatch::Chain) | None => PinMatch::Chain,
                    },
                },
            );
        }
        out
    }

    fn url(&mut self, field: &str, s: &str) -> Option<(bool, Authority, String, String)> {
        let bad = |msg: &str| format!("\"{s}\" {msg}");
        let uri: Uri = match s.parse() {
            Ok(u) => u,
            Err(_) => {
                self.err(
                    Kind::Validation,
                    field,
                    bad("is not a URL like \"https://api.example.net/v1\""),
                );
                return None;
            }
        };
        let tls = match uri.scheme() {
            Some(s) if *s == Scheme::HTTPS => true,
            Some(s) if *s == Scheme::HTTP => false,
            _ => {
                self.err(
                    Kind::Validation,
                    field,
                    bad("must start with http:// or https://"),
                );
                return None;
            }
        };
        let Some(authority) = uri.authority().cloned() else {
            self.err(Kind::Validation, field, bad("has no host"));
            return None;
        };
        if authority.as_str().contains('@') {
            self.err(Kind::Validation, field, bad("must not carry credentials"));
            return None;
        }
        if uri.query().is_some() {
            self.err(Kind::Validation, field, bad("must not have a query string"));
            return None;
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        let base_path = uri.path().trim_end_matches('/').to_string();
        Some((tls, authority, host, base_path))
    }

    fn routes(
        &mut self,
        raw: Vec<RawRoute>,
        upstreams: &BTreeMap<String, Upstream>,
        limits: &Limits,
    ) -> Vec<Route> {
        if raw.is_empty() {
            self.err(
                Kind::Validation,
                "route",
                "at least one [[route]] is required",
            );
        }
        let mut names = HashSet::new();
        let mut keys = HashSet::new();
        let mut out = Vec::new();
        for (i, r) in raw.into_iter().enumerate() {
            let at = format!("route[{i}]");
            if !r.path_prefix.starts_with('/') {
                self.err(
                    Kind::Validation,
                    format!("{at}.path_prefix"),
                    "must start with '/'",
                );
                continue;
            }
            if r.path_prefix.contains(['?', '#']) || has_dot_segment(&r.path_prefix) {
                self.err(
                    Kind::Validation,
                    format!("{at}.path_prefix"),
                    "must be a plain path without '?', '#', '.' or '..' segments",
                );
                continue;
            }
            let host = r.host.map(|h| h.to_ascii_lowercase());
            if let Some(h) = &host
                && !valid_host_pattern(h)
            {
                self.err(
                    Kind::Validation,
                    format!("{at}.host"),
                    format!("\"{h}\" is not a host name or \"*.example.com\" (one label) wildcard"),
                );
            }
            if !upstreams.contains_key(&r.upstream) {
                self.err(
                    Kind::Validation,
                    format!("{at}.upstream"),
                    format!("no [upstream.{}] section", r.upstream),
                );
            }
            let path_prefix = r.path_prefix.trim_end_matches('/').to_string();
            if !keys.insert((host.clone(), path_prefix.clone())) {
                self.err(
                    Kind::Validation,
                    format!("{at}.path_prefix"),
                    "another route has the same host and path_prefix",
                );
            }
            let name = r.name.unwrap_or_else(|| r.path_prefix.clone());
            if !names.insert(name.clone()) {
                self.err(
                    Kind::Validation,
                    format!("{at}.name"),
                    format!("\"{name}\" is used by another route"),
                );
            }
            if r.timeout.is_some_and(|t| t.is_zero()) {
                self.err(
                    Kind::Validation,
                    format!("{at}.timeout"),
                    "must be greater than 0",
                );
            }
            out.push(Route {
                name,
                host,
                path_prefix,
                upstream: r.upstream,
                strip_prefix: r.strip_prefix,
                preserve_host: r.preserve_host,
                timeout: r.timeout.unwrap_or(limits.upstream_response_timeout),
            });
        }
        out
    }
}

/// A DNS name, or `*.` followed by one (the wildcard stands for exactly one label).
fn valid_host_pattern(s: &str) -> bool {
    let name = s.strip_prefix("*.").unwrap_or(s);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                && !l.starts_with('-')
        })
        && (!s.starts_with("*.") || name.contains('.'))
}

/// `.` or `..` as a segment, also percent-encoded (`%2e`).
pub fn has_dot_segment(path: &str) -> bool {
    path.split('/').any(|seg| {
        let lower = seg.to_ascii_lowercase().replace("%2e", ".");
        lower == "." || lower == ".."
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_segments_are_found_encoded_or_not() {
        assert!(has_dot_segment("/a/../b"));
        assert!(has_dot_segment("/a/%2E%2e/b"));
        assert!(has_dot_segment("/./x"));
        assert!(!has_dot_segment("/a/..b/c"));
        assert!(!has_dot_segment("/a/.well-known"));
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
