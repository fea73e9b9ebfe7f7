//! Micro-benchmarks of the per-request and per-upstream-handshake work, so a regression shows
//! without a load test: route lookup among 1 000 routes, request and response header rewriting,
//! the dot-segment check, and the upstream verifier (WebPKI path plus pin check).
//!
//! `cargo bench --bench hot_path`. Everything is built the way the proxy builds it: a real
//! config directory (rcgen certificates, pin files, config.toml) loaded into a snapshot.

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use http::header::{self, HeaderMap, HeaderValue};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, PublicKeyData as _,
};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use sha2::{Digest as _, Sha256};

use pinproxy::config::has_dot_segment;
use pinproxy::files::Files;
use pinproxy::metrics::Metrics;
use pinproxy::proxy::headers;
use pinproxy::snapshot::{self, Shared};
use pinproxy::tls::{UpstreamObserver, build_upstream_tls};

/// Host-bound routes (`api{i}.example.com`, two prefixes each) and host-less ones, 1 000 in all.
const HOSTS: usize = 250;
const HOSTLESS: usize = 500;

fn pin(spki: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(spki))
}

fn pin_file(dir: &Path, name: &str, pins: &[&str]) {
    let mut s = String::from("description = \"bench\"\nexpires = 2099-01-01\nmode = \"enforce\"\n");
    for (i, p) in pins.iter().enumerate() {
        s.push_str(&format!("[[pin]]\nsha256 = \"{p}\"\nlabel = \"pin {i}\"\n"));
    }
    std::fs::write(dir.join("pins").join(format!("{name}.toml")), s).expect("write pin file");
}

struct Fixture {
    _dir: tempfile::TempDir,
    snapshot: pinproxy::snapshot::Snapshot,
    config: pinproxy::config::Config,
    leaf_der: Vec<u8>,
}

/// A config directory: a CA, a leaf for localhost served by the listener and presented by the
/// pinned HTTPS upstream, and 1 000 routes.
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    std::fs::create_dir_all(d.join("pins")).expect("pins dir");

    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca.distinguished_name.push(DnType::CommonName, "bench root");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let root =
        CertifiedIssuer::self_signed(ca, KeyPair::generate().expect("key")).expect("root cert");
    let key = KeyPair::generate().expect("leaf key");
    let mut leaf = CertificateParams::new(vec!["localhost".to_string()]).expect("leaf params");
    leaf.distinguished_name
        .push(DnType::CommonName, "localhost");
    leaf.is_ca = IsCa::ExplicitNoCa;
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let now = time::OffsetDateTime::now_utc();
    leaf.not_before = now - time::Duration::days(1);
    leaf.not_after = now + time::Duration::days(30);
    let cert = leaf.signed_by(&key, &root).expect("sign leaf");
    std::fs::write(d.join("root.pem"), root.pem()).expect("write root");
    std::fs::write(d.join("leaf.pem"), cert.pem()).expect("write leaf");
    std::fs::write(d.join("leaf.key"), key.serialize_pem()).expect("write key");

    let leaf_pin = pin(&key.subject_public_key_info());
    let spare = pin(b"a spare key, never served");
    pin_file(d, "app", &[&leaf_pin, &spare]);
    pin_file(d, "origin", &[&spare, &leaf_pin]);

    let mut toml = String::from(
        "[admin]\nlisten = \"127.0.0.1:0\"\n\n\
         [[listener]]\nname = \"bench\"\nlisten = \"127.0.0.1:0\"\npin_sets = [\"app\"]\n\
         [[listener.cert]]\nserver_names = [\"localhost\"]\nchain = \"leaf.pem\"\nkey = \"leaf.key\"\n\n\
         [upstream.plain]\nurl = \"http://127.0.0.1:1\"\n\n\
         [upstream.pinned]\nurl = \"https://localhost:1\"\nca = \"root.pem\"\npin_set = \"origin\"\npin_match = \"leaf\"\n\n",
    );
    for i in 0..HOSTS {
        for p in ["users", "orders"] {
            toml.push_str(&format!(
                "[[route]]\nname = \"h{i}-{p}\"\nhost = \"api{i}.example.com\"\npath_prefix = \"/{p}\"\nupstream = \"plain\"\n\n"
            ));
        }
    }
    for i in 0..HOSTLESS {
        toml.push_str(&format!(
            "[[route]]\nname = \"p{i}\"\npath_prefix = \"/svc{i}/v1\"\nupstream = \"plain\"\n\n"
        ));
    }
    std::fs::write(d.join("config.toml"), toml).expect("write config");

    let shared = Shared::new(Metrics::new().expect("metrics"));
    let snapshot = snapshot::build(&d.join("config.toml"), &shared, None, 1, &mut Files::new())
        .unwrap_or_else(|p| panic!("bench config: {}", pinproxy::reload::describe(&p)));
    let (config, _) =
        pinproxy::config::load(&d.join("config.toml"), &mut Files::new()).expect("config");
    Fixture {
        _dir: dir,
        snapshot,
        config,
        leaf_der: cert.der().to_vec(),
    }
}

fn routes(c: &mut Criterion, f: &Fixture) {
    let routes = &f.snapshot.routes;
    assert_eq!(routes.iter().count(), 2 * HOSTS + HOSTLESS);
    let mut g = c.benchmark_group("route_lookup_1000");
    g.bench_function("exact_host_first", |b| {
        b.iter(|| routes.find(black_box("api0.example.com"), black_box("/users/42")))
    });
    g.bench_function("exact_host_last", |b| {
        b.iter(|| routes.find(black_box("api249.example.com"), black_box("/orders/7")))
    });
    g.bench_function("hostless_last", |b| {
        b.iter(|| routes.find(black_box("other.example.com"), black_box("/svc499/v1/x")))
    });
    g.bench_function("no_route", |b| {
        b.iter(|| routes.find(black_box("other.example.com"), black_box("/nowhere")))
    });
    g.finish();
}

/// The head of a typical app request, as hyper hands it over.
fn request_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in [
        ("host", "api.example.com"),
        ("user-agent", "okhttp/4.12.0"),
        ("accept", "application/json"),
        ("accept-encoding", "gzip"),
        ("accept-language", "en-GB"),
        ("authorization", "Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig"),
        ("x-request-id", "4bf92f3577b34da6a3ce929d0e0e4736"),
        ("x-app-version", "4.2.1 (4021)"),
        ("connection", "keep-alive"),
        ("x-forwarded-for", "6.6.6.6"),
    ] {
        h.insert(
            header::HeaderName::from_static(k),
            HeaderValue::from_static(v),
        );
    }
    h
}

fn response_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in [
        ("content-type", "application/json"),
        ("content-length", "1024"),
        ("date", "Wed, 02 Dec 2026 15:00:00 GMT"),
        ("server", "nginx"),
        ("cache-control", "no-store"),
        ("connection", "keep-alive"),
        ("keep-alive", "timeout=5"),
    ] {
        h.insert(
            header::HeaderName::from_static(k),
            HeaderValue::from_static(v),
        );
    }
    h
}

fn header_rewriting(c: &mut Criterion) {
    let client = headers::client_address("203.0.113.7".parse().expect("ip"));
    let host = HeaderValue::from_static("api.example.com");
    let mut g = c.benchmark_group("headers");
    g.bench_function("request", |b| {
        b.iter_batched_ref(
            request_headers,
            |h| {
                headers::strip_hop_by_hop(h);
                headers::set_forwarded(h, &client, &host);
                h.remove(header::HOST);
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("response", |b| {
        b.iter_batched_ref(
            response_headers,
            headers::strip_hop_by_hop,
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn dot_segments(c: &mut Criterion) {
    let mut g = c.benchmark_group("dot_segments");
    g.bench_function("clean_path", |b| {
        b.iter(|| has_dot_segment(black_box("/api/v1/users/12345/orders/67890/items")))
    });
    g.bench_function("encoded_dots", |b| {
        b.iter(|| has_dot_segment(black_box("/api/v1/users/%2e%2E/admin")))
    });
    g.finish();
}

fn upstream_pin_check(c: &mut Criterion, f: &Fixture) {
    let upstream = &f.config.upstreams["pinned"];
    let observer = UpstreamObserver::new(
        "pinned",
        Metrics::new().expect("metrics"),
        Arc::new(tokio::sync::Notify::new()),
    );
    let tls = build_upstream_tls(
        &f.config,
        upstream,
        &mut Files::new(),
        &tls_provider(),
        observer,
    )
    .unwrap_or_else(|p| panic!("upstream tls: {}", pinproxy::reload::describe(&p)));
    let leaf = CertificateDer::from(f.leaf_der.clone());
    let name = ServerName::try_from("localhost").expect("name");
    c.bench_function("upstream_verify_and_pin_check", |b| {
        b.iter(|| {
            tls.verifier
                .verify_server_cert(&leaf, &[], &name, &[], UnixTime::now())
                .expect("verified and pinned")
        })
    });
}

fn tls_provider() -> Arc<rustls::crypto::CryptoProvider> {
    pinproxy::tls::provider()
}

fn benches(c: &mut Criterion) {
    let f = fixture();
    routes(c, &f);
    header_rewriting(c);
    dot_segments(c);
    upstream_pin_check(c, &f);
}

criterion_group!(hot_path, benches);
criterion_main!(hot_path);
