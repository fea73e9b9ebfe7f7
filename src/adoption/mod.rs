//! Adoption per pin set: which pin set the app behind each request ships, read from its version
//! (a header or a User-Agent pattern) and the pin sets' `app_versions` ranges.
//!
//! Everything is resolved when a snapshot is built — ranges parsed, the pattern compiled, one
//! counter handle per (listener, pin set) — so a request costs one header read and a short match.
//! The counts answer the last step of a key rotation: is it safe to switch to the backup, is it
//! safe to retire a set? Knows no sockets; the proxy calls [`ListenerAdoption::count`].

mod window;

use std::collections::HashMap;
use std::sync::Arc;

use http::HeaderMap;
use http::header::{HeaderName, USER_AGENT};
use prometheus::IntCounter;
use regex::Regex;
use semver::{Version, VersionReq};

use crate::config::{AppVersionFrom, Config};
use crate::metrics::Metrics;
use crate::pin::Pin;
use crate::tls::ListenerTls;
pub use window::{Buckets, HOURS, Window, current_hour};

/// The label of requests whose version is missing or maps to no pin set.
pub const UNKNOWN: &str = "unknown";

/// One listener's version source and the pin sets its versions map to.
#[derive(Debug)]
pub struct ListenerAdoption {
    source: Source,
    /// Pins of the listener's pin sets that no served chain uses: where a rotation can go.
    backups: Vec<Backup>,
    /// In the listener's `pin_sets` order; a version counts for the first range it is in.
    sets: Vec<SetCount>,
    unknown: SetCount,
}

#[derive(Debug)]
enum Source {
    Header(HeaderName),
    UserAgent(Regex),
}

#[derive(Debug)]
struct Backup {
    pin: Pin,
    label: String,
    /// The listener's pin sets that ship it.
    sets: Vec<String>,
}

/// The share of requests from apps that already ship a backup key before a switch to it is
/// safe: the rest would fail their pin check (the runbook's 99.9 %).
pub const SWITCH_SHARE: f64 = 0.999;

#[derive(Debug)]
struct SetCount {
    name: String,
    range: Option<VersionReq>,
    counter: IntCounter,
    window: Arc<Buckets>,
}

/// One pin set's part of a listener's last day.
#[derive(Debug, Clone, PartialEq)]
pub struct Share {
    pub pin_set: String,
    pub app_versions: Option<String>,
    pub requests: u64,
    /// `requests` / all requests of the listener in the window; `None` with no requests at all.
    pub share: Option<f64>,
}

/// Builds the adoption table of every listener with an `app_version` source.
pub fn build(
    config: &Config,
    served: &HashMap<String, Arc<ListenerTls>>,
    metrics: &Metrics,
    window: &Window,
) -> HashMap<String, Arc<ListenerAdoption>> {
    let mut out = HashMap::new();
    for l in &config.listeners {
        let Some(from) = &l.app_version else { continue };
        let source = match from {
            AppVersionFrom::Header(h) => match HeaderName::from_bytes(h.as_bytes()) {
                Ok(name) => Source::Header(name),
                Err(_) => continue, // validated with the config
            },
            AppVersionFrom::UserAgent(p) => match Regex::new(p) {
                Ok(re) => Source::UserAgent(re),
                Err(_) => continue, // validated with the config
            },
        };
        let count = |name: &str, range: Option<VersionReq>| SetCount {
            name: name.to_string(),
            range,
            counter: metrics
                .pin_set_requests
                .with_label_values(&[l.name.as_str(), name]),
            window: window.buckets(&l.name, name),
        };
        let sets = l
            .pin_sets
            .iter()
            .filter_map(|n| config.pin_sets.get(n))
            .filter_map(|s| s.app_versions.clone().map(|r| count(&s.name, Some(r))))
            .collect();
        let in_use: Vec<Pin> = served
            .get(&l.name)
            .map(|t| t.served_pins())
            .unwrap_or_default();
        let mut backups: Vec<Backup> = Vec::new();
        for set in l.pin_sets.iter().filter_map(|n| config.pin_sets.get(n)) {
            for p in set.backups(&in_use) {
                match backups.iter_mut().find(|b| b.pin == p.pin) {
                    Some(b) => b.sets.push(set.name.clone()),
                    None => backups.push(Backup {
                        pin: p.pin,
                        label: p.label.clone(),
                        sets: vec![set.name.clone()],
                    }),
                }
            }
        }
        out.insert(
            l.name.clone(),
            Arc::new(ListenerAdoption {
                source,
                backups,
                sets,
                unknown: count(UNKNOWN, None),
            }),
        );
    }
    out
}

impl ListenerAdoption {
    /// Counts one request under the pin set its app version ships.
    pub fn count(&self, headers: &HeaderMap) {
        let set = self
            .version(headers)
            .and_then(|v| {
                self.sets
                    .iter()
                    .find(|s| s.range.as_ref().is_some_and(|r| r.matches(&v)))
            })
            .unwrap_or(&self.unknown);
        set.counter.inc();
        set.window.add(current_hour());
    }

    fn version(&self, headers: &HeaderMap) -> Option<Version> {
        match &self.source {
            Source::Header(name) => parse_version(headers.get(name)?.to_str().ok()?),
            Source::UserAgent(re) => {
                let ua = headers.get(USER_AGENT)?.to_str().ok()?;
                parse_version(re.captures(ua)?.get(1)?.as_str())
            }
        }
    }

    /// Each mapped pin set's requests and share over the last day, then `unknown`.
    pub fn shares(&self) -> (u64, Vec<Share>) {
        let now = current_hour();
        let counts: Vec<(&SetCount, u64)> = self
            .sets
            .iter()
            .chain(std::iter::once(&self.unknown))
            .map(|s| (s, s.window.last_day(now)))
            .collect();
        let total: u64 = counts.iter().map(|(_, n)| n).sum();
        let shares = counts
            .into_iter()
            .map(|(s, n)| Share {
                pin_set: s.name.clone(),
                app_versions: s.range.as_ref().map(ToString::to_string),
                requests: n,
                share: (total > 0).then(|| n as f64 / total as f64),
            })
            .collect();
        (total, shares)
    }
}

impl ListenerAdoption {
    /// The `/status` view: the last day's requests and share per pin set, `unknown` last.
    pub fn to_json(&self) -> serde_json::Value {
        let (total, shares) = self.shares();
        let sets: Vec<serde_json::Value> = shares
            .iter()
            .map(|s| {
                serde_json::json!({
                    "pin_set": s.pin_set,
                    "app_versions": s.app_versions,
                    "requests": s.requests,
                    // Four decimals: 99.95 % and 100 % must read differently.
                    "share": s.share.map(|x| (x * 10_000.0).round() / 10_000.0),
                })
            })
            .collect();
        // Per backup pin: the share of requests whose app ships it, the runbook's switch test.
        let backups: Vec<serde_json::Value> = self
            .backups
            .iter()
            .map(|b| {
                let share = shares
                    .iter()
                    .filter(|s| b.sets.contains(&s.pin_set))
                    .filter_map(|s| s.share)
                    .sum::<f64>();
                let share = (total > 0).then_some((share * 10_000.0).round() / 10_000.0);
                serde_json::json!({
                    "pin": b.pin.to_prefixed(),
                    "label": b.label,
                    "pin_sets": b.sets,
                    "share": share,
                    "safe_to_switch": share.is_some_and(|x| x >= SWITCH_SHARE),
                })
            })
            .collect();
        serde_json::json!({
            "window_hours": HOURS,
            "backups": backups,
            "source": match &self.source {
                Source::Header(h) => format!("header {h}"),
                Source::UserAgent(re) => format!("user_agent {re}"),
            },
            "requests": total,
            "pin_sets": sets,
        })
    }
}

/// The numeric core of an app version: "4.3.1", "4.3" (= 4.3.0), "4.3.1 (1234)", "v4.3.1-beta".
/// Pre-release and build parts are left out: a range names releases.
pub fn parse_version(s: &str) -> Option<Version> {
    let s = s.trim().trim_start_matches(['v', 'V']);
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let mut parts = s[..end].split('.').filter(|p| !p.is_empty());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next().map_or(Some(0), |p| p.parse().ok())?;
    let patch = parts.next().map_or(Some(0), |p| p.parse().ok())?;
    Some(Version::new(major, minor, patch))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_as_apps_send_them() {
        assert_eq!(parse_version("4.3.1"), Some(Version::new(4, 3, 1)));
        assert_eq!(parse_version("4.3"), Some(Version::new(4, 3, 0)));
        assert_eq!(parse_version("v5"), Some(Version::new(5, 0, 0)));
        assert_eq!(parse_version("4.3.1 (1234)"), Some(Version::new(4, 3, 1)));
        assert_eq!(parse_version("4.3.1-beta.2"), Some(Version::new(4, 3, 1)));
        assert_eq!(parse_version("beta"), None);
        assert_eq!(parse_version(""), None);
    }
}
