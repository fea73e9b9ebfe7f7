//! The HTTP rules checked on a request before it is forwarded and on an upstream's response
//! head before it reaches the client (RFC 9110, 9112, 9113): one valid Host, the exact head
//! size limits, `OPTIONS *`, cookie fields, and upstream heads that cannot be passed on
//! faithfully. Pure functions over parsed heads; no I/O, no metrics.

use http::header::{self, HeaderMap, HeaderValue};
use http::uri::Authority;
use http::{StatusCode, Version, request, response};

/// What is wrong with a request head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadRequest {
    /// No Host (HTTP/1.1) and no `:authority` (HTTP/2).
    NoHost,
    /// Two Host fields, or one that is empty, a list, carries userinfo or does not parse.
    InvalidHost,
}

/// Why an upstream response head is refused with 502.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadResponse {
    /// 101 without an upgrade asked for: the client would be handed a raw stream.
    UnaskedSwitch,
    /// Both Content-Length and Transfer-Encoding (RFC 9112 §6.3: framing is ambiguous).
    LengthAndChunked,
    /// The head is larger than `limits.max_response_header_bytes`.
    HeadTooLarge,
}

impl BadResponse {
    pub fn as_str(self) -> &'static str {
        match self {
            BadResponse::UnaskedSwitch => "101 Switching Protocols without an upgrade request",
            BadResponse::LengthAndChunked => "both Content-Length and Transfer-Encoding",
            BadResponse::HeadTooLarge => "response head over limits.max_response_header_bytes",
        }
    }
}

/// The authority the client addressed, as sent (host and optional port): as a header value
/// (for X-Forwarded-Host, the access log and `preserve_host`) and parsed. HTTP/1.1 needs
/// exactly one Host field even with an absolute-form target (RFC 9112 §3.2); HTTP/2 takes
/// `:authority`, else Host. An HTTP/1.1 Host value is shared with the request head, not copied.
pub fn client_authority(parts: &request::Parts) -> Result<(HeaderValue, Authority), BadRequest> {
    let mut hosts = parts.headers.get_all(header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(BadRequest::InvalidHost);
    }
    let (value, authority) = match (parts.version, parts.uri.authority(), host) {
        // An absolute-form target names the authority; Host is still required (and ignored).
        (Version::HTTP_2, Some(a), _) | (_, Some(a), Some(_)) => (
            HeaderValue::from_str(a.as_str()).map_err(|_| BadRequest::InvalidHost)?,
            a.clone(),
        ),
        (_, _, Some(h)) => (
            h.clone(),
            Authority::try_from(h.as_bytes()).map_err(|_| BadRequest::InvalidHost)?,
        ),
        (Version::HTTP_2 | Version::HTTP_3, None, None) | (_, _, None) => {
            return Err(BadRequest::NoHost);
        }
    };
    if valid_authority(&authority) {
        Ok((value, authority))
    } else {
        Err(BadRequest::InvalidHost)
    }
}

/// A Host value that names one host: no userinfo, no list, no spaces, a numeric port.
fn valid_authority(a: &Authority) -> bool {
    let v = a.as_str();
    if v.is_empty() || v.contains(['@', ',', ' ', '\t']) {
        return false;
    }
    // `Authority` accepts a port it cannot read ("a.com:x"); a Host port is digits.
    let after_host = match v.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((_, after)) => after,
            None => return false,
        },
        None => v.find(':').map_or("", |i| &v[i..]),
    };
    let port_ok = after_host.is_empty()
        || after_host
            .strip_prefix(':')
            .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    port_ok && v.len() > after_host.len()
}

/// The size of a request head as the limit counts it: the bytes of an HTTP/1.1 head (request
/// line, `name: value` lines, the empty line), and for HTTP/2 the header list size of
/// RFC 9113 §6.5.2 (name + value + 32 per field, pseudo-fields included), which is what
/// `SETTINGS_MAX_HEADER_LIST_SIZE` means.
pub fn request_head_size(parts: &request::Parts) -> usize {
    let fields: usize = parts
        .headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len())
        .sum();
    let n = parts.headers.len();
    if parts.version == Version::HTTP_2 {
        let pq = parts.uri.path_and_query().map_or(1, |p| p.as_str().len());
        let authority = parts.uri.authority().map_or(0, |a| a.as_str().len());
        let scheme = parts.uri.scheme_str().map_or(0, str::len);
        let pseudo = (7 + parts.method.as_str().len() + 32)
            + (5 + pq + 32)
            + (7 + scheme + 32)
            + (10 + authority + 32);
        fields + 32 * n + pseudo
    } else {
        let target = target_len(&parts.uri);
        let line = parts.method.as_str().len() + 1 + target + " HTTP/1.1\r\n".len();
        line + fields + 4 * n + 2
    }
}

/// The length of `uri` as written on a request line (its `Display`), without formatting it.
fn target_len(uri: &http::Uri) -> usize {
    uri.scheme_str().map_or(0, |s| s.len() + 3)
        + uri.authority().map_or(0, |a| a.as_str().len())
        + uri.path().len()
        + uri.query().map_or(0, |q| q.len() + 1)
}

/// The size of a response head as HTTP/1.1 carries it.
pub fn response_head_size(parts: &response::Parts) -> usize {
    let fields: usize = parts
        .headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 4)
        .sum();
    "HTTP/1.1 200 ".len() + parts.status.canonical_reason().map_or(0, str::len) + 2 + fields + 2
}

/// An upstream head the proxy refuses to pass on.
pub fn check_response(parts: &response::Parts, max_head: usize) -> Result<(), BadResponse> {
    if parts.status == StatusCode::SWITCHING_PROTOCOLS {
        return Err(BadResponse::UnaskedSwitch);
    }
    if parts.headers.contains_key(header::CONTENT_LENGTH)
        && parts.headers.contains_key(header::TRANSFER_ENCODING)
    {
        return Err(BadResponse::LengthAndChunked);
    }
    if response_head_size(parts) > max_head {
        return Err(BadResponse::HeadTooLarge);
    }
    Ok(())
}

/// HTTP/2 may split `cookie` into several fields; HTTP/1.1 allows one (RFC 9113 §8.2.3), so
/// they are joined with "; " before forwarding.
pub fn join_cookies(headers: &mut HeaderMap) {
    if headers.get_all(header::COOKIE).iter().nth(1).is_none() {
        return;
    }
    let mut joined = Vec::new();
    for v in headers.get_all(header::COOKIE) {
        if !joined.is_empty() {
            joined.extend_from_slice(b"; ");
        }
        joined.extend_from_slice(v.as_bytes());
    }
    // Each part was a valid header value and "; " is too, so the join is one.
    if let Ok(v) = HeaderValue::from_bytes(&joined) {
        headers.insert(header::COOKIE, v);
    }
}

/// Whether the request target is the asterisk form (`OPTIONS *`, RFC 9112 §3.2.4).
pub fn is_asterisk(parts: &request::Parts) -> bool {
    parts.uri.path() == "*"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(version: Version, uri: &str, hosts: &[&str]) -> request::Parts {
        let mut b = http::Request::get(uri).version(version);
        for h in hosts {
            b = b.header("host", *h);
        }
        b.body(()).expect("request").into_parts().0
    }

    #[test]
    fn host_must_be_one_valid_authority() {
        let text = |r: Result<(HeaderValue, Authority), BadRequest>| {
            r.map(|(v, a)| {
                assert_eq!(v.as_bytes(), a.as_str().as_bytes());
                a.as_str().to_string()
            })
        };
        let ok = |h: &[&str]| text(client_authority(&req(Version::HTTP_11, "/", h)));
        assert_eq!(
            ok(&["api.example.com:8443"]).as_deref(),
            Ok("api.example.com:8443")
        );
        assert_eq!(ok(&["[::1]:8443"]).as_deref(), Ok("[::1]:8443"));
        assert_eq!(ok(&[]), Err(BadRequest::NoHost));
        for bad in [
            "",
            "a.com,b.com",
            "user@a.com",
            "a.com:x",
            "a com",
            "a.com:",
        ] {
            assert_eq!(ok(&[bad]), Err(BadRequest::InvalidHost), "{bad:?}");
        }
        assert_eq!(ok(&["a.com", "a.com"]), Err(BadRequest::InvalidHost));
        let h2 = req(Version::HTTP_2, "https://api.example.com/x", &[]);
        assert_eq!(
            text(client_authority(&h2)).as_deref(),
            Ok("api.example.com")
        );
        let absolute = req(Version::HTTP_11, "https://api.example.com/x", &["other"]);
        assert_eq!(
            text(client_authority(&absolute)).as_deref(),
            Ok("api.example.com")
        );
    }

    #[test]
    fn a_target_is_counted_as_written() {
        for uri in [
            "/",
            "/a/b?x=1&y",
            "*",
            "https://api.example.com:8443/p?q",
            "http://h/",
            "api.example.com:443",
        ] {
            let u: http::Uri = uri.parse().expect("uri");
            assert_eq!(target_len(&u), u.to_string().len(), "{uri}");
        }
    }

    #[test]
    fn an_http1_head_is_counted_in_wire_bytes() {
        let mut p = req(Version::HTTP_11, "/abc", &["h"]);
        p.headers.insert("x-a", HeaderValue::from_static("12345"));
        let wire = "GET /abc HTTP/1.1\r\nhost: h\r\nx-a: 12345\r\n\r\n";
        assert_eq!(request_head_size(&p), wire.len());
    }

    #[test]
    fn h2_cookie_fields_are_joined() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("a=1"));
        h.append(header::COOKIE, HeaderValue::from_static("b=2"));
        join_cookies(&mut h);
        assert_eq!(h.get_all(header::COOKIE).iter().count(), 1);
        assert_eq!(h[header::COOKIE], "a=1; b=2");
    }
}
