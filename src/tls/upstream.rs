//! Towards upstreams: one `ClientConfig` per upstream per snapshot, whose verifier runs normal
//! verification (WebPKI roots, the OS store or a CA file; hostname included) and then matches
//! pins against the **verified path** only — never against extra certificates the server sent
//! (OkHttp's CVE-2016-2402). Handshake signatures are always checked by the standard verifier.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, TrustAnchor, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

use super::der_sequence;
use super::rules::Position;
use super::server::read_certs;
use crate::config::{Config, PinMatch, Trust, Upstream};
use crate::diag::{Kind, Problem, Problems};
use crate::files::Files;
use crate::metrics::Metrics;
use crate::pin::{CertInfo, Pin, PinMode, cert_info};

/// The TLS side of one upstream in one snapshot.
#[derive(Debug, Clone)]
pub struct UpstreamTls {
    pub client_config: Arc<ClientConfig>,
    /// The verifier inside `client_config` (which does not hand it out): verification and the
    /// pin check on their own, as the micro-benchmarks in benches/ run them.
    pub verifier: Arc<dyn ServerCertVerifier>,
}

/// One certificate of a verified path as last seen from an upstream.
#[derive(Debug, Clone)]
pub struct ObservedCert {
    pub position: Position,
    pub pin: Pin,
    /// Absent for a compiled-in or OS root, of which only the key is known.
    pub info: Option<CertInfo>,
    pub subject: String,
}

/// What one upstream's handshakes showed, kept across reloads (keyed by upstream name).
#[derive(Debug)]
pub struct UpstreamObserver {
    name: String,
    metrics: Metrics,
    /// Woken when a path is seen for the first time or changes, so expiry gauges follow soon.
    changed: Arc<tokio::sync::Notify>,
    state: Mutex<ObserverState>,
    /// Unix milliseconds of the last successful request: connections are pooled and sessions
    /// resumed, so the verifier may not run again for as long as the upstream is in use.
    used: AtomicU64,
}

#[derive(Debug, Default)]
struct ObserverState {
    last_path: Option<(SystemTime, Vec<ObservedCert>)>,
    recent_keys: VecDeque<Pin>,
    last_warning: Option<Instant>,
    suppressed: u64,
}

impl UpstreamObserver {
    pub fn new(name: &str, metrics: Metrics, changed: Arc<tokio::sync::Notify>) -> Arc<Self> {
        // Series start at 0 so `increase()` in alert rules sees the first event.
        metrics
            .upstream_key_changes
            .with_label_values(&[name])
            .inc_by(0);
        Arc::new(UpstreamObserver {
            name: name.to_string(),
            metrics,
            changed,
            state: Mutex::new(ObserverState::default()),
            used: AtomicU64::new(0),
        })
    }

    /// The verified path of the last full handshake, and when it was last seen: that
    /// handshake or, if later, the last successful request (over a pooled connection or a
    /// resumed session, both verified under this upstream's current configuration).
    pub fn last_path(&self) -> Option<(SystemTime, Vec<ObservedCert>)> {
        let used = UNIX_EPOCH + Duration::from_millis(self.used.load(Ordering::Relaxed));
        self.lock()
            .last_path
            .clone()
            .map(|(at, path)| (at.max(used), path))
    }

    /// Records a successful request: the upstream is still seen.
    pub fn touch(&self) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        // Load first: a hot upstream then writes the shared cache line once a millisecond at most.
        if self.used.load(Ordering::Relaxed) != now {
            self.used.store(now, Ordering::Relaxed);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ObserverState> {
        crate::sync::lock(&self.state)
    }

    fn observe(&self, path: Vec<ObservedCert>) {
        let leaf = path[0].pin;
        let mut st = self.lock();
        if !st.recent_keys.contains(&leaf) {
            if !st.recent_keys.is_empty() {
                self.metrics
                    .upstream_key_changes
                    .with_label_values(&[&self.name])
                    .inc();
                tracing::warn!(upstream = %self.name, pin = %leaf.to_prefixed(), subject = %path[0].subject, "upstream presents a new leaf key");
            }
            st.recent_keys.push_back(leaf);
            if st.recent_keys.len() > KEY_HISTORY {
                st.recent_keys.pop_front();
            }
        }
        let same = st
            .last_path
            .as_ref()
            .is_some_and(|(_, old)| old.iter().map(|c| c.pin).eq(path.iter().map(|c| c.pin)));
        st.last_path = Some((SystemTime::now(), path));
        drop(st);
        if !same {
            self.changed.notify_one();
        }
    }

    /// Creates the mismatch series at 0 for an upstream that pins, for the same reason.
    pub fn expect_pins(&self, mode: PinMode) {
        self.metrics
            .upstream_pin_mismatches
            .with_label_values(&[self.name.as_str(), mode.as_str()])
            .inc_by(0);
    }

    fn mismatch(&self, mode: PinMode, set: &str, path: &[ObservedCert]) {
        self.metrics
            .upstream_pin_mismatches
            .with_label_values(&[self.name.as_str(), mode.as_str()])
            .inc();
        let mut st = self.lock();
        let now = Instant::now();
        if st
            .last_warning
            .is_some_and(|t| now.duration_since(t) < WARN_EVERY)
        {
            st.suppressed += 1;
            return;
        }
        let suppressed = std::mem::take(&mut st.suppressed);
        st.last_warning = Some(now);
        drop(st);
        let presented: Vec<String> = path
            .iter()
            .map(|c| format!("{} {}", c.position.as_str(), c.pin.to_prefixed()))
            .collect();
        let presented = presented.join(", ");
        if mode == PinMode::Enforce {
            // The failed request logs this handshake's one line, with the cause.
            tracing::debug!(upstream = %self.name, pin_set = %set, path = %presented, "upstream verified path matches no pin");
        } else {
            tracing::warn!(
                upstream = %self.name, pin_set = %set, mode = mode.as_str(), path = %presented, suppressed,
                "upstream verified path matches no pin; report mode lets the request through"
            );
        }
    }
}

/// Builds the client config of one upstream. `observer` carries state over reloads.
pub fn build_upstream_tls(
    config: &Config,
    upstream: &Upstream,
    files: &mut Files,
    provider: &Arc<CryptoProvider>,
    observer: Arc<UpstreamObserver>,
) -> Result<UpstreamTls, Problems> {
    let field = format!("upstream.{}", upstream.name);
    let err = |kind, f: &str, m: String| {
        Problems::from(Problem::error(
            kind,
            &config.file,
            format!("{field}.{f}"),
            m,
        ))
    };
    let mut roots = RootCertStore::empty();
    let mut anchor_certs = HashMap::new();
    match &upstream.trust {
        Trust::WebPki => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        Trust::System => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(err(
                    Kind::Tls,
                    "trust",
                    "no usable certificate in the OS trust store".into(),
                ));
            }
        }
        Trust::Ca(path) => {
            let certs = read_certs(path, files).map_err(|m| err(Kind::File, "ca", m))?;
            for der in certs {
                let info = cert_info(&der)
                    .map_err(|e| err(Kind::File, "ca", format!("{}: {e}", path.display())))?;
                roots.add(der).map_err(|e| {
                    err(
                        Kind::Tls,
                        "ca",
                        format!("{}: not usable as a root: {e}", path.display()),
                    )
                })?;
                anchor_certs.insert(info.pin, info);
            }
        }
    }
    let anchors: Vec<TrustAnchor<'static>> = roots.roots.clone();
    let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| err(Kind::Tls, "trust", e.to_string()))?;
    let pins = match &upstream.pin_set {
        Some(name) => {
            let set = config.pin_sets.get(name).ok_or_else(|| {
                err(
                    Kind::Validation,
                    "pin_set",
                    format!("no pin set \"{name}\""),
                )
            })?;
            Some(PinPolicy {
                set: name.clone(),
                pins: set.pins.iter().map(|p| p.pin).collect(),
                mode: set.mode,
                pin_match: upstream.pin_match,
            })
        }
        None => None,
    };
    if let Some(p) = &pins {
        observer.expect_pins(p.mode);
    }
    let verifier = PinningVerifier {
        inner,
        anchors,
        anchor_certs,
        provider: provider.clone(),
        pins,
        observer,
    };
    let verifier: Arc<dyn ServerCertVerifier> = Arc::new(verifier);
    let cfg = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| err(Kind::Tls, "url", e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_no_client_auth();
    Ok(UpstreamTls {
        client_config: Arc::new(cfg),
        verifier,
    })
}

/// Whether an error (or any of its sources) is a pin mismatch from this module's verifier.
pub fn is_pin_mismatch(err: &(dyn std::error::Error + 'static)) -> bool {
    crate::diag::error_chain(err).into_iter().any(|e| {
        matches!(e.downcast_ref::<rustls::Error>(),
            Some(rustls::Error::InvalidCertificate(CertificateError::Other(o))) if o.0.downcast_ref::<PinMismatch>().is_some())
    })
}

#[derive(Debug)]
struct PinPolicy {
    set: String,
    pins: Vec<Pin>,
    mode: PinMode,
    pin_match: PinMatch,
}

#[derive(Debug)]
struct PinningVerifier {
    inner: Arc<WebPkiServerVerifier>,
    anchors: Vec<TrustAnchor<'static>>,
    anchor_certs: HashMap<Pin, CertInfo>,
    provider: Arc<CryptoProvider>,
    pins: Option<PinPolicy>,
    observer: Arc<UpstreamObserver>,
}

#[derive(Debug, thiserror::Error)]
#[error("the verified path matches no pin of pin set \"{0}\"")]
struct PinMismatch(String);

impl PinningVerifier {
    /// The path webpki actually built from the leaf to a trust anchor.
    fn verified_path(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<Vec<ObservedCert>, rustls::Error> {
        let ee = webpki::EndEntityCert::try_from(end_entity)
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        let path = ee
            .verify_for_usage(
                self.provider.signature_verification_algorithms.all,
                &self.anchors,
                intermediates,
                now,
                webpki::KeyUsage::server_auth(),
                None,
                None,
            )
            .map_err(|e| {
                rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(
                    Arc::new(e),
                )))
            })?;
        let mut out = Vec::new();
        let certs = std::iter::once(&**path.end_entity()).chain(path.intermediate_certificates());
        for (i, cert) in certs.enumerate() {
            let der = cert.der();
            let info = cert_info(der.as_ref()).ok();
            let spki = cert.subject_public_key_info();
            out.push(ObservedCert {
                position: if i == 0 {
                    Position::Leaf
                } else {
                    Position::Intermediate
                },
                pin: Pin::of_spki(spki.as_ref()),
                subject: info.as_ref().map(|c| c.subject.clone()).unwrap_or_default(),
                info,
            });
        }
        let anchor_pin = Pin::of_spki(&der_sequence(
            path.anchor().subject_public_key_info.as_ref(),
        ));
        let info = self.anchor_certs.get(&anchor_pin).cloned();
        out.push(ObservedCert {
            position: Position::Anchor,
            pin: anchor_pin,
            subject: info
                .as_ref()
                .map(|c| c.subject.clone())
                .unwrap_or_else(|| "(trust anchor)".into()),
            info,
        });
        Ok(out)
    }
}

impl ServerCertVerifier for PinningVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        let path = self.verified_path(end_entity, intermediates, now)?;
        let verdict = self.pins.as_ref().map(|p| {
            let ok = match p.pin_match {
                PinMatch::Leaf => p.pins.contains(&path[0].pin),
                PinMatch::Chain => path.iter().any(|c| p.pins.contains(&c.pin)),
            };
            (ok, p)
        });
        if let Some((false, policy)) = verdict {
            self.observer.mismatch(policy.mode, &policy.set, &path);
            self.observer.observe(path);
            if policy.mode == PinMode::Enforce {
                return Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                    rustls::OtherError(Arc::new(PinMismatch(policy.set.clone()))),
                )));
            }
        } else {
            self.observer.observe(path);
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

const KEY_HISTORY: usize = 8;
const WARN_EVERY: Duration = Duration::from_secs(60);

#[cfg(test)]
mod tests {
    use super::*;

    fn observed(pin: u8) -> Vec<ObservedCert> {
        vec![ObservedCert {
            position: Position::Leaf,
            pin: Pin::from_bytes([pin; 32]),
            info: None,
            subject: "CN=test".into(),
        }]
    }

    #[test]
    fn mismatch_warnings_are_rate_limited_but_every_mismatch_is_counted() {
        let metrics = Metrics::new().expect("metrics");
        let obs =
            UpstreamObserver::new("psp", metrics.clone(), Arc::new(tokio::sync::Notify::new()));
        for _ in 0..5 {
            obs.mismatch(PinMode::Report, "psp", &observed(1));
        }
        assert_eq!(
            metrics
                .upstream_pin_mismatches
                .with_label_values(&["psp", "report"])
                .get(),
            5
        );
        assert_eq!(
            obs.lock().suppressed,
            4,
            "one warning logged, four held back"
        );
    }

    #[test]
    fn only_a_leaf_key_outside_the_last_eight_counts_as_a_key_change() {
        let metrics = Metrics::new().expect("metrics");
        let obs =
            UpstreamObserver::new("psp", metrics.clone(), Arc::new(tokio::sync::Notify::new()));
        let changes = || {
            metrics
                .upstream_key_changes
                .with_label_values(&["psp"])
                .get()
        };
        obs.observe(observed(1));
        assert_eq!(changes(), 0, "the first sighting is not a change");
        obs.observe(observed(2));
        obs.observe(observed(1));
        assert_eq!(changes(), 1, "going back to a recent key is not a change");
        for k in 3..=11 {
            obs.observe(observed(k));
        }
        obs.observe(observed(1));
        assert_eq!(changes(), 11, "key 1 fell out of the last eight");
    }
}
