//! Wiring: load the first snapshot (fail fast), bind, spawn the listeners, the admin endpoint,
//! the reload loop and the expiry sweep; drain on shutdown.
//!
//! Binds exactly the addresses in the config; tests use port 0 and read the bound addresses
//! back from [`Running`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;

use crate::admin::{self, AdminState};
use crate::diag::Problems;
use crate::expiry::{self, Sweeper};
use crate::files::Files;
use crate::inventory::Inventory;
use crate::metrics::Metrics;
use crate::reload::{self, Outcome, ReloadStatus, Trigger};
use crate::snapshot::{self, Live, Shared};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("the configuration is not valid:\n{}", reload::describe(.0))]
    Config(Problems),
    #[error("cannot bind {what} to {addr}")]
    Bind {
        what: String,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot set up metrics")]
    Metrics(#[from] prometheus::Error),
}

/// A running proxy.
pub struct Running {
    /// Bound address of each listener, by name.
    pub listeners: Vec<(String, SocketAddr)>,
    pub admin: SocketAddr,
    pub live: Arc<Live>,
    pub reload_status: Arc<ReloadStatus>,
    triggers: mpsc::Sender<Trigger>,
    state: Arc<AdminState>,
    shutdown: watch::Sender<bool>,
    tracker: TaskTracker,
    background: Vec<JoinHandle<()>>,
}

impl Running {
    /// The address a listener is bound to.
    pub fn listener(&self, name: &str) -> Option<SocketAddr> {
        self.listeners
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| *a)
    }

    /// Asks for a reload, as SIGHUP does.
    pub fn reload(&self) {
        let _ = self.triggers.try_send(Trigger::Signal);
    }

    /// `/readyz` turns 503, then after `shutdown_delay` listeners stop accepting and open
    /// connections get up to `shutdown_grace` to finish. Returns whether all finished in time.
    pub async fn shutdown(self) -> bool {
        let limits = self.live.current().config.limits.clone();
        self.state.draining.store(true, Ordering::Relaxed);
        tracing::info!(
            delay_ms = crate::diag::ms(limits.shutdown_delay),
            grace_ms = crate::diag::ms(limits.shutdown_grace),
            "shutting down"
        );
        tokio::time::sleep(limits.shutdown_delay).await;
        let _ = self.shutdown.send(true);
        self.tracker.close();
        for h in &self.background {
            h.abort();
        }
        let drained = tokio::time::timeout(limits.shutdown_grace, self.tracker.wait())
            .await
            .is_ok();
        if drained {
            tracing::info!("all connections finished");
        } else {
            tracing::warn!("shutdown_grace passed with connections still open; closing them");
        }
        drained
    }
}

/// Loads `config`, binds everything and starts serving. Fails before binding anything when the
/// configuration breaks any rule.
pub async fn start(config: &Path) -> Result<Running, RunError> {
    let metrics = Metrics::new()?;
    let shared = Shared::new(metrics);
    let path = config.to_path_buf();
    let first =
        snapshot::build(&path, &shared, None, 1, &mut Files::new()).map_err(RunError::Config)?;
    for w in first.warnings.warnings() {
        tracing::warn!("{w}");
    }
    Inventory::of(&first, &shared.metrics, snapshot::unix_now()).log_served();
    for t in first.listeners.values() {
        for c in &t.certs {
            if c.path[0].subject.contains(DEV_MARKER) {
                tracing::warn!(listener = %t.name, "SERVING THE DEVELOPMENT CERTIFICATE from the repository: its key is public; never use it outside your machine");
            }
        }
    }

    let mut bound = Vec::new();
    for l in &first.config.listeners {
        let sock = TcpListener::bind(l.listen)
            .await
            .map_err(|source| RunError::Bind {
                what: format!("listener \"{}\"", l.name),
                addr: l.listen,
                source,
            })?;
        bound.push((l.name.clone(), sock));
    }
    let admin_addr = first.config.admin.listen;
    let admin_sock = TcpListener::bind(admin_addr)
        .await
        .map_err(|source| RunError::Bind {
            what: "[admin]".into(),
            addr: admin_addr,
            source,
        })?;
    if !admin_addr.ip().is_loopback() {
        tracing::warn!(addr = %admin_addr, "the admin endpoint listens beyond loopback: /status and /metrics reveal your pins and upstreams");
    }
    let admin = admin_sock.local_addr().unwrap_or(admin_addr);

    reload::record_config(&shared.metrics, &first, None);
    let live = Arc::new(Live::new(shared, first));
    live.shared
        .metrics
        .config_last_reload_ok_ts
        .set(snapshot::unix_now() as f64);

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let tracker = TaskTracker::new();
    let reload_status = Arc::new(ReloadStatus::new());
    let state = Arc::new(AdminState {
        live: live.clone(),
        reload: reload_status.clone(),
        draining: Default::default(),
    });
    let mut listeners = Vec::new();
    let mut background = Vec::new();
    for (name, sock) in bound {
        let addr = sock.local_addr().map_err(|source| RunError::Bind {
            what: format!("listener \"{name}\""),
            addr: admin_addr,
            source,
        })?;
        tracing::info!(listener = %name, addr = %addr, "listening");
        listeners.push((name.clone(), addr));
        background.push(tokio::spawn(crate::proxy::serve_listener(
            name,
            sock,
            live.clone(),
            tracker.clone(),
            shutdown_rx.clone(),
        )));
    }
    tracing::info!(addr = %admin, "admin listening");
    background.push(tokio::spawn(admin::serve(
        admin_sock,
        state.clone(),
        tracker.clone(),
        shutdown_rx.clone(),
    )));

    let sweeper = Arc::new(Sweeper::new());
    let kick = Arc::new(Notify::new());
    background.push(tokio::spawn(expiry::run(
        live.clone(),
        sweeper,
        kick.clone(),
    )));
    let (tx, rx) = mpsc::channel(1);
    // Armed before `start` returns: a file written right after start-up must not be missed.
    let armed = arm(&live, &reload_status, &tx, None);
    background.push(tokio::spawn(reload_loop(
        live.clone(),
        path,
        reload_status.clone(),
        (tx.clone(), rx),
        armed,
        kick,
    )));

    Ok(Running {
        listeners,
        admin,
        live,
        reload_status,
        triggers: tx,
        state,
        shutdown: shutdown_tx,
        tracker,
        background,
    })
}

async fn reload_loop(
    live: Arc<Live>,
    path: PathBuf,
    status: Arc<ReloadStatus>,
    (tx, mut rx): (mpsc::Sender<Trigger>, mpsc::Receiver<Trigger>),
    // Dropping the watcher stops watching: hold it, replacing it only with a working one.
    mut armed: Option<(notify::RecommendedWatcher, WatchedDirs)>,
    kick: Arc<Notify>,
) {
    loop {
        let poll = live.current().config.reload.poll_interval;
        let mut trigger = tokio::select! {
            t = rx.recv() => match t { Some(t) => t, None => return },
            _ = sleep_or_never(poll) => Trigger::Poll,
        };
        if trigger == Trigger::Files {
            // Editors and `kubectl` write in several steps: let them finish.
            tokio::time::sleep(DEBOUNCE).await;
            while let Ok(t) = rx.try_recv() {
                // A signal that came meanwhile is served by this reload: say so in the log.
                if t == Trigger::Signal {
                    trigger = t;
                }
            }
        }
        let (l, p, s) = (live.clone(), path.clone(), status.clone());
        let outcome =
            tokio::task::spawn_blocking(move || reload::reload(&l, &p, &s, trigger)).await;
        if let Ok(Outcome::Swapped { .. }) = outcome {
            kick.notify_one();
        }
        // Re-arm only when the directories to watch, or their identities, changed: inputs may
        // have moved and a directory may have been recreated under the same name (its old watch
        // is dead). Replacing a working watcher for nothing would drop events queued on it.
        let current = armed.as_ref().map(|(_, dirs)| dirs);
        if let Some(next) = arm(&live, &status, &tx, current) {
            // A directory watched only from now on may have changed between the read and the
            // arming (a missing file's directory appearing, a new `..data` version): look again.
            if armed.is_some() {
                let _ = tx.try_send(Trigger::Files);
            }
            armed = Some(next);
        }
    }
}

/// The directories to watch, each with the identity (device, inode) it has now.
type WatchedDirs = std::collections::BTreeMap<PathBuf, Option<(u64, u64)>>;

/// A watcher over everything the running snapshot and the last rejected attempt read, unless
/// that is exactly `unless` (then `None`: keep the one armed).
fn arm(
    live: &Live,
    status: &ReloadStatus,
    tx: &mpsc::Sender<Trigger>,
    unless: Option<&WatchedDirs>,
) -> Option<(notify::RecommendedWatcher, WatchedDirs)> {
    use std::os::unix::fs::MetadataExt as _;
    let mut inputs = reload::inputs(&live.current());
    inputs.extend(status.attempted_inputs());
    let dirs = reload::dirs_to_watch(&inputs);
    let ids: WatchedDirs = dirs
        .iter()
        .map(|d| {
            (
                d.clone(),
                std::fs::metadata(d).ok().map(|m| (m.dev(), m.ino())),
            )
        })
        .collect();
    if unless == Some(&ids) {
        return None;
    }
    match reload::watch_dirs(&dirs, tx.clone()) {
        Ok(w) => Some((w, ids)),
        Err(e) => {
            tracing::warn!(cause = %e, "cannot watch files; reload on SIGHUP or set [reload] poll_interval");
            None
        }
    }
}

async fn sleep_or_never(d: Option<Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

/// Subjects of the development certificate shipped in the repository contain this.
pub const DEV_MARKER: &str = "pinproxy DEVELOPMENT";
const DEBOUNCE: Duration = Duration::from_millis(200);
