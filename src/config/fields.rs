//! Validation of single fields that take more than a parse: an upstream's url, its Host
//! (`host_header`, else `server_name` and port), a listener's app-version source, and PROXY
//! protocol peers.
//! Kept beside `validate`, whose `Validator` collects the problems these report.

use http::uri::{Authority, Scheme, Uri};

use super::raw::*;
use super::validate::Validator;
use super::*;

impl Validator<'_> {
    /// `host_header` when given (a host, optionally with a port), else `server_name` plus the
    /// url's port when that is not the scheme's default.
    pub(super) fn host_header(
        &mut self,
        at: &str,
        u: &RawUpstream,
        authority: &http::uri::Authority,
        tls: bool,
    ) -> Option<http::uri::Authority> {
        if let Some(h) = &u.host_header {
            return self.host_header_value(&format!("{at}.host_header"), h);
        }
        let name = u.server_name.as_ref()?;
        super::host_with_port(name, authority.port_u16(), tls)
            .parse()
            .ok()
    }

    pub(super) fn app_version(
        &mut self,
        field: &str,
        raw: RawAppVersion,
    ) -> Option<AppVersionFrom> {
        match (raw.header, raw.user_agent) {
            (Some(h), None) => match http::HeaderName::from_bytes(h.as_bytes()) {
                Ok(name) => Some(AppVersionFrom::Header(name.as_str().to_string())),
                Err(_) => {
                    self.err(
                        Kind::Validation,
                        format!("{field}.header"),
                        format!("\"{h}\" is not a header name"),
                    );
                    None
                }
            },
            (None, Some(p)) => match regex::Regex::new(&p) {
                Ok(re) if re.captures_len() > 1 => Some(AppVersionFrom::UserAgent(p)),
                Ok(_) => {
                    self.err(
                        Kind::Validation,
                        format!("{field}.user_agent"),
                        format!("\"{p}\" has no capture group: put the version in parentheses, like \"MyShop/(\\\\S+)\""),
                    );
                    None
                }
                Err(e) => {
                    self.err(
                        Kind::Validation,
                        format!("{field}.user_agent"),
                        format!(
                            "\"{p}\" is not a regular expression: {}",
                            e.to_string().lines().last().unwrap_or_default()
                        ),
                    );
                    None
                }
            },
            _ => {
                self.err(
                    Kind::Validation,
                    field,
                    "give exactly one of `header` (like { header = \"X-App-Version\" }) or `user_agent` (like { user_agent = \"MyShop/(\\\\S+)\" })",
                );
                None
            }
        }
    }

    /// `proxy_protocol` needs the load balancers' addresses: a header from anyone else would let
    /// any client choose the address X-Forwarded-For and the access log show.
    pub(super) fn proxy_protocol(
        &mut self,
        at: &str,
        on: bool,
        from: &[String],
    ) -> Option<ProxyProtocol> {
        let mut nets = Vec::new();
        for (k, s) in from.iter().enumerate() {
            // A bare address is a one-host range, as nginx's set_real_ip_from takes it.
            let net = s
                .parse::<ipnet::IpNet>()
                .ok()
                .or_else(|| s.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from));
            match net {
                Some(n) => nets.push(n.trunc()),
                None => self.err(
                    Kind::Validation,
                    format!("{at}.proxy_protocol_from[{k}]"),
                    format!("\"{s}\" is not an address or CIDR range like \"10.0.0.0/8\""),
                ),
            }
        }
        match (on, from.is_empty()) {
            (true, true) => {
                self.err(
                    Kind::Validation,
                    format!("{at}.proxy_protocol_from"),
                    "name the load balancers' addresses (CIDRs): only they may send a PROXY header",
                );
                None
            }
            (true, false) => Some(ProxyProtocol { from: nets }),
            (false, false) => {
                self.err(
                    Kind::Validation,
                    format!("{at}.proxy_protocol_from"),
                    "has no effect without `proxy_protocol = true`",
                );
                None
            }
            (false, true) => None,
        }
    }

    /// A `host_header` value: a host name or address with an optional port.
    pub(super) fn host_header_value(
        &mut self,
        field: &str,
        h: &str,
    ) -> Option<http::uri::Authority> {
        let valid = h
            .parse::<http::uri::Authority>()
            .ok()
            .filter(|a| !a.as_str().contains('@') && !a.host().is_empty() && a.as_str() == h);
        if valid.is_none() {
            self.err(
                Kind::Validation,
                field.to_string(),
                format!("\"{h}\" is not a host name with an optional port"),
            );
        }
        valid
    }

    pub(super) fn url(
        &mut self,
        field: &str,
        s: &str,
    ) -> Option<(bool, Authority, String, String)> {
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
}

/// A DNS name, or `*.` followed by one (the wildcard stands for exactly one label).
pub(super) fn valid_host_pattern(s: &str) -> bool {
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
