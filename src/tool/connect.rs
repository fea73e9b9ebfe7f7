//! `pinproxy pin --connect HOST:PORT`: the pins of the chain a live server presents.
//!
//! The verifier accepts any chain (this is about seeing what a server sends, not trusting it) but
//! still checks the handshake signature, so the server has proven it holds the leaf's private key
//! and a replayed public certificate is not reported as that server's. The output says the pins
//! were observed, not verified. Connect and handshake share one deadline.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme};

use super::{ToolError, is_dns_name};
use crate::pin::cert_info;

/// Connect plus handshake, as DESIGN.md §2 promises.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) fn pin_connect(
    target: &str,
    servername: Option<&str>,
    out: &mut dyn Write,
) -> Result<(), ToolError> {
    let (host, port) = split_target(target)?;
    let server_name = server_name(&host, servername, target)?;
    let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
    let timeout = || ToolError::Timeout {
        target: target.to_string(),
        secs: HANDSHAKE_TIMEOUT.as_secs(),
    };

    let addrs: Vec<SocketAddr> = (host.as_str(), port)
        .to_socket_addrs()
        .map_err(|source| ToolError::Resolve {
            target: target.to_string(),
            source,
        })?
        .collect();
    let tcp = connect_any(&addrs, deadline, target)?;

    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = ObservingVerifier {
        algorithms: provider.signature_verification_algorithms,
    };
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(ToolError::TlsConfig)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    let sni = match &server_name {
        ServerName::DnsName(n) => format!("SNI {}", n.as_ref()),
        _ => "no SNI".to_string(),
    };
    let mut conn =
        ClientConnection::new(Arc::new(config), server_name).map_err(ToolError::TlsConfig)?;
    let mut io = DeadlineStream { tcp, deadline };
    while conn.is_handshaking() {
        conn.complete_io(&mut io)
            .map_err(|source| match source.kind() {
                io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => timeout(),
                _ => ToolError::Handshake {
                    target: target.to_string(),
                    source,
                },
            })?;
    }
    let chain: Vec<CertificateDer<'static>> = conn
        .peer_certificates()
        .map(|c| c.iter().map(|d| d.clone().into_owned()).collect())
        .unwrap_or_default();
    conn.send_close_notify();
    let _ = conn.complete_io(&mut io);
    if chain.is_empty() {
        return Err(ToolError::NoCertificate {
            target: target.to_string(),
        });
    }

    writeln!(
        out,
        "# chain presented by {target} ({sni}): observed, no trust decision made; confirm these pins out of band before shipping them"
    )?;
    for (position, der) in chain.iter().enumerate() {
        let info = cert_info(der).map_err(|source| ToolError::PeerCertificate {
            target: target.to_string(),
            position,
            source,
        })?;
        writeln!(
            out,
            "{}  position {position}: {} (observed, not verified)",
            info.pin.to_prefixed(),
            info.subject
        )?;
    }
    Ok(())
}

/// `host:port`, `192.0.2.7:443` or `[2001:db8::1]:443`.
fn split_target(target: &str) -> Result<(String, u16), ToolError> {
    let bad = || ToolError::BadTarget {
        target: target.to_string(),
    };
    if let Ok(sa) = target.parse::<SocketAddr>() {
        return Ok((sa.ip().to_string(), sa.port()));
    }
    let (host, port) = target.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    if !is_dns_name(host) {
        return Err(bad());
    }
    Ok((host.to_string(), port))
}

/// `--servername` if given; else the host, unless it is an IP address (then no SNI is sent).
fn server_name(
    host: &str,
    servername: Option<&str>,
    target: &str,
) -> Result<ServerName<'static>, ToolError> {
    if let Some(name) = servername {
        return ServerName::try_from(name.to_string())
            .ok()
            .filter(|_| is_dns_name(name))
            .ok_or_else(|| ToolError::BadServerName {
                name: name.to_string(),
            });
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(ServerName::from(ip));
    }
    ServerName::try_from(host.to_string()).map_err(|_| ToolError::BadTarget {
        target: target.to_string(),
    })
}

fn connect_any(
    addrs: &[SocketAddr],
    deadline: Instant,
    target: &str,
) -> Result<TcpStream, ToolError> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "the name resolved to no address");
    for addr in addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match TcpStream::connect_timeout(addr, left) {
            Ok(tcp) => return Ok(tcp),
            Err(e) => last = e,
        }
    }
    if last.kind() == io::ErrorKind::TimedOut || Instant::now() >= deadline {
        return Err(ToolError::Timeout {
            target: target.to_string(),
            secs: HANDSHAKE_TIMEOUT.as_secs(),
        });
    }
    Err(ToolError::Connect {
        target: target.to_string(),
        source: last,
    })
}

/// A socket whose every read and write ends by the shared deadline.
struct DeadlineStream {
    tcp: TcpStream,
    deadline: Instant,
}

impl DeadlineStream {
    fn arm(&self, write: bool) -> io::Result<()> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        if write {
            self.tcp.set_write_timeout(Some(left))
        } else {
            self.tcp.set_read_timeout(Some(left))
        }
    }
}

impl Read for DeadlineStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.arm(false)?;
        self.tcp.read(buf)
    }
}

impl Write for DeadlineStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.arm(true)?;
        self.tcp.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.tcp.flush()
    }
}

/// Accepts any chain, but only from a peer that signs the handshake with the leaf's key.
#[derive(Debug)]
struct ObservingVerifier {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for ObservingVerifier {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_need_a_port() {
        assert_eq!(
            split_target("api.example.com:443").ok(),
            Some(("api.example.com".into(), 443))
        );
        assert_eq!(split_target("[::1]:8443").ok(), Some(("::1".into(), 8443)));
        assert_eq!(
            split_target("127.0.0.1:1").ok(),
            Some(("127.0.0.1".into(), 1))
        );
        assert!(split_target("api.example.com").is_err());
        assert!(split_target("::1:443").is_err());
        assert!(split_target("a b:443").is_err());
    }
}
