//! PROXY protocol in front of the TLS handshake: behind an L4 load balancer (HAProxy, AWS NLB,
//! a cloud TCP balancer) every TCP connection comes from the balancer, which prepends a PROXY
//! header (v1 text or v2 binary) with the client's real address.
//!
//! On a listener with `proxy_protocol = true` the header is required: a connection from a peer
//! outside `proxy_protocol_from`, without a header, with a malformed one or one that does not
//! arrive within the handshake timeout is closed and counted in
//! `pinproxy_proxy_protocol_rejected_total`. Only the header's own bytes are read off the
//! socket, so the TLS ClientHello behind it stays there for the handshake. The header itself is
//! parsed by the `ppp` crate; this module only frames it (how many bytes to read) by the
//! signature and length rules of the specification.

use std::net::SocketAddr;
use std::time::Duration;

use ppp::HeaderResult;
use tokio::io::{AsyncRead, AsyncReadExt as _};
use tokio::net::TcpStream;

use crate::config::ProxyProtocol;
use crate::metrics::Metrics;
use crate::snapshot::Live;

/// The v2 signature; its first five bytes cannot start a v1 header or a TLS record.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// Signature, version/command, family and the 2-byte length.
const V2_FIXED: usize = 16;
/// Longest v2 payload accepted: addresses plus generous TLVs (AWS and HAProxy send a few).
const V2_MAX_PAYLOAD: usize = 4096;
/// The v1 specification's maximum line, CRLF included.
const V1_MAX: usize = 107;

/// Why a connection was refused: the `reason` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    /// The peer is not among `proxy_protocol_from`.
    UntrustedPeer,
    /// The first bytes are no PROXY signature (a client talking TLS directly).
    Missing,
    /// A signature, but not a valid header.
    Malformed,
    /// No complete header within the handshake timeout, or the peer closed in the middle.
    Timeout,
    /// Closed before sending a byte: a TCP health check or port probe, not counted.
    Closed,
}

impl Rejected {
    pub fn as_str(self) -> &'static str {
        match self {
            Rejected::UntrustedPeer => "untrusted_peer",
            Rejected::Missing => "missing",
            Rejected::Malformed => "malformed",
            Rejected::Timeout => "timeout",
            Rejected::Closed => "closed",
        }
    }
}

/// The client address of a connection from `peer` on `listener`: `peer` itself unless the
/// listener has `proxy_protocol`, else what its header says (`None`: refused, close it).
pub async fn client(
    tcp: &mut TcpStream,
    peer: SocketAddr,
    listener: &str,
    live: &Live,
    timeout: Duration,
) -> Option<SocketAddr> {
    let snap = live.current();
    let conf = snap.config.listeners.iter().find(|l| l.name == listener);
    match conf.and_then(|l| l.proxy_protocol.as_ref()) {
        Some(policy) => accept(tcp, peer, policy, timeout, listener, &live.shared.metrics).await,
        None => Some(peer),
    }
}

/// Reads the PROXY header of a connection from `peer` and returns the client address it
/// carries (the peer's own for `LOCAL`/`UNKNOWN` headers: the balancer's health checks). On
/// refusal the connection must be closed; it has been counted and logged.
async fn accept<S: AsyncRead + Unpin>(
    io: &mut S,
    peer: SocketAddr,
    policy: &ProxyProtocol,
    timeout: Duration,
    listener: &str,
    metrics: &Metrics,
) -> Option<SocketAddr> {
    let result = if policy.allows(peer.ip()) {
        match tokio::time::timeout(timeout, read_header(io, peer)).await {
            Ok(r) => r,
            Err(_) => Err(Rejected::Timeout),
        }
    } else {
        Err(Rejected::UntrustedPeer)
    };
    match result {
        Ok(client) => Some(client),
        Err(Rejected::Closed) => None,
        Err(reason) => {
            metrics
                .proxy_protocol_rejected
                .with_label_values(&[listener, reason.as_str()])
                .inc();
            tracing::debug!(listener, peer = %peer, reason = reason.as_str(), "PROXY protocol header refused; connection closed");
            None
        }
    }
}

/// Reads exactly one header and parses it.
async fn read_header<S: AsyncRead + Unpin>(
    io: &mut S,
    peer: SocketAddr,
) -> Result<SocketAddr, Rejected> {
    let closed = |_| Rejected::Timeout;
    let mut buf = vec![0u8; 5];
    if io.read(&mut buf[..1]).await.map_err(closed)? == 0 {
        return Err(Rejected::Closed);
    }
    io.read_exact(&mut buf[1..]).await.map_err(closed)?;
    if buf[..] == V2_SIGNATURE[..5] {
        buf.resize(V2_FIXED, 0);
        io.read_exact(&mut buf[5..]).await.map_err(closed)?;
        let len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
        if len > V2_MAX_PAYLOAD {
            return Err(Rejected::Malformed);
        }
        buf.resize(V2_FIXED + len, 0);
        io.read_exact(&mut buf[V2_FIXED..]).await.map_err(closed)?;
    } else if buf == b"PROXY" {
        // Byte by byte up to CRLF: a read past it would take the ClientHello's first bytes.
        while !buf.ends_with(b"\r\n") {
            if buf.len() >= V1_MAX {
                return Err(Rejected::Malformed);
            }
            let b = io.read_u8().await.map_err(closed)?;
            buf.push(b);
        }
    } else {
        return Err(Rejected::Missing);
    }
    client_addr(&buf, peer)
}

/// The source address of a complete header.
fn client_addr(header: &[u8], peer: SocketAddr) -> Result<SocketAddr, Rejected> {
    use ppp::{v1, v2};
    match HeaderResult::parse(header) {
        HeaderResult::V1(Ok(h)) => Ok(match h.addresses {
            v1::Addresses::Tcp4(a) => SocketAddr::new(a.source_address.into(), a.source_port),
            v1::Addresses::Tcp6(a) => SocketAddr::new(a.source_address.into(), a.source_port),
            v1::Addresses::Unknown => peer,
        }),
        HeaderResult::V2(Ok(h)) => Ok(match (h.command, h.addresses) {
            (v2::Command::Proxy, v2::Addresses::IPv4(a)) => {
                SocketAddr::new(a.source_address.into(), a.source_port)
            }
            (v2::Command::Proxy, v2::Addresses::IPv6(a)) => {
                SocketAddr::new(a.source_address.into(), a.source_port)
            }
            // LOCAL (the balancer's own health check) and non-IP families: the peer itself.
            _ => peer,
        }),
        HeaderResult::V1(Err(_)) | HeaderResult::V2(Err(_)) => Err(Rejected::Malformed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(from: &[&str]) -> ProxyProtocol {
        ProxyProtocol {
            from: from.iter().map(|s| s.parse().expect("cidr")).collect(),
        }
    }

    async fn read(bytes: &[u8]) -> (Result<SocketAddr, Rejected>, Vec<u8>) {
        let peer: SocketAddr = "10.0.0.2:40000".parse().expect("addr");
        let mut io = bytes;
        let r = read_header(&mut io, peer).await;
        (r, io.to_vec())
    }

    #[tokio::test]
    async fn v1_header_gives_the_client_and_leaves_the_tls_bytes() {
        let (r, rest) = read(b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 443\r\n\x16\x03\x01").await;
        assert_eq!(r, Ok("203.0.113.7:51234".parse().expect("addr")));
        assert_eq!(rest, b"\x16\x03\x01");
        let (r, _) = read(b"PROXY TCP6 2001:db8::7 2001:db8::1 51234 443\r\n").await;
        assert_eq!(r, Ok("[2001:db8::7]:51234".parse().expect("addr")));
        let (r, _) = read(b"PROXY UNKNOWN\r\n").await;
        assert_eq!(r, Ok("10.0.0.2:40000".parse().expect("addr")));
    }

    #[tokio::test]
    async fn v2_header_gives_the_client_and_local_gives_the_peer() {
        let proxy: Vec<u8> = ppp::v2::Builder::with_addresses(
            ppp::v2::Version::Two | ppp::v2::Command::Proxy,
            ppp::v2::Protocol::Stream,
            (
                "198.51.100.9:6000".parse::<SocketAddr>().expect("addr"),
                "10.0.0.1:443".parse::<SocketAddr>().expect("addr"),
            ),
        )
        .build()
        .expect("v2 header");
        let mut bytes = proxy.clone();
        bytes.extend_from_slice(b"\x16\x03\x01");
        let (r, rest) = read(&bytes).await;
        assert_eq!(r, Ok("198.51.100.9:6000".parse().expect("addr")));
        assert_eq!(rest, b"\x16\x03\x01");
        let local: Vec<u8> = ppp::v2::Builder::new(
            ppp::v2::Version::Two | ppp::v2::Command::Local,
            ppp::v2::AddressFamily::Unspecified | ppp::v2::Protocol::Unspecified,
        )
        .build()
        .expect("local header");
        assert_eq!(
            read(&local).await.0,
            Ok("10.0.0.2:40000".parse().expect("addr"))
        );
    }

    #[tokio::test]
    async fn tls_without_a_header_garbage_and_truncation_are_refused() {
        assert_eq!(
            read(b"\x16\x03\x01\x02\x00\x01").await.0,
            Err(Rejected::Missing)
        );
        assert_eq!(
            read(b"PROXY TCP4 not-an-ip 10.0.0.1 1 2\r\n").await.0,
            Err(Rejected::Malformed)
        );
        assert_eq!(
            read(&[b'P', b'R', b'O', b'X', b'Y', b' '].repeat(30))
                .await
                .0,
            Err(Rejected::Malformed)
        );
        assert_eq!(read(b"PROXY TCP4 1.2.3.4").await.0, Err(Rejected::Timeout));
        assert_eq!(read(b"").await.0, Err(Rejected::Closed));
        let mut bad_v2 = V2_SIGNATURE.to_vec();
        bad_v2.extend_from_slice(&[0x31, 0x11, 0x00, 0x0c]);
        bad_v2.extend_from_slice(&[0; 12]);
        assert_eq!(read(&bad_v2).await.0, Err(Rejected::Malformed));
    }

    #[test]
    fn allowed_peers_include_ipv4_mapped_addresses() {
        let p = policy(&["10.0.0.0/8", "2001:db8::/32"]);
        assert!(p.allows("10.1.2.3".parse().expect("ip")));
        assert!(p.allows("::ffff:10.1.2.3".parse().expect("ip")));
        assert!(p.allows("2001:db8::5".parse().expect("ip")));
        assert!(!p.allows("192.0.2.1".parse().expect("ip")));
    }
}
