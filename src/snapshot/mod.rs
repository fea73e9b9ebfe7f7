//! One immutable snapshot of everything a handshake or request needs — server TLS per
//! listener, routes, upstream clients with their pools — built whole from the files and
//! published in one step.
//!
//! Building is all-or-nothing: any error leaves nothing behind. Parts whose inputs did not
//! change are carried over from the previous snapshot, so TLS session caches and upstream
//! pools survive a reload that does not touch them, and nothing built under an older trust or
//! pin configuration is ever reused when it did change.

mod keys;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use sha2::{Digest, Sha256};

use crate::auth::{self, RouteAuth};
use crate::config::{self, Config};
use crate::diag::{Kind, Problem, Problems};
use crate::files::Files;
use crate::metrics::Metrics;
use crate::routes::{RouteEntry, RouteTable};
use crate::tls::{self, ListenerTls, UpstreamObserver};
use crate::upstream::UpstreamClient;
use keys::{ListenerTlsKey, UpstreamKey};

/// Everything one config generation serves with.
#[derive(Debug)]
pub struct Snapshot {
    pub generation: u64,
    pub config: Arc<Config>,
    /// SHA-256 over every file read, in a canonical order (`pinproxy_config_info`).
    pub digest: String,
    /// Every file the snapshot was built from (what the watcher watches).
    pub files: Vec<PathBuf>,
    pub listeners: HashMap<String, Arc<ListenerTls>>,
    pub routes: RouteTable,
    pub upstreams: HashMap<String, Arc<UpstreamClient>>,
    /// Per listener with an `app_version` source: the counters of adoption per pin set.
    pub adoption: HashMap<String, Arc<crate::adoption::ListenerAdoption>>,
    pub warnings: Problems,
    pub built_at: SystemTime,
    /// SHA-256 of each file read, so a reload can say which files changed.
    pub file_hashes: BTreeMap<PathBuf, [u8; 32]>,
    /// What each listener's TLS and each upstream's pool were built from, to tell on the next
    /// build whether they can be carried over.
    listener_keys: HashMap<String, ListenerTlsKey>,
    upstream_keys: HashMap<String, UpstreamKey>,
}

impl Snapshot {
    /// Whether upstream `name`'s client and pool were built from other inputs in `other` (or
    /// are absent there).
    pub fn upstream_differs(&self, other: &Snapshot, name: &str) -> bool {
        self.upstream_keys.get(name) != other.upstream_keys.get(name)
    }
}

/// What outlives snapshots: the metrics, the crypto provider, per-upstream observations.
#[derive(Debug)]
pub struct Shared {
    pub metrics: Metrics,
    pub provider: Arc<CryptoProvider>,
    /// Woken when an upstream shows a new verified path.
    pub upstream_seen: Arc<tokio::sync::Notify>,
    /// The last day's requests per (listener, pin set), kept across reloads.
    pub adoption: crate::adoption::Window,
    observers: Mutex<HashMap<String, Arc<UpstreamObserver>>>,
}

impl Shared {
    pub fn new(metrics: Metrics) -> Self {
        Shared {
            metrics,
            provider: tls::provider(),
            upstream_seen: Arc::new(tokio::sync::Notify::new()),
            adoption: crate::adoption::Window::default(),
            observers: Mutex::new(HashMap::new()),
        }
    }

    fn observer(&self, upstream: &str) -> Arc<UpstreamObserver> {
        let mut map = self.observers.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(upstream.to_string())
            .or_insert_with(|| {
                UpstreamObserver::new(upstream, self.metrics.clone(), self.upstream_seen.clone())
            })
            .clone()
    }

    /// Drops the observations of upstreams no longer configured.
    pub fn retain_observers(&self, names: &[&str]) {
        let mut map = self.observers.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|k, _| names.contains(&k.as_str()));
    }
}

/// The swap point: the current snapshot, read per handshake and per request.
#[derive(Debug)]
pub struct Live {
    pub shared: Shared,
    current: ArcSwap<Snapshot>,
}

impl Live {
    pub fn new(shared: Shared, first: Snapshot) -> Self {
        Live {
            shared,
            current: ArcSwap::from_pointee(first),
        }
    }

    pub fn current(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    pub fn swap(&self, next: Snapshot) -> Arc<Snapshot> {
        self.current.swap(Arc::new(next))
    }
}

/// Loads and validates everything and builds a snapshot, reusing unchanged parts of `prev`.
/// Warnings are kept in the snapshot.
/// `files` collects every file read, so a caller can tell a changed input from a repeat even
/// when the build fails.
pub fn build(
    path: &Path,
    shared: &Shared,
    prev: Option<&Snapshot>,
    generation: u64,
    files: &mut Files,
) -> Result<Snapshot, Problems> {
    let (config, mut warnings) = config::load(path, files)?;
    if let Some(running) = prev {
        warnings.extend(crate::pin::frozen_expiry_moves(
            &running.config.pin_sets,
            &config.pin_sets,
        ));
    }
    let now = crate::clock::unix_now();
    let mut problems = Problems::default();
    problems.extend(tls::check_pin_sources(&config.pin_sets, files));

    let (listeners, listener_keys) = build_listeners(
        &config,
        shared,
        prev,
        files,
        now,
        &mut warnings,
        &mut problems,
    );
    let (upstreams, upstream_keys) = build_upstreams(&config, shared, prev, files, &mut problems);
    let policies = build_policies(&config, files, &mut warnings, &mut problems);
    if problems.has_errors() {
        warnings.extend(problems);
        return Err(warnings);
    }

    let listener_names: Vec<&str> = config.listeners.iter().map(|l| l.name.as_str()).collect();
    let routes = RouteTable::new(
        config
            .routes
            .iter()
            .filter_map(|r| {
                upstreams.get(&r.upstream).map(|u| {
                    let auth = r
                        .auth
                        .as_deref()
                        .and_then(|n| policies.get(n))
                        .map(|p| Arc::new(RouteAuth::new(&r.name, p.clone(), &shared.metrics)));
                    RouteEntry::new(r.clone(), u.clone(), auth, &listener_names, &shared.metrics)
                })
            })
            .collect(),
    );
    let adoption = crate::adoption::build(&config, &listeners, &shared.metrics, &shared.adoption);
    Ok(Snapshot {
        generation,
        adoption,
        digest: files.digest(),
        files: files.paths().map(Path::to_path_buf).collect(),
        config: Arc::new(config),
        listeners,
        routes,
        upstreams,
        warnings,
        built_at: SystemTime::now(),
        file_hashes: files
            .paths()
            .map(|p| {
                let hash = files
                    .get(p)
                    .map(|d| Sha256::digest(d.as_slice()).into())
                    .unwrap_or_default();
                (p.to_path_buf(), hash)
            })
            .collect(),
        listener_keys,
        upstream_keys,
    })
}

type Listeners = HashMap<String, Arc<ListenerTls>>;
type Upstreams = HashMap<String, Arc<UpstreamClient>>;

/// Every listener's TLS; one whose certificates and keys did not change keeps its rustls config,
/// and with it session tickets and caches.
fn build_listeners(
    config: &Config,
    shared: &Shared,
    prev: Option<&Snapshot>,
    files: &mut Files,
    now: i64,
    warnings: &mut Problems,
    problems: &mut Problems,
) -> (Listeners, HashMap<String, ListenerTlsKey>) {
    let mut listeners = HashMap::new();
    let mut listener_keys = HashMap::new();
    for (li, l) in config.listeners.iter().enumerate() {
        match tls::build_listener(config, li, files, &shared.provider, now) {
            Ok((mut built, w)) => {
                warnings.extend(w);
                let key = ListenerTlsKey::new(l, files);
                if let Some(old) = prev
                    .and_then(|p| p.listeners.get(&l.name))
                    .filter(|_| prev.and_then(|p| p.listener_keys.get(&l.name)) == Some(&key))
                {
                    // Same certificates and keys: keep the config, and with it session tickets and caches.
                    built.config = old.config.clone();
                    built.by_cert = old.by_cert.clone();
                    built.resolver = old.resolver.clone();
                }
                listener_keys.insert(l.name.clone(), key);
                listeners.insert(l.name.clone(), Arc::new(built));
            }
            Err(p) => problems.extend(p),
        }
    }

    (listeners, listener_keys)
}

/// Every upstream's client; one whose url, trust, pins and limits did not change keeps its pool.
fn build_upstreams(
    config: &Config,
    shared: &Shared,
    prev: Option<&Snapshot>,
    files: &mut Files,
    problems: &mut Problems,
) -> (Upstreams, HashMap<String, UpstreamKey>) {
    let mut upstreams = HashMap::new();
    let mut upstream_keys = HashMap::new();
    for u in config.upstreams.values() {
        if let config::Trust::Ca(ca) = &u.trust {
            // Read now so the key sees the contents; a missing file is reported below.
            let _ = files.read(ca);
        }
        let key = UpstreamKey::new(config, u, files);
        if let Some(old) = prev
            .and_then(|p| p.upstreams.get(&u.name))
            .filter(|_| prev.and_then(|p| p.upstream_keys.get(&u.name)) == Some(&key))
        {
            // Same url, trust, pins and client limits: the pool and its verified sessions stay valid.
            upstreams.insert(u.name.clone(), old.clone());
            upstream_keys.insert(u.name.clone(), key);
            continue;
        }
        let observer = shared.observer(&u.name);
        let tls = if u.tls {
            match tls::build_upstream_tls(config, u, files, &shared.provider, observer.clone()) {
                Ok(t) => Some(t),
                Err(p) => {
                    problems.extend(p);
                    continue;
                }
            }
        } else {
            None
        };
        match UpstreamClient::new(u, tls.as_ref(), &config.limits, observer, &shared.provider) {
            Ok(c) => {
                upstreams.insert(u.name.clone(), Arc::new(c));
                upstream_keys.insert(u.name.clone(), key);
            }
            Err(e) => problems.push(Problem::error(
                Kind::Tls,
                &config.file,
                format!("upstream.{}", u.name),
                e.to_string(),
            )),
        }
    }
    (upstreams, upstream_keys)
}

/// Every `[auth.NAME]` policy with its key files read.
fn build_policies<'c>(
    config: &'c Config,
    files: &mut Files,
    warnings: &mut Problems,
    problems: &mut Problems,
) -> HashMap<&'c str, Arc<auth::Policy>> {
    let mut policies = HashMap::new();
    for (name, p) in &config.auth {
        match auth::Policy::build(p, &config.file, files, SystemTime::now()) {
            Ok((policy, w)) => {
                warnings.extend(w);
                policies.insert(name.as_str(), Arc::new(policy));
            }
            Err(p) => problems.extend(p),
        }
    }
    policies
}
