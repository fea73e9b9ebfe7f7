//! Upstream servers for the tests, on 127.0.0.1:0: plain HTTP or TLS (with ALPN h2 and
//! http/1.1), answering with a JSON echo of what they received and counting hits.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::pki::Issued;

#[derive(Clone, Copy, Debug)]
pub enum UpstreamMode {
    Echo,
    /// Wait this long before answering.
    Delay(Duration),
    /// Answer, then close the connection (every request needs a new handshake).
    Close,
}

pub struct TestUpstream {
    pub addr: SocketAddr,
    pub hits: Arc<AtomicUsize>,
    /// Connections accepted (a pooled connection reused adds none).
    pub conns: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestUpstream {
    pub async fn plain(mode: UpstreamMode) -> Self {
        Self::start(None, mode).await
    }

    pub async fn tls(cert: &Issued, mode: UpstreamMode) -> Self {
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(cert.chain_pem().as_bytes())
                .collect::<Result<_, _>>()
                .expect("chain");
        let key = PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).expect("key");
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("server cert");
        cfg.alpn_protocols = match mode {
            UpstreamMode::Close => vec![b"http/1.1".to_vec()],
            _ => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        };
        // No resumption: every new connection is a full handshake the proxy must verify.
        cfg.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        cfg.send_tls13_tickets = 0;
        Self::start(Some(tokio_rustls::TlsAcceptor::from(Arc::new(cfg))), mode).await
    }

    async fn start(tls: Option<tokio_rustls::TlsAcceptor>, mode: UpstreamMode) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let addr = listener.local_addr().expect("addr");
        let hits = Arc::new(AtomicUsize::new(0));
        let conns = Arc::new(AtomicUsize::new(0));
        let h = hits.clone();
        let c = conns.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                c.fetch_add(1, Ordering::SeqCst);
                let tls = tls.clone();
                let hits = h.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let hits = hits.clone();
                        async move { Ok::<_, Infallible>(echo(req, mode, &hits).await) }
                    });
                    let mut builder = auto::Builder::new(TokioExecutor::new());
                    if matches!(mode, UpstreamMode::Close) {
                        builder = builder.http1_only();
                        builder.http1().keep_alive(false);
                    }
                    match tls {
                        Some(acceptor) => {
                            if let Ok(s) = acceptor.accept(tcp).await {
                                let _ = builder.serve_connection(TokioIo::new(s), svc).await;
                            }
                        }
                        None => {
                            let _ = builder.serve_connection(TokioIo::new(tcp), svc).await;
                        }
                    }
                });
            }
        });
        TestUpstream {
            addr,
            hits,
            conns,
            task,
        }
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

async fn echo(
    req: Request<Incoming>,
    mode: UpstreamMode,
    hits: &AtomicUsize,
) -> Response<Full<Bytes>> {
    hits.fetch_add(1, Ordering::SeqCst);
    if let UpstreamMode::Delay(d) = mode {
        tokio::time::sleep(d).await;
    }
    let mut headers = serde_json::Map::new();
    for (k, v) in req.headers() {
        let entry = headers
            .entry(k.as_str())
            .or_insert_with(|| serde_json::Value::Array(vec![]));
        if let serde_json::Value::Array(a) = entry {
            a.push(serde_json::Value::String(
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            ));
        }
    }
    let method = req.method().to_string();
    let uri = req.uri().clone();
    let version = format!("{:?}", req.version());
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let doc = serde_json::json!({
        "method": method,
        "path": uri.path(),
        "authority": uri.authority().map(|a| a.as_str().to_string()),
        "query": uri.query(),
        "version": version,
        "headers": headers,
        "body_len": body.len(),
    });
    Response::builder()
        .header("content-type", "application/json")
        .header("connection", "keep-alive")
        .header("keep-alive", "timeout=5")
        .header("x-upstream", "test")
        .body(Full::new(Bytes::from(doc.to_string())))
        .expect("response")
}
