//! The Prometheus registry of one proxy instance and every metric it exposes (DESIGN.md §6).
//!
//! Each instance owns its registry, so tests can run many proxies in one process. Names are
//! fixed: deploy/ alert rules and dashboards rely on them. Nothing here reads config or sockets.

use prometheus::{
    Encoder as _, Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

pub const CERT_NOT_AFTER: &str = "pinproxy_certificate_not_after_timestamp_seconds";
pub const CERT_PINNED: &str = "pinproxy_certificate_pinned";
pub const PIN_SET_EXPIRY: &str = "pinproxy_pin_set_expiry_timestamp_seconds";
pub const EXPIRY_THRESHOLD: &str = "pinproxy_expiry_threshold_seconds";
pub const UPSTREAM_PIN_MISMATCHES: &str = "pinproxy_upstream_pin_mismatches_total";
pub const UPSTREAM_KEY_CHANGES: &str = "pinproxy_upstream_key_changes_total";
pub const CONFIG_RELOADS: &str = "pinproxy_config_reloads_total";
pub const CONFIG_LAST_RELOAD_OK: &str = "pinproxy_config_last_reload_successful";
pub const CONFIG_LAST_RELOAD_OK_TS: &str = "pinproxy_config_last_reload_success_timestamp_seconds";
pub const CONFIG_GENERATION: &str = "pinproxy_config_generation";
pub const CONFIG_INFO: &str = "pinproxy_config_info";
pub const REQUESTS: &str = "pinproxy_requests_total";
pub const REQUEST_DURATION: &str = "pinproxy_request_duration_seconds";
pub const UPSTREAM_ERRORS: &str = "pinproxy_upstream_errors_total";
pub const TLS_HANDSHAKE_ERRORS: &str = "pinproxy_tls_handshake_errors_total";
pub const CONNECTIONS_OPEN: &str = "pinproxy_connections_open";
pub const CONNECTIONS_REJECTED: &str = "pinproxy_connections_rejected_total";
pub const CLIENT_ERRORS: &str = "pinproxy_client_errors_total";
pub const BUILD_INFO: &str = "pinproxy_build_info";
pub const LOG_LINES_DROPPED: &str = "pinproxy_log_lines_dropped_total";
pub const UPSTREAM_REQUESTS: &str = "pinproxy_upstream_requests_total";
pub const AUTH_CHECKS: &str = "pinproxy_auth_checks_total";
pub const PIN_SET_REQUESTS: &str = "pinproxy_pin_set_requests_total";
pub const PROXY_PROTOCOL_REJECTED: &str = "pinproxy_proxy_protocol_rejected_total";

/// Typed handles to every metric, registered once in the instance's own registry.
#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    pub cert_not_after: GaugeVec,
    pub cert_pinned: IntGaugeVec,
    pub pin_set_expiry: GaugeVec,
    pub expiry_threshold: GaugeVec,
    pub upstream_pin_mismatches: IntCounterVec,
    pub upstream_key_changes: IntCounterVec,
    pub config_reloads: IntCounterVec,
    pub config_last_reload_ok: IntGauge,
    pub config_last_reload_ok_ts: Gauge,
    pub config_generation: IntGauge,
    pub config_info: IntGaugeVec,
    pub requests: IntCounterVec,
    pub request_duration: HistogramVec,
    pub upstream_errors: IntCounterVec,
    pub tls_handshake_errors: IntCounterVec,
    pub connections_open: IntGaugeVec,
    pub connections_rejected: IntCounterVec,
    pub client_errors: IntCounterVec,
    pub build_info: IntGaugeVec,
    pub log_lines_dropped: IntCounter,
    pub upstream_requests: IntCounterVec,
    pub auth_checks: IntCounterVec,
    pub pin_set_requests: IntCounterVec,
    pub proxy_protocol_rejected: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let m = Metrics {
            cert_not_after: gauges(
                CERT_NOT_AFTER,
                "notAfter of a served or upstream-verified certificate, Unix seconds",
                &["scope", "name", "position", "subject", "serial", "pin"],
            )?,
            cert_pinned: int_gauges(
                CERT_PINNED,
                "1 if the certificate's SPKI is in the pin set, else 0",
                &["scope", "name", "pin_set", "position", "pin"],
            )?,
            pin_set_expiry: gauges(
                PIN_SET_EXPIRY,
                "00:00 UTC of the pin set's expires date, Unix seconds",
                &["pin_set"],
            )?,
            expiry_threshold: gauges(
                EXPIRY_THRESHOLD,
                "configured expiry alert thresholds in seconds",
                &["kind", "severity"],
            )?,
            upstream_pin_mismatches: counters(
                UPSTREAM_PIN_MISMATCHES,
                "upstream handshakes whose verified path matched no pin",
                &["upstream", "mode"],
            )?,
            upstream_key_changes: counters(
                UPSTREAM_KEY_CHANGES,
                "upstream leaf keys not among the last 8 seen",
                &["upstream"],
            )?,
            config_reloads: counters(
                CONFIG_RELOADS,
                "reload attempts that found a change",
                &["result", "reason"],
            )?,
            config_last_reload_ok: IntGauge::new(
                CONFIG_LAST_RELOAD_OK,
                "1 if the last reload succeeded",
            )?,
            config_last_reload_ok_ts: Gauge::new(
                CONFIG_LAST_RELOAD_OK_TS,
                "time of the last successful load",
            )?,
            config_generation: IntGauge::new(
                CONFIG_GENERATION,
                "increments with every swap of the running config",
            )?,
            config_info: int_gauges(
                CONFIG_INFO,
                "SHA-256 over the running config, pin and referenced files",
                &["sha256"],
            )?,
            requests: counters(
                REQUESTS,
                "requests answered",
                &["listener", "route", "code"],
            )?,
            request_duration: HistogramVec::new(
                HistogramOpts::new(REQUEST_DURATION, "time to the response head")
                    .buckets(DURATION_BUCKETS.to_vec()),
                &["listener", "route"],
            )?,
            upstream_errors: counters(
                UPSTREAM_ERRORS,
                "requests that failed towards an upstream",
                &["upstream", "kind"],
            )?,
            tls_handshake_errors: counters(
                TLS_HANDSHAKE_ERRORS,
                "failed client handshakes",
                &["listener", "reason"],
            )?,
            connections_open: int_gauges(
                CONNECTIONS_OPEN,
                "client connections open",
                &["listener"],
            )?,
            connections_rejected: counters(
                CONNECTIONS_REJECTED,
                "connections closed at once over max_connections",
                &["listener"],
            )?,
            client_errors: counters(
                CLIENT_ERRORS,
                "requests or responses cut short by the client (bad body, early close, slow reads)",
                &["listener", "kind"],
            )?,
            build_info: int_gauges(BUILD_INFO, "1, labelled with the version", &["version"])?,
            log_lines_dropped: IntCounter::new(
                LOG_LINES_DROPPED,
                "log lines dropped because the log writer was behind",
            )?,
            upstream_requests: counters(
                UPSTREAM_REQUESTS,
                "requests sent to an upstream, whatever the outcome (the error ratio's denominator)",
                &["upstream"],
            )?,
            auth_checks: counters(
                AUTH_CHECKS,
                "token checks of route auth policies, by result",
                &["route", "policy", "result"],
            )?,
            pin_set_requests: counters(
                PIN_SET_REQUESTS,
                "requests by the pin set their app version ships (unknown: no or unmapped version)",
                &["listener", "pin_set"],
            )?,
            proxy_protocol_rejected: counters(
                PROXY_PROTOCOL_REJECTED,
                "connections closed for a missing, malformed or untrusted PROXY header",
                &["listener", "reason"],
            )?,
            registry,
        };
        m.register_all()?;
        m.build_info.with_label_values(&[VERSION]).set(1);
        m.config_last_reload_ok.set(1);
        Ok(m)
    }

    fn register_all(&self) -> Result<(), prometheus::Error> {
        let r = &self.registry;
        r.register(Box::new(self.cert_not_after.clone()))?;
        r.register(Box::new(self.cert_pinned.clone()))?;
        r.register(Box::new(self.pin_set_expiry.clone()))?;
        r.register(Box::new(self.expiry_threshold.clone()))?;
        r.register(Box::new(self.upstream_pin_mismatches.clone()))?;
        r.register(Box::new(self.upstream_key_changes.clone()))?;
        r.register(Box::new(self.config_reloads.clone()))?;
        r.register(Box::new(self.config_last_reload_ok.clone()))?;
        r.register(Box::new(self.config_last_reload_ok_ts.clone()))?;
        r.register(Box::new(self.config_generation.clone()))?;
        r.register(Box::new(self.config_info.clone()))?;
        r.register(Box::new(self.requests.clone()))?;
        r.register(Box::new(self.request_duration.clone()))?;
        r.register(Box::new(self.upstream_errors.clone()))?;
        r.register(Box::new(self.tls_handshake_errors.clone()))?;
        r.register(Box::new(self.connections_open.clone()))?;
        r.register(Box::new(self.connections_rejected.clone()))?;
        r.register(Box::new(self.client_errors.clone()))?;
        r.register(Box::new(self.build_info.clone()))?;
        r.register(Box::new(self.log_lines_dropped.clone()))?;
        r.register(Box::new(self.upstream_requests.clone()))?;
        r.register(Box::new(self.auth_checks.clone()))?;
        r.register(Box::new(self.pin_set_requests.clone()))?;
        r.register(Box::new(self.proxy_protocol_rejected.clone()))?;
        Ok(())
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(16 * 1024);
        // The log writer counts its drops; the counter follows it at each scrape.
        let dropped = crate::diag::dropped_log_lines();
        let shown = self.log_lines_dropped.get();
        if dropped > shown {
            self.log_lines_dropped.inc_by(dropped - shown);
        }
        // Encoding into a Vec cannot fail on I/O; a broken metric family is skipped by the encoder.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        buf
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

fn counters(name: &str, help: &str, labels: &[&str]) -> Result<IntCounterVec, prometheus::Error> {
    IntCounterVec::new(Opts::new(name, help), labels)
}

fn int_gauges(name: &str, help: &str, labels: &[&str]) -> Result<IntGaugeVec, prometheus::Error> {
    IntGaugeVec::new(Opts::new(name, help), labels)
}

fn gauges(name: &str, help: &str, labels: &[&str]) -> Result<GaugeVec, prometheus::Error> {
    GaugeVec::new(Opts::new(name, help), labels)
}

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Seconds to the response head: from a cached answer to a slow upstream's minute.
const DURATION_BUCKETS: [f64; 15] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
