//! Towards the apps: a listener's certificates loaded, checked against §4, and put behind an
//! SNI resolver in one `ServerConfig`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, ServerSessionMemoryCache};
use rustls::sign::CertifiedKey;

use super::rules::{ChainMatch, ServedPath, check_listener_pins};
use crate::clock::fmt_time;
use crate::config::{CertSpec, Config, Listener};
use crate::diag::{Kind, Problem, Problems};
use crate::files::Files;
use crate::pin::{CertInfo, cert_info, dns_name_matches};

/// One served certificate: its chain as clients see it and the key that signs for it.
#[derive(Debug)]
pub struct LoadedCert {
    pub field: String,
    pub server_names: Vec<String>,
    /// Leaf, intermediates, then the anchor when configured.
    pub path: Vec<CertInfo>,
    pub has_anchor: bool,
    pub key: Arc<CertifiedKey>,
}

/// Everything one listener needs for handshakes.
#[derive(Debug)]
pub struct ListenerTls {
    pub name: String,
    pub config: Arc<ServerConfig>,
    /// `config` with the resolver fixed to one certificate, by index: the proxy picks the
    /// certificate from the ClientHello itself and hands the handshake the matching config, so
    /// the certificate a connection's requests are checked against is the one served (no second
    /// lookup). Clones of `config`: they share its session cache and ticketer.
    pub by_cert: Vec<Arc<ServerConfig>>,
    pub resolver: Arc<SniResolver>,
    pub certs: Vec<LoadedCert>,
    pub matches: Vec<ChainMatch>,
}

impl ListenerTls {
    /// Every pin on this listener's served chains, leaf to anchor: what [`PinSet::backups`]
    /// takes.
    ///
    /// [`PinSet::backups`]: crate::pin::PinSet::backups
    pub fn served_pins(&self) -> Vec<crate::pin::Pin> {
        self.certs
            .iter()
            .flat_map(|c| c.path.iter().map(|i| i.pin))
            .collect()
    }
}

/// Picks a certificate by SNI: exact name, then `*.` wildcard, then the first certificate.
#[derive(Debug)]
pub struct SniResolver {
    exact: HashMap<String, usize>,
    wildcard: HashMap<String, usize>,
    keys: Vec<Arc<CertifiedKey>>,
}

impl SniResolver {
    /// Index of the certificate served for `sni`.
    pub fn pick(&self, sni: Option<&str>) -> usize {
        let Some(sni) = sni else { return 0 };
        // rustls hands SNI over in lower case already: copy only when it is not.
        let sni = sni.trim_end_matches('.');
        let sni = if sni.bytes().any(|b| b.is_ascii_uppercase()) {
            std::borrow::Cow::Owned(sni.to_ascii_lowercase())
        } else {
            std::borrow::Cow::Borrowed(sni)
        };
        let sni = &*sni;
        if let Some(i) = self.exact.get(sni) {
            return *i;
        }
        sni.split_once('.')
            .and_then(|(_, parent)| self.wildcard.get(parent))
            .copied()
            .unwrap_or(0)
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.keys.get(self.pick(hello.server_name())).cloned()
    }
}

/// Always the same certificate: the one picked by SNI before the handshake went on.
#[derive(Debug)]
struct OneCert(Arc<CertifiedKey>);

impl ResolvesServerCert for OneCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// Loads a listener's certificates and keys, applies the §4 rules, and builds its config.
/// Warnings come back with the result.
pub fn build_listener(
    config: &Config,
    li: usize,
    files: &mut Files,
    provider: &Arc<CryptoProvider>,
    now: i64,
) -> Result<(ListenerTls, Problems), Problems> {
    let listener = &config.listeners[li];
    let mut problems = Problems::default();
    let mut certs = Vec::new();
    for spec in &listener.certs {
        match load_cert(config, spec, files, provider, now) {
            Ok((c, p)) => {
                problems.extend(p);
                certs.push(c);
            }
            Err(p) => problems.extend(p),
        }
    }
    if problems.has_errors() {
        return Err(problems);
    }
    for c in &certs {
        if !c.path[0].key_algorithm.trustkit_supported() {
            problems.push(Problem::warning(
                Kind::Tls,
                &config.file,
                format!("{}.key", c.field),
                format!(
                    "{} keys cannot be pinned by TrustKit (RSA 2048/3072/4096, ECDSA P-256/P-384 only)",
                    c.path[0].key_algorithm
                ),
            ));
        }
    }
    let served: Vec<ServedPath<'_>> = certs
        .iter()
        .map(|c| ServedPath {
            field: &c.field,
            path: &c.path,
            has_anchor: c.has_anchor,
        })
        .collect();
    let (rule_problems, matches) = check_listener_pins(config, listener, &served, now);
    problems.extend(rule_problems);
    if problems.has_errors() {
        return Err(problems);
    }
    let resolver = Arc::new(resolver(listener, &certs));
    let mut server_config = server_config(provider, resolver.clone()).map_err(|e| {
        Problem::error(
            Kind::Tls,
            &config.file,
            format!("listener[{li}]"),
            e.to_string(),
        )
    })?;
    if let Some(path) = &listener.session_ticket_keys {
        server_config.ticketer = super::tickets::load(path, files).map_err(|m| {
            Problem::error(
                Kind::File,
                &config.file,
                format!("listener[{li}].session_ticket_keys"),
                m,
            )
        })?;
    }
    // After the ticketer: the per-certificate configs share it and the session cache.
    let by_cert = certs
        .iter()
        .map(|c| {
            let mut one = server_config.clone();
            one.cert_resolver = Arc::new(OneCert(c.key.clone()));
            Arc::new(one)
        })
        .collect();
    Ok((
        ListenerTls {
            name: listener.name.clone(),
            config: Arc::new(server_config),
            by_cert,
            resolver,
            certs,
            matches,
        },
        problems,
    ))
}

fn resolver(listener: &Listener, certs: &[LoadedCert]) -> SniResolver {
    let mut exact = HashMap::new();
    let mut wildcard = HashMap::new();
    for (i, spec) in listener.certs.iter().enumerate() {
        for name in &spec.server_names {
            match name.strip_prefix("*.") {
                Some(parent) => wildcard.insert(parent.to_string(), i),
                None => exact.insert(name.clone(), i),
            };
        }
    }
    SniResolver {
        exact,
        wildcard,
        keys: certs.iter().map(|c| c.key.clone()).collect(),
    }
}

fn server_config(
    provider: &Arc<CryptoProvider>,
    resolver: Arc<SniResolver>,
) -> Result<ServerConfig, rustls::Error> {
    let mut cfg = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    cfg.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE_ENTRIES);
    cfg.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new()?;
    Ok(cfg)
}

fn load_cert(
    config: &Config,
    spec: &CertSpec,
    files: &mut Files,
    provider: &Arc<CryptoProvider>,
    now: i64,
) -> Result<(LoadedCert, Problems), Problems> {
    let file = &config.file;
    let chain_field = format!("{}.chain", spec.field);
    let chain = read_certs(&spec.chain, files)
        .map_err(|m| Problem::error(Kind::File, file, &chain_field, m))?;
    let anchor = match &spec.anchor {
        Some(a) => {
            let field = format!("{}.anchor", spec.field);
            let mut certs =
                read_certs(a, files).map_err(|m| Problem::error(Kind::File, file, &field, m))?;
            if certs.len() != 1 {
                return Err(Problem::error(
                    Kind::File,
                    file,
                    field,
                    format!(
                        "{}: holds {} certificates, expected one root",
                        a.display(),
                        certs.len()
                    ),
                )
                .into());
            }
            certs.pop()
        }
        None => None,
    };
    let key_field = format!("{}.key", spec.field);
    let key_bytes = files.read(&spec.key).map_err(|e| {
        Problem::error(
            Kind::File,
            file,
            &key_field,
            format!("{}: cannot read: {e}", spec.key.display()),
        )
    })?;
    let key = PrivateKeyDer::from_pem_slice(&key_bytes).map_err(|e| {
        Problem::error(
            Kind::File,
            file,
            &key_field,
            format!("{}: no PEM private key: {e}", spec.key.display()),
        )
    })?;

    let mut path = Vec::new();
    for (i, der) in chain.iter().chain(anchor.iter()).enumerate() {
        let info = cert_info(der).map_err(|e| {
            let what = if i < chain.len() {
                &chain_field
            } else {
                "anchor"
            };
            Problem::error(
                Kind::File,
                file,
                what,
                format!("certificate #{}: {e}", i + 1),
            )
        })?;
        path.push(info);
    }

    let mut problems = Problems::default();
    let signing = provider.key_provider.load_private_key(key).map_err(|e| {
        Problem::error(
            Kind::Tls,
            file,
            &key_field,
            format!("{}: unusable key: {e}", spec.key.display()),
        )
    })?;
    let certified = CertifiedKey::new(chain.clone(), signing);
    match certified.keys_match() {
        Ok(()) => {}
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => problems.push(Problem::error(
            Kind::KeyMismatch,
            file,
            &key_field,
            format!(
                "{} is not the key of the leaf certificate in {} ({}); a renewal must reuse the pinned key",
                spec.key.display(),
                spec.chain.display(),
                path[0].subject
            ),
        )),
        Err(e) => problems.push(Problem::error(
            Kind::Tls,
            file,
            &key_field,
            format!("cannot confirm that {} belongs to {}: {e}", spec.key.display(), spec.chain.display()),
        )),
    }
    let leaf = &path[0];
    if now < leaf.not_before {
        problems.push(Problem::error(
            Kind::Tls,
            file,
            &chain_field,
            format!(
                "leaf {} is not valid before {}",
                leaf.subject,
                fmt_time(leaf.not_before)
            ),
        ));
    }
    if now > leaf.not_after {
        problems.push(Problem::error(
            Kind::Tls,
            file,
            &chain_field,
            format!(
                "leaf {} expired on {}",
                leaf.subject,
                fmt_time(leaf.not_after)
            ),
        ));
    }
    for c in &path[1..] {
        if now > c.not_after {
            problems.push(Problem::warning(
                Kind::Tls,
                file,
                &chain_field,
                format!("{} expired on {}", c.subject, fmt_time(c.not_after)),
            ));
        }
    }
    for (k, name) in spec.server_names.iter().enumerate() {
        let covered = match name.strip_prefix("*.") {
            Some(_) => leaf.dns_names.iter().any(|d| d.eq_ignore_ascii_case(name)),
            None => leaf.dns_names.iter().any(|d| dns_name_matches(d, name)),
        };
        if !covered {
            problems.push(Problem::error(
                Kind::Tls,
                file,
                format!("{}.server_names[{k}]", spec.field),
                format!(
                    "\"{name}\" is not among the leaf's DNS names ({}); clients would reject it",
                    leaf.dns_names.join(", ")
                ),
            ));
        }
    }
    problems.into_result().map(|warnings| {
        (
            LoadedCert {
                field: spec.field.clone(),
                server_names: spec.server_names.clone(),
                path,
                has_anchor: anchor.is_some(),
                key: Arc::new(certified),
            },
            warnings,
        )
    })
}

/// Reads every certificate of a PEM file, in order.
pub(crate) fn read_certs(
    path: &Path,
    files: &mut Files,
) -> Result<Vec<CertificateDer<'static>>, String> {
    let data = files
        .read(path)
        .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&data)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: bad PEM: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificate in it", path.display()));
    }
    Ok(certs)
}

const SESSION_CACHE_ENTRIES: usize = 16_384;
