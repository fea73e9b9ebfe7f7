//! A real TLS client for the tests: trusts the test root, can pin the leaf SPKI like an app
//! does (rejecting during the handshake), and speaks HTTP/1.1 or HTTP/2 by ALPN.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Request};
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

use super::pki::oracle_pin;

#[derive(Clone)]
pub struct Client {
    pub addr: SocketAddr,
    pub sni: String,
    pub root_pem: String,
    pub pins: Option<Vec<String>>,
    pub h2: bool,
}

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
    pub version: http::Version,
}

pub enum Conn {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

/// What the client saw of the handshake.
#[derive(Debug)]
pub struct Handshake {
    pub leaf_pin: String,
    pub alpn: Option<Vec<u8>>,
}

impl Client {
    pub fn new(addr: SocketAddr, root_pem: &str) -> Self {
        Client {
            addr,
            sni: "localhost".into(),
            root_pem: root_pem.into(),
            pins: None,
            h2: false,
        }
    }

    pub fn sni(mut self, sni: &str) -> Self {
        self.sni = sni.into();
        self
    }

    pub fn h2(mut self) -> Self {
        self.h2 = true;
        self
    }

    pub fn pin(mut self, pins: &[&str]) -> Self {
        self.pins = Some(pins.iter().map(|s| s.to_string()).collect());
        self
    }

    fn config(&self) -> Arc<ClientConfig> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut roots = RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(self.root_pem.as_bytes()) {
            roots.add(c.expect("root pem")).expect("root");
        }
        let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .expect("verifier");
        let mut cfg = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AppPinVerifier {
                inner,
                pins: self.pins.clone(),
            }))
            .with_no_client_auth();
        cfg.alpn_protocols = if self.h2 {
            vec![b"h2".to_vec()]
        } else {
            vec![b"http/1.1".to_vec()]
        };
        Arc::new(cfg)
    }

    /// TLS handshake only; `Err` carries the client's reason.
    pub async fn handshake(
        &self,
    ) -> Result<
        (
            tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
            Handshake,
        ),
        String,
    > {
        let tcp = tokio::net::TcpStream::connect(self.addr)
            .await
            .map_err(|e| e.to_string())?;
        self.handshake_on(tcp).await
    }

    /// TLS handshake over a TCP stream the test connected itself (socket options of its own).
    pub async fn handshake_on(
        &self,
        tcp: tokio::net::TcpStream,
    ) -> Result<
        (
            tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
            Handshake,
        ),
        String,
    > {
        let connector = tokio_rustls::TlsConnector::from(self.config());
        let name = ServerName::try_from(self.sni.clone()).map_err(|e| e.to_string())?;
        let tls = connector
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        let (_, session) = tls.get_ref();
        let leaf = session
            .peer_certificates()
            .and_then(|c| c.first())
            .expect("server sent a certificate");
        let (_, x) = x509_parser::parse_x509_certificate(leaf.as_ref()).expect("leaf parses");
        let hs = Handshake {
            leaf_pin: oracle_pin(x.tbs_certificate.subject_pki.raw),
            alpn: session.alpn_protocol().map(|p| p.to_vec()),
        };
        Ok((tls, hs))
    }

    pub async fn connect(&self) -> Result<Conn, String> {
        let (tls, _) = self.handshake().await?;
        let io = TokioIo::new(tls);
        if self.h2 {
            let (send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .map_err(|e| e.to_string())?;
            tokio::spawn(conn);
            Ok(Conn::H2(send))
        } else {
            let (send, conn) = hyper::client::conn::http1::handshake(io)
                .await
                .map_err(|e| e.to_string())?;
            tokio::spawn(conn);
            Ok(Conn::H1(send))
        }
    }

    /// One GET on a new connection, with Host `host`.
    pub async fn get(&self, host: &str, path: &str) -> Result<Reply, String> {
        let mut conn = self.connect().await?;
        conn.send(get(host, path, self.h2)).await
    }
}

/// A GET request in the form each protocol wants (`:authority` for h2, Host for h1).
pub fn get(host: &str, path: &str, h2: bool) -> Request<Full<Bytes>> {
    let b = if h2 {
        Request::get(format!("https://{host}{path}"))
    } else {
        Request::get(path).header("host", host)
    };
    b.body(Full::new(Bytes::new())).expect("request")
}

impl Conn {
    pub async fn send(&mut self, req: Request<Full<Bytes>>) -> Result<Reply, String> {
        let resp = match self {
            // An HTTP/1.1 connection takes the next request only once the last one is done.
            Conn::H1(s) => match s.ready().await {
                Ok(()) => s.send_request(req).await,
                Err(e) => Err(e),
            },
            Conn::H2(s) => s.send_request(req).await,
        }
        .map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let version = resp.version();
        let headers = resp.headers().clone();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok(Reply {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
            version,
        })
    }
}

/// WebPKI against the test root, then the app's pin on the leaf — like OkHttp, but inside the
/// handshake, so a mismatch is an alert the server sees.
#[derive(Debug)]
struct AppPinVerifier {
    inner: Arc<WebPkiServerVerifier>,
    pins: Option<Vec<String>>,
}

impl ServerCertVerifier for AppPinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)?;
        if let Some(pins) = &self.pins {
            let (_, x) = x509_parser::parse_x509_certificate(end_entity.as_ref())
                .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
            if !pins.contains(&oracle_pin(x.tbs_certificate.subject_pki.raw)) {
                return Err(rustls::Error::InvalidCertificate(
                    CertificateError::ApplicationVerificationFailure,
                ));
            }
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(m, c, d)
    }

    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(m, c, d)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
