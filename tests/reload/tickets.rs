//! Session resumption across replicas: two pinproxy processes share `session_ticket_keys`
//! (made with `openssl rand 80`, as the README says); a TLS 1.3 and a TLS 1.2 session from one
//! resumes on the other; a rotation (a new first key) still decrypts the old tickets and new
//! tickets use the new key; a retired key no longer resumes.

use std::process::Command;

use rustls::HandshakeKind::{Full, Resumed};

use super::*;

/// `openssl rand 80`: one key in the documented format.
fn openssl_key() -> Vec<u8> {
    let out = Command::new("openssl")
        .args(["rand", "80"])
        .output()
        .expect("openssl runs");
    assert!(out.status.success());
    assert_eq!(out.stdout.len(), 80);
    out.stdout
}

/// A client with its own session store, speaking only `version`.
fn client_config(
    root_pem: &str,
    version: &'static rustls::SupportedProtocolVersion,
) -> Arc<rustls::ClientConfig> {
    let base = resuming_client_config(root_pem);
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[version])
        .expect("version")
        .with_root_certificates(root_store(root_pem))
        .with_no_client_auth();
    cfg.alpn_protocols = base.alpn_protocols.clone();
    Arc::new(cfg)
}

fn root_store(root_pem: &str) -> rustls::RootCertStore {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(root_pem.as_bytes()) {
        roots.add(c.expect("root pem")).expect("root");
    }
    roots
}

struct Replica {
    bin: Proc,
    listener: SocketAddr,
    admin: SocketAddr,
}

async fn replica(config: &Path) -> Replica {
    let bin = binary(config, &[]);
    let admin = bin.addr("admin listening");
    let listener = bin.addr("listener=mobile");
    Replica {
        bin,
        listener,
        admin,
    }
}

async fn kind(cfg: &Arc<rustls::ClientConfig>, at: &Replica) -> rustls::HandshakeKind {
    let (kind, _, status) = get_with(cfg, at.listener, "/v1/x").await;
    assert_eq!(status, 200);
    kind.expect("handshake kind")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_sharing_ticket_keys_resume_each_others_sessions_across_a_rotation() {
    let s = Setup::new("").await;
    let k1 = openssl_key();
    let tickets = s.dir.write("secrets/tickets", &k1);
    let config = s.config("/v1", "").replacen(
        "pin_sets = [\"app\"]\n",
        "pin_sets = [\"app\"]\nsession_ticket_keys = \"secrets/tickets\"\n",
        1,
    );
    s.dir.write("config.toml", &config);
    let a = replica(&s.config_path()).await;
    let b = replica(&s.config_path()).await;
    let root = s.pki.root_pem();

    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let cfg = client_config(&root, version);
        assert_eq!(kind(&cfg, &a).await, Full, "{version:?}: first contact");
        assert_eq!(
            kind(&cfg, &b).await,
            Resumed,
            "{version:?}: a session from A resumes on B"
        );
        assert_eq!(kind(&cfg, &a).await, Resumed, "{version:?}: and back");
    }

    // A ticket under k1, kept for after the rotation.
    let before = client_config(&root, &rustls::version::TLS13);
    assert_eq!(kind(&before, &a).await, Full);
    let retired_later = client_config(&root, &rustls::version::TLS13);
    assert_eq!(kind(&retired_later, &a).await, Full);

    // Rotation: a new key first, the old one kept for decryption.
    let (ga, gb) = (generation(a.admin).await, generation(b.admin).await);
    let k2 = openssl_key();
    write_atomic(&tickets, [k2.clone(), k1].concat());
    wait_generation(a.admin, ga + 1).await;
    wait_generation(b.admin, gb + 1).await;
    assert_eq!(
        kind(&before, &b).await,
        Resumed,
        "a ticket under the previous key still resumes after the rotation"
    );
    let after = client_config(&root, &rustls::version::TLS13);
    assert_eq!(kind(&after, &a).await, Full);

    // Retire the old key: tickets under it stop resuming, those under the new key go on.
    write_atomic(&tickets, &k2);
    wait_generation(a.admin, ga + 2).await;
    wait_generation(b.admin, gb + 2).await;
    assert_eq!(
        kind(&after, &b).await,
        Resumed,
        "tickets issued after the rotation use the new first key"
    );
    assert_eq!(
        kind(&retired_later, &b).await,
        Full,
        "a ticket under a removed key is a full handshake"
    );

    // A bad key file is refused like any bad input, naming the field; the old keys keep serving.
    write_atomic(&tickets, b"not a key");
    let log = eventually(RELOAD_WAIT, || async {
        a.bin
            .find(|l| l.contains("session_ticket_keys") && l.contains("9 bytes"))
    })
    .await;
    assert!(log.contains("listener[0].session_ticket_keys"), "{log}");
    assert_eq!(kind(&after, &a).await, Resumed);
}
