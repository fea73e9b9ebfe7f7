//! The request id: `X-Request-Id` from the client when it is a sane token, else a new random
//! one; sent upstream, returned to the client and written in the access log, so one id ties an
//! app's bug report to both logs.
//!
//! A client value is only kept when it cannot smuggle anything into a log or a header: 1 to 128
//! characters of letters, digits and `-_.:+/=` (UUIDs, ULIDs, base64, W3C trace ids).

use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};
use rustls::crypto::CryptoProvider;

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The id for a request with these headers: the client's when sane, else 32 random hex digits.
pub fn request_id(headers: &HeaderMap, provider: &CryptoProvider) -> HeaderValue {
    if let Some(v) = headers.get(&X_REQUEST_ID)
        && is_sane(v.as_bytes())
    {
        return v.clone();
    }
    let bytes = next_random(provider);
    // Hex into a fixed buffer: this runs for nearly every request (apps rarely send an id).
    let mut hex = [0u8; 32];
    for (i, b) in bytes.iter().enumerate() {
        hex[2 * i] = HEX[usize::from(b >> 4)];
        hex[2 * i + 1] = HEX[usize::from(b & 0xf)];
    }
    HeaderValue::from_maybe_shared(bytes::Bytes::copy_from_slice(&hex))
        .unwrap_or(HeaderValue::from_static("-"))
}

/// 16 bytes from the provider's CSPRNG, drawn 512 at a time per thread: one call into the RNG
/// per 32 requests instead of one per request.
fn next_random(provider: &CryptoProvider) -> [u8; 16] {
    thread_local! {
        static POOL: std::cell::RefCell<([u8; 512], usize)> = const { std::cell::RefCell::new(([0; 512], 512)) };
    }
    POOL.with_borrow_mut(|(pool, used)| {
        if *used == pool.len() {
            if provider.secure_random.fill(pool).is_err() {
                // Should the CSPRNG ever fail, a time-based id still tells requests apart.
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos());
                return nanos.to_be_bytes();
            }
            *used = 0;
        }
        let mut out = [0u8; 16];
        out.copy_from_slice(&pool[*used..*used + 16]);
        *used += 16;
        out
    })
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn is_sane(v: &[u8]) -> bool {
    (1..=MAX_LEN).contains(&v.len())
        && v.iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:+/=".contains(b))
}

const MAX_LEN: usize = 128;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sane_client_id_is_kept_and_anything_else_replaced() {
        let provider = crate::tls::provider();
        let mut h = HeaderMap::new();
        h.insert(&X_REQUEST_ID, HeaderValue::from_static("4f1c-9a_b.c:d"));
        assert_eq!(request_id(&h, &provider), "4f1c-9a_b.c:d");
        for bad in ["has space", "quote\"", "", &"x".repeat(129)] {
            h.insert(&X_REQUEST_ID, HeaderValue::from_str(bad).expect("header"));
            let id = request_id(&h, &provider);
            assert_eq!(id.len(), 32, "{bad:?} replaced by a generated id");
            assert!(id.as_bytes().iter().all(u8::is_ascii_hexdigit));
        }
        let a = request_id(&HeaderMap::new(), &provider);
        assert_ne!(a, request_id(&HeaderMap::new(), &provider));
    }
}
