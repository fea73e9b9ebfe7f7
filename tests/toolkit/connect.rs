//! `pinproxy pin --connect` against a rustls server on 127.0.0.1 that reports the SNI it saw.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, ServerConnection};

use crate::support::{Alg, Pki, key, pinproxy};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// TLS 1.2 or 1.3, handshake only.
    Handshake,
    /// TLS 1.2 only.
    Tls12,
    /// Answers one HTTP request with `ok`.
    Http,
    /// Sends the chain but signs with an unrelated key.
    WrongKey,
}

pub struct Server {
    pub addr: SocketAddr,
    /// The SNI of each completed handshake.
    pub sni: mpsc::Receiver<Option<String>>,
}

#[derive(Debug)]
struct Fixed(Arc<CertifiedKey>);

impl ResolvesServerCert for Fixed {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// Serves `pki`'s leaf and intermediate on 127.0.0.1:0 from a thread, one connection at a time.
pub fn serve(pki: &Pki, mode: Mode) -> Server {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let pkcs8 = if mode == Mode::WrongKey {
        key(Alg::P256).serialize_der()
    } else {
        pki.leaf_key.serialize_der()
    };
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pkcs8));
    let signing_key = provider
        .key_provider
        .load_private_key(der)
        .expect("test key loads");
    let chain = vec![
        CertificateDer::from(pki.leaf_der.clone()),
        CertificateDer::from(pki.inter_der.clone()),
    ];
    let builder = ServerConfig::builder_with_provider(provider);
    let builder = if mode == Mode::Tls12 {
        builder.with_protocol_versions(&[&rustls::version::TLS12])
    } else {
        builder.with_safe_default_protocol_versions()
    }
    .expect("protocol versions");
    let config = Arc::new(
        builder
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Fixed(Arc::new(CertifiedKey::new(
                chain,
                signing_key,
            ))))),
    );
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local addr");
    let (tx, sni) = mpsc::channel();
    std::thread::spawn(move || {
        for tcp in listener.incoming() {
            let Ok(mut tcp) = tcp else { continue };
            let _ = tcp.set_read_timeout(Some(Duration::from_secs(20)));
            let Ok(mut conn) = ServerConnection::new(config.clone()) else {
                continue;
            };
            while conn.is_handshaking() {
                if conn.complete_io(&mut tcp).is_err() {
                    break;
                }
            }
            if conn.is_handshaking() {
                continue;
            }
            let _ = tx.send(conn.server_name().map(str::to_string));
            if mode == Mode::Http {
                let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = tls.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                );
            }
            conn.send_close_notify();
            let _ = conn.complete_io(&mut tcp);
        }
    });
    Server { addr, sni }
}

fn sni_of(server: &Server) -> Option<String> {
    server
        .sni
        .recv_timeout(Duration::from_secs(10))
        .expect("the server completed a handshake")
}

#[test]
fn pin_connect_prints_the_observed_leaf_and_intermediate_pins_and_sends_the_servername() {
    let pki = Pki::new(Alg::P256, &["api.example.com"]);
    let server = serve(&pki, Mode::Handshake);
    let target = format!("127.0.0.1:{}", server.addr.port());
    let tmp = tempfile::tempdir().expect("temp dir");
    let run = pinproxy(
        tmp.path(),
        &[
            "pin",
            "--connect",
            &target,
            "--servername",
            "api.example.com",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.pins(),
        vec![pki.leaf_pin.clone(), pki.inter_pin.clone()]
    );
    let header = run.stdout.lines().next().expect("a header line");
    assert!(
        header.starts_with('#')
            && header.contains("observed")
            && header.contains("no trust decision"),
        "{header}"
    );
    let lines: Vec<&str> = run.stdout.lines().skip(1).collect();
    assert!(
        lines[0].contains("position 0: CN=api.example.com (observed, not verified)"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains("position 1: CN=pinproxy test intermediate"),
        "{}",
        lines[1]
    );
    assert_eq!(sni_of(&server).as_deref(), Some("api.example.com"));
}

#[test]
fn pin_connect_to_an_ip_sends_no_sni_and_reads_a_tls12_server() {
    let pki = Pki::new(Alg::Rsa2048, &["api.example.com"]);
    let server = serve(&pki, Mode::Tls12);
    let target = format!("127.0.0.1:{}", server.addr.port());
    let tmp = tempfile::tempdir().expect("temp dir");
    let run = pinproxy(tmp.path(), &["pin", "--connect", &target]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.pins(),
        vec![pki.leaf_pin.clone(), pki.inter_pin.clone()]
    );
    assert!(run.stdout.contains("no SNI"), "{}", run.stdout);
    assert_eq!(sni_of(&server), None);
}

#[test]
fn pin_connect_refuses_a_server_that_cannot_sign_with_the_leaf_key() {
    let pki = Pki::new(Alg::P256, &["api.example.com"]);
    let server = serve(&pki, Mode::WrongKey);
    let target = format!("127.0.0.1:{}", server.addr.port());
    let tmp = tempfile::tempdir().expect("temp dir");
    let run = pinproxy(tmp.path(), &["pin", "--connect", &target]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(
        run.pins().is_empty(),
        "printed pins of an unproven chain: {}",
        run.stdout
    );
    assert!(
        run.stderr
            .contains(&format!("TLS handshake with {target} failed")),
        "{}",
        run.stderr
    );
}

#[test]
fn pin_connect_to_a_closed_port_exits_1_naming_the_target() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let tmp = tempfile::tempdir().expect("temp dir");
    let target = format!("127.0.0.1:{port}");
    let run = pinproxy(tmp.path(), &["pin", "--connect", &target]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains(&format!("cannot connect to {target}")),
        "{}",
        run.stderr
    );
}

#[test]
fn pin_connect_gives_up_after_ten_seconds_when_the_server_never_answers() {
    // The kernel completes the TCP handshake from the backlog; nobody ever speaks TLS.
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
    let target = format!("127.0.0.1:{}", silent.local_addr().expect("addr").port());
    let tmp = tempfile::tempdir().expect("temp dir");
    let started = Instant::now();
    let run = pinproxy(tmp.path(), &["pin", "--connect", &target]);
    let took = started.elapsed();
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("within 10s"), "{}", run.stderr);
    assert!(
        took >= Duration::from_secs(9) && took < Duration::from_secs(30),
        "took {took:?}"
    );
    drop(silent);
}

#[test]
fn pin_connect_rejects_a_target_without_a_port() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let run = pinproxy(tmp.path(), &["pin", "--connect", "api.example.com"]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("is not HOST:PORT"), "{}", run.stderr);
}
