//! Header rewriting between client and upstream: hop-by-hop removal (RFC 9110 §7.6.1),
//! `X-Forwarded-*` and `X-Real-IP` set from what the proxy saw (client-supplied values dropped).

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

// `Trailer` is end-to-end (RFC 9110 §6.6.2): hyper sends an HTTP/1.1 client only the
// trailer fields a response's `Trailer` declares, so it must pass.
/// Hop-by-hop names (RFC 9110 §7.6.1), spelled once for both the names and their lengths.
const HOP_NAMES: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "transfer-encoding",
    "upgrade",
];

static HOP_BY_HOP: [HeaderName; 7] = [
    HeaderName::from_static(HOP_NAMES[0]),
    HeaderName::from_static(HOP_NAMES[1]),
    HeaderName::from_static(HOP_NAMES[2]),
    HeaderName::from_static(HOP_NAMES[3]),
    HeaderName::from_static(HOP_NAMES[4]),
    HeaderName::from_static(HOP_NAMES[5]),
    HeaderName::from_static(HOP_NAMES[6]),
];

/// The lengths of the hop-by-hop names and of `te`, as bits: most names are ruled out by
/// their length alone.
const HOP_LENGTHS: u32 = {
    let mut bits = 1 << "te".len();
    let mut i = 0;
    while i < HOP_NAMES.len() {
        bits |= 1 << HOP_NAMES[i].len();
        i += 1;
    }
    bits
};

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
static FORWARDED: HeaderName = HeaderName::from_static("forwarded");

/// Removes hop-by-hop headers, including those named in `Connection`. `TE: trailers` is kept
/// (gRPC needs it); any other `TE` is dropped.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Runs twice per request: one pass over the names present (most heads carry none of these,
    // or only `Connection`) instead of a hash lookup per listed name.
    let mut present = 0u16;
    for name in headers.keys() {
        // Most names are ruled out by their length alone.
        let len = name.as_str().len();
        if len >= 32 || HOP_LENGTHS & (1 << len) == 0 {
            continue;
        }
        if let Some(i) = HOP_BY_HOP.iter().position(|h| h == name) {
            present |= 1 << i;
        } else if name == header::TE {
            present |= 1 << HOP_BY_HOP.len();
        }
    }
    if present == 0 {
        return;
    }
    // Judged before `Connection` is applied: RFC 9110 §10.1.4 has a client send `Connection: TE`
    // beside `TE: trailers`, and that must not cost the `trailers` it asks for.
    let keep_te = present & (1 << HOP_BY_HOP.len()) != 0
        && headers.get_all(header::TE).iter().any(|v| {
            v.to_str().is_ok_and(|s| {
                s.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
            })
        });
    if present & 1 != 0 {
        // HOP_BY_HOP[0] is Connection. Its values are shared, not copied, while names are
        // removed; only a second Connection line takes an allocation.
        let mut values = headers.get_all(header::CONNECTION).iter();
        let first = values.next().cloned();
        let rest: Vec<HeaderValue> = values.cloned().collect();
        for name in first
            .iter()
            .chain(&rest)
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
        {
            // `remove(&str)` lower-cases on the stack; a token that is no header name matches nothing.
            headers.remove(name.trim());
        }
    }
    for (i, name) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << i) != 0 {
            headers.remove(name);
        }
    }
    if present & (1 << HOP_BY_HOP.len()) != 0 {
        headers.remove(header::TE);
        if keep_te {
            headers.insert(header::TE, HeaderValue::from_static("trailers"));
        }
    }
}

/// Sets `X-Forwarded-For` and `X-Real-IP` to the client address (see [`client_address`]),
/// `X-Forwarded-Proto: https` and `X-Forwarded-Host`; whatever the client sent under these names
/// (and `Forwarded`) is dropped, because the clients are the internet.
pub fn set_forwarded(headers: &mut HeaderMap, client: &HeaderValue, host: &HeaderValue) {
    headers.remove(&FORWARDED);
    headers.insert(X_REAL_IP.clone(), client.clone());
    headers.insert(X_FORWARDED_FOR.clone(), client.clone());
    headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("https"));
    headers.insert(X_FORWARDED_HOST.clone(), host.clone());
}

/// A client address as a header value, made once per connection (a clone shares it).
pub fn client_address(ip: IpAddr) -> HeaderValue {
    HeaderValue::from(IpHeader(ip))
}

/// Whether the client asked to switch protocols (WebSocket and the like).
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
}

struct IpHeader(IpAddr);

impl From<IpHeader> for HeaderValue {
    fn from(ip: IpHeader) -> HeaderValue {
        // An IP address prints as ASCII digits, dots, colons and hex letters only.
        HeaderValue::from_str(&ip.0.to_string()).expect("an IP address is a valid header value")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_length_filter_lets_every_hop_by_hop_name_through() {
        for name in HOP_BY_HOP.iter().chain([&header::TE]) {
            assert_ne!(HOP_LENGTHS & (1 << name.as_str().len()), 0, "{name}");
        }
    }

    #[test]
    fn hop_by_hop_and_connection_named_headers_go_te_trailers_stays() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, x-secret-hop"),
        );
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::TE, HeaderValue::from_static("trailers, deflate"));
        h.insert("x-keep", HeaderValue::from_static("yes"));
        strip_hop_by_hop(&mut h);
        assert!(h.get("x-secret-hop").is_none());
        assert!(h.get("keep-alive").is_none());
        assert!(h.get(header::CONNECTION).is_none());
        assert_eq!(
            h.get(header::TE).map(|v| v.as_bytes()),
            Some(&b"trailers"[..])
        );
        assert!(h.get("x-keep").is_some());
    }

    #[test]
    fn connection_tokens_are_matched_case_insensitively_across_lines() {
        let mut h = HeaderMap::new();
        h.append(header::CONNECTION, HeaderValue::from_static("X-One"));
        h.append(
            header::CONNECTION,
            HeaderValue::from_static(" x-two ,,bad name"),
        );
        h.insert("x-one", HeaderValue::from_static("1"));
        h.insert("x-two", HeaderValue::from_static("2"));
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.get(header::CONTENT_TYPE).is_some());
        let mut untouched = HeaderMap::new();
        untouched.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        strip_hop_by_hop(&mut untouched);
        assert_eq!(untouched.len(), 1);
    }

    #[test]
    fn te_trailers_stays_when_connection_names_te_as_the_rfc_asks() {
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("TE"));
        h.insert("te", HeaderValue::from_static("trailers, deflate"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.get("te").map(|v| v.as_bytes()), Some(&b"trailers"[..]));
        assert!(h.get("connection").is_none());
    }

    #[test]
    fn client_forwarded_values_are_replaced() {
        let mut h = HeaderMap::new();
        h.append("x-forwarded-for", HeaderValue::from_static("6.6.6.6"));
        h.append("x-forwarded-for", HeaderValue::from_static("7.7.7.7"));
        h.insert("forwarded", HeaderValue::from_static("for=6.6.6.6"));
        h.insert("x-real-ip", HeaderValue::from_static("6.6.6.6"));
        set_forwarded(
            &mut h,
            &client_address("127.0.0.1".parse().expect("ip")),
            &HeaderValue::from_static("api.example.com"),
        );
        assert_eq!(h.get_all("x-forwarded-for").iter().count(), 1);
        assert_eq!(
            h.get("x-forwarded-for").map(|v| v.as_bytes()),
            Some(&b"127.0.0.1"[..])
        );
        assert!(h.get("forwarded").is_none());
        assert_eq!(h["x-real-ip"], "127.0.0.1");
        assert_eq!(
            h.get("x-forwarded-proto").map(|v| v.as_bytes()),
            Some(&b"https"[..])
        );
    }
}
