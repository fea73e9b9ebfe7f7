//! Checks that need only the config file: addresses, names, references between sections,
//! limits. Turns the raw serde mirror into the validated types, collecting every problem.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use super::fields::valid_host_pattern;
use super::raw::*;
use super::*;

pub(super) struct Validator<'a> {
    pub(super) file: &'a Path,
    pub(super) dir: &'a Path,
    pub(super) problems: Problems,
}

impl Validator<'_> {
    pub(super) fn err(&mut self, kind: Kind, field: impl Into<String>, msg: impl Into<String>) {
        self.problems
            .push(Problem::error(kind, self.file, field, msg));
    }

    pub(super) fn warn(&mut self, field: impl Into<String>, msg: impl Into<String>) {
        self.problems
            .push(Problem::warning(Kind::Validation, self.file, field, msg));
    }

    pub(super) fn config(
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
        let auth = super::auth::policies(raw.auth, self.file, self.dir, &mut self.problems);
        let routes = self.routes(raw.route, &upstreams, &limits, &auth);
        for name in auth.keys() {
            if !routes.iter().any(|r| r.auth.as_ref() == Some(name)) {
                self.warn(
                    format!("auth.{name}"),
                    "no route names this policy: it checks nothing",
                );
            }
        }
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
            auth,
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
            ("upstream_read_timeout", r.upstream_read_timeout),
            ("client_write_timeout", r.client_write_timeout),
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
        if r.max_response_header_bytes < 8192 {
            self.err(
                Kind::Validation,
                "limits.max_response_header_bytes",
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
            upstream_read_timeout: r.upstream_read_timeout,
            client_write_timeout: r.client_write_timeout,
            max_response_header_bytes: r.max_response_header_bytes,
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
            let proxy_protocol = self.proxy_protocol(&at, l.proxy_protocol, &l.proxy_protocol_from);
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
            self.listener_pin_sets(&at, &l.pin_sets, pin_sets);
            let certs = self.listener_certs(&at, l.cert);
            let app_version = l
                .app_version
                .and_then(|a| self.app_version(&format!("{at}.app_version"), a));
            self.app_version_warnings(&at, app_version.is_some(), &l.pin_sets, pin_sets);
            if let Some(listen) = listen {
                out.push(Listener {
                    name: l.name,
                    listen,
                    pin_sets: l.pin_sets,
                    certs,
                    app_version,
                    proxy_protocol,
                    session_ticket_keys: l.session_ticket_keys.map(|p| self.dir.join(p)),
                });
            }
        }
        out
    }

    /// A listener's `pin_sets`: at least one, each in pins/, none in report mode.
    fn listener_pin_sets(
        &mut self,
        at: &str,
        names: &[String],
        pin_sets: Option<&BTreeMap<String, PinSet>>,
    ) {
        if names.is_empty() {
            self.err(
                Kind::Validation,
                format!("{at}.pin_sets"),
                "name at least one pin set from pins/ (what the shipped apps pin)",
            );
        }
        for (j, ps) in names.iter().enumerate() {
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
    }

    /// A listener's `[[listener.cert]]` blocks, server names checked and unique.
    fn listener_certs(&mut self, at: &str, raw: Vec<RawCert>) -> Vec<CertSpec> {
        if raw.is_empty() {
            self.err(
                Kind::Validation,
                format!("{at}.cert"),
                "at least one [[listener.cert]] is required",
            );
        }
        let mut seen_names = HashSet::new();
        let mut certs = Vec::new();
        for (j, c) in raw.into_iter().enumerate() {
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
        certs
    }

    /// `app_version` and `app_versions` only count together: say so when one is missing.
    fn app_version_warnings(
        &mut self,
        at: &str,
        has_app_version: bool,
        names: &[String],
        pin_sets: Option<&BTreeMap<String, PinSet>>,
    ) {
        if let (true, Some(sets)) = (has_app_version, pin_sets)
            && !names
                .iter()
                .any(|ps| sets.get(ps).is_some_and(|s| s.app_versions.is_some()))
        {
            self.warn(
            format!("{at}.app_version"),
            "none of this listener's pin sets has `app_versions`: every request counts as pin_set=\"unknown\"",
        );
        }
        if let (false, Some(sets)) = (has_app_version, pin_sets) {
            for (j, ps) in names.iter().enumerate() {
                if sets.get(ps).is_some_and(|s| s.app_versions.is_some()) {
                    self.warn(
                    format!("{at}.pin_sets[{j}]"),
                    format!("pin set \"{ps}\" has `app_versions` but this listener has no `app_version` to read versions from; nothing is counted"),
                );
                }
            }
        }
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
            let host_header = self.host_header(&at, &u, &authority, tls);
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
                    host_header,
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

    fn routes(
        &mut self,
        raw: Vec<RawRoute>,
        upstreams: &BTreeMap<String, Upstream>,
        limits: &Limits,
        auth: &BTreeMap<String, AuthPolicy>,
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
            if !self.path_prefix_ok(&at, &r.path_prefix) {
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
            if let Some(a) = &r.auth
                && !auth.contains_key(a)
                && !self
                    .problems
                    .errors()
                    .any(|p| p.field.starts_with(&format!("auth.{a}")))
            {
                self.err(
                    Kind::Validation,
                    format!("{at}.auth"),
                    format!("no [auth.{a}] section"),
                );
            }
            let response_headers = super::response_headers::resolve(
                r.response_headers,
                self.file,
                &at,
                &mut self.problems,
            );
            let host_header = match &r.host_header {
                Some(_) if r.preserve_host => {
                    self.err(
                        Kind::Validation,
                        format!("{at}.host_header"),
                        "cannot be combined with preserve_host = true",
                    );
                    None
                }
                Some(h) => self.host_header_value(&format!("{at}.host_header"), h),
                None => None,
            };
            out.push(Route {
                host_header,
                name,
                host,
                path_prefix,
                upstream: r.upstream,
                strip_prefix: r.strip_prefix,
                preserve_host: r.preserve_host,
                timeout: r.timeout.unwrap_or(limits.upstream_response_timeout),
                auth: r.auth,
                response_headers,
            });
        }
        out
    }

    /// A route's `path_prefix`: absolute, plain, and in the normal form requests are matched in.
    fn path_prefix_ok(&mut self, at: &str, prefix: &str) -> bool {
        if !prefix.starts_with('/') {
            self.err(
                Kind::Validation,
                format!("{at}.path_prefix"),
                "must start with '/'",
            );
            return false;
        }
        if prefix.contains(['?', '#']) || has_dot_segment(prefix) {
            self.err(
                Kind::Validation,
                format!("{at}.path_prefix"),
                "must be a plain path without '?', '#', '.' or '..' segments",
            );
            return false;
        }
        // Requests are matched in normal form: a prefix in another form would never match,
        // and its requests would fall to a route that may lack its `auth`.
        if crate::path::normalise(prefix).map_or(true, |n| n.is_changed() || n.is_ambiguous()) {
            self.err(
                Kind::Validation,
                format!("{at}.path_prefix"),
                "must be in normal form: no '//', no percent-encoded letters, digits or '-._~', \
                 upper-case hex, and no ';', '\\', %2F, %5C or %3B",
            );
            return false;
        }
        true
    }
}
