//! Wiring: load the first snapshot (fail fast), bind, spawn the listeners, the admin endpoint,
//! the reload loop and the expiry sweep; drain on shutdown.
//!
//! Binds exactly the addresses in the config; tests use port 0 and read the bound addresses
//! back from [`Running`].

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

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
use crate::reload::{self, ReloadStatus, Trigger};
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
    Inventory::of(&first, &shared.metrics, crate::clock::unix_now()).log_served();
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
        .set(crate::clock::unix_now() as f64);

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
    let (reloader, tx) = reload::spawn(live.clone(), path, reload_status.clone(), kick);
    background.push(reloader);

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

/// Subjects of the development certificate shipped in the repository contain this.
pub const DEV_MARKER: &str = "pinproxy DEVELOPMENT";
