//! The serde mirror of `config.toml`: field names and defaults exactly as operators write them.
//! Only this module and its parent see these types.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub admin: RawAdmin,
    #[serde(default)]
    pub expiry: RawExpiry,
    #[serde(default)]
    pub reload: RawReload,
    #[serde(default)]
    pub log: RawLog,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub listener: Vec<RawListener>,
    #[serde(default)]
    pub route: Vec<RawRoute>,
    #[serde(default)]
    pub upstream: BTreeMap<String, RawUpstream>,
    #[serde(default)]
    pub auth: BTreeMap<String, super::auth::RawAuth>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    #[serde(default = "d_admin_listen")]
    pub listen: String,
}

impl Default for RawAdmin {
    fn default() -> Self {
        RawAdmin {
            listen: d_admin_listen(),
        }
    }
}

fn d_admin_listen() -> String {
    "127.0.0.1:9901".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExpiry {
    #[serde(with = "humantime_serde", default = "d_28d")]
    pub warn_before: Duration,
    #[serde(with = "humantime_serde", default = "d_14d")]
    pub critical_before: Duration,
    #[serde(with = "humantime_serde", default = "d_60d")]
    pub pin_set_warn_before: Duration,
    #[serde(with = "humantime_serde", default = "d_21d")]
    pub pin_set_critical_before: Duration,
    #[serde(with = "humantime_serde", default = "d_2d")]
    pub pin_set_grace: Duration,
    #[serde(with = "humantime_serde", default = "d_1h")]
    pub check_every: Duration,
}

impl Default for RawExpiry {
    fn default() -> Self {
        RawExpiry {
            warn_before: d_28d(),
            critical_before: d_14d(),
            pin_set_warn_before: d_60d(),
            pin_set_critical_before: d_21d(),
            pin_set_grace: d_2d(),
            check_every: d_1h(),
        }
    }
}

const DAY: u64 = 86_400;
fn d_28d() -> Duration {
    Duration::from_secs(28 * DAY)
}
fn d_14d() -> Duration {
    Duration::from_secs(14 * DAY)
}
fn d_60d() -> Duration {
    Duration::from_secs(60 * DAY)
}
fn d_21d() -> Duration {
    Duration::from_secs(21 * DAY)
}
fn d_2d() -> Duration {
    Duration::from_secs(2 * DAY)
}
fn d_1h() -> Duration {
    Duration::from_secs(3600)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawReload {
    #[serde(with = "humantime_serde", default)]
    pub poll_interval: Duration,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    #[serde(default)]
    pub format: RawLogFormat,
    #[serde(default = "d_true")]
    pub access: bool,
}

impl Default for RawLog {
    fn default() -> Self {
        RawLog {
            format: RawLogFormat::Text,
            access: true,
        }
    }
}

fn d_true() -> bool {
    true
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub enum RawLogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    #[serde(with = "humantime_serde", default = "d_10s")]
    pub tls_handshake_timeout: Duration,
    #[serde(with = "humantime_serde", default = "d_10s")]
    pub header_read_timeout: Duration,
    #[serde(with = "humantime_serde", default = "d_60s")]
    pub idle_timeout: Duration,
    #[serde(default = "d_max_conn")]
    pub max_connections: usize,
    #[serde(default = "d_max_header")]
    pub max_header_bytes: usize,
    #[serde(with = "humantime_serde", default = "d_5s")]
    pub upstream_connect_timeout: Duration,
    #[serde(with = "humantime_serde", default = "d_60s")]
    pub upstream_response_timeout: Duration,
    #[serde(with = "humantime_serde", default = "d_30s")]
    pub upstream_idle_timeout: Duration,
    #[serde(with = "humantime_serde", default)]
    pub shutdown_delay: Duration,
    #[serde(with = "humantime_serde", default = "d_30s")]
    pub shutdown_grace: Duration,
    #[serde(with = "humantime_serde", default = "d_60s")]
    pub upstream_read_timeout: Duration,
    #[serde(with = "humantime_serde", default = "d_60s")]
    pub client_write_timeout: Duration,
    #[serde(default = "d_max_response_header")]
    pub max_response_header_bytes: usize,
}

impl Default for RawLimits {
    fn default() -> Self {
        RawLimits {
            tls_handshake_timeout: d_10s(),
            header_read_timeout: d_10s(),
            idle_timeout: d_60s(),
            max_connections: d_max_conn(),
            max_header_bytes: d_max_header(),
            upstream_connect_timeout: d_5s(),
            upstream_response_timeout: d_60s(),
            upstream_idle_timeout: d_30s(),
            shutdown_delay: Duration::ZERO,
            shutdown_grace: d_30s(),
            upstream_read_timeout: d_60s(),
            client_write_timeout: d_60s(),
            max_response_header_bytes: d_max_response_header(),
        }
    }
}

fn d_5s() -> Duration {
    Duration::from_secs(5)
}
fn d_10s() -> Duration {
    Duration::from_secs(10)
}
fn d_30s() -> Duration {
    Duration::from_secs(30)
}
fn d_60s() -> Duration {
    Duration::from_secs(60)
}
fn d_max_conn() -> usize {
    10_000
}
fn d_max_header() -> usize {
    65_536
}

/// nginx refuses upstream heads over `proxy_buffer_size` (4 or 8 KiB) by default; 16 KiB is
/// twice that. It also caps hyper's read buffer on every pooled upstream connection (this plus
/// 8 KiB), which at 64 KiB let 64 connections of large bodies hold ~17 MiB more (BENCHMARKS.md).
fn d_max_response_header() -> usize {
    16_384
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListener {
    pub name: String,
    pub listen: String,
    #[serde(default)]
    pub pin_sets: Vec<String>,
    #[serde(default)]
    pub cert: Vec<RawCert>,
    #[serde(default)]
    pub proxy_protocol: bool,
    #[serde(default)]
    pub proxy_protocol_from: Vec<String>,
    pub session_ticket_keys: Option<PathBuf>,
    pub app_version: Option<RawAppVersion>,
}

/// `app_version = { header = "X-App-Version" }` or `{ user_agent = "MyShop/(\\S+)" }`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAppVersion {
    pub header: Option<String>,
    pub user_agent: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCert {
    #[serde(default)]
    pub server_names: Vec<String>,
    pub chain: PathBuf,
    pub key: PathBuf,
    pub anchor: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub name: Option<String>,
    pub host: Option<String>,
    pub path_prefix: String,
    pub upstream: String,
    #[serde(default)]
    pub strip_prefix: bool,
    #[serde(default)]
    pub preserve_host: bool,
    #[serde(with = "humantime_serde", default)]
    pub timeout: Option<Duration>,
    pub auth: Option<String>,
    #[serde(default)]
    pub response_headers: super::response_headers::RawResponseHeaders,
    pub host_header: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    pub url: String,
    pub trust: Option<RawTrust>,
    pub ca: Option<PathBuf>,
    pub server_name: Option<String>,
    pub pin_set: Option<String>,
    pub pin_match: Option<RawPinMatch>,
    pub host_header: Option<String>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub enum RawTrust {
    Webpki,
    System,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub enum RawPinMatch {
    Chain,
    Leaf,
}
