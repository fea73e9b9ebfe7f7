//! The reload task: waits for a trigger (file events, debounced; the poll interval; SIGHUP),
//! runs one reload at a time off the async workers, and keeps the file watcher armed over what
//! the running snapshot and the last rejected attempt read.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

use super::{ReloadStatus, Trigger};
use crate::snapshot::Live;

/// Editors and `kubectl` write in several steps: a file event waits this long for the rest.
const DEBOUNCE: Duration = Duration::from_millis(200);

/// Arms the watcher (before returning: a file written right after start-up must not be missed)
/// and spawns the reload loop. The sender asks for a reload; `kick` is notified after a swap.
pub fn spawn(
    live: Arc<Live>,
    path: PathBuf,
    status: Arc<ReloadStatus>,
    kick: Arc<Notify>,
) -> (JoinHandle<()>, mpsc::Sender<Trigger>) {
    let (tx, rx) = mpsc::channel(1);
    let armed = arm(&live, &status, &tx, None);
    let task = tokio::spawn(run(
        Loop {
            live,
            path,
            status,
            kick,
            tx: tx.clone(),
        },
        rx,
        armed,
    ));
    (task, tx)
}

struct Loop {
    live: Arc<Live>,
    path: PathBuf,
    status: Arc<ReloadStatus>,
    kick: Arc<Notify>,
    tx: mpsc::Sender<Trigger>,
}

async fn run(
    l: Loop,
    mut rx: mpsc::Receiver<Trigger>,
    // Dropping the watcher stops watching: hold it, replacing it only with a working one.
    mut armed: Option<(notify::RecommendedWatcher, WatchedDirs)>,
) {
    loop {
        let poll = l.live.current().config.reload.poll_interval;
        let trigger = tokio::select! {
            t = rx.recv() => match t { Some(t) => t, None => return },
            _ = sleep_or_never(poll) => Trigger::Poll,
        };
        let trigger = debounce(trigger, &mut rx).await;
        l.once(trigger).await;
        // Re-arm only when the directories to watch, or their identities, changed: inputs may
        // have moved and a directory may have been recreated under the same name (its old watch
        // is dead). Replacing a working watcher for nothing would drop events queued on it.
        let current = armed.as_ref().map(|(_, dirs)| dirs);
        if let Some(next) = arm(&l.live, &l.status, &l.tx, current) {
            // A directory watched only from now on may have changed between the read and the
            // arming (a missing file's directory appearing, a new `..data` version): look again.
            if armed.is_some() {
                let _ = l.tx.try_send(Trigger::Files);
            }
            armed = Some(next);
        }
    }
}

/// After a file event, lets the writer finish and folds the triggers that came meanwhile into
/// this reload.
async fn debounce(trigger: Trigger, rx: &mut mpsc::Receiver<Trigger>) -> Trigger {
    if trigger != Trigger::Files {
        return trigger;
    }
    tokio::time::sleep(DEBOUNCE).await;
    let mut trigger = trigger;
    while let Ok(t) = rx.try_recv() {
        // A signal that came meanwhile is served by this reload: say so in the log.
        if t == Trigger::Signal {
            trigger = t;
        }
    }
    trigger
}

impl Loop {
    /// One reload on a blocking thread. A panic there is contained: logged, counted as a failed
    /// reload, and the snapshot that was running keeps running.
    async fn once(&self, trigger: Trigger) {
        let before = self.live.current().generation;
        let (live, path, status) = (self.live.clone(), self.path.clone(), self.status.clone());
        let outcome =
            tokio::task::spawn_blocking(move || super::reload(&live, &path, &status, trigger))
                .await;
        match outcome {
            Ok(o) if o.applied() => self.kick.notify_one(),
            Ok(_) => {}
            Err(e) => {
                let cause = if e.is_panic() {
                    panic_message(e.into_panic())
                } else {
                    e.to_string()
                };
                // A bug after the swap leaves the new snapshot serving: say which one runs.
                let running = self.live.current().generation;
                if running != before {
                    self.kick.notify_one();
                }
                self.status
                    .panicked(&self.live.shared.metrics, &cause, running);
            }
        }
    }
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
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
    let mut inputs = super::inputs(&live.current());
    inputs.extend(status.attempted_inputs());
    let dirs = super::dirs_to_watch(&inputs);
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
    match super::watch_dirs(&dirs, tx.clone()) {
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
