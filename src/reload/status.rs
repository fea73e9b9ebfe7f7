//! What the reload attempts so far left behind: one state behind one lock, for `/status` and
//! the status page, and a watch that says "reload N finished" for whoever waits on one.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

use super::rotation::Rotation;
use super::watch::Trigger;
use crate::clock::{fmt_time, unix_now};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::sync::lock;

/// What one reload attempt did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Inputs are the same as what runs (after a failure: recovered).
    Unchanged,
    /// Inputs are the same bad ones as last time; already reported.
    StillFailing,
    Swapped {
        generation: u64,
    },
    /// Rejected, or the attempt itself failed (a panic): the running state stays.
    Failed,
}

impl Outcome {
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Unchanged => "unchanged",
            Outcome::StillFailing => "still_failing",
            Outcome::Swapped { .. } => "swapped",
            Outcome::Failed => "failed",
        }
    }

    /// Whether the attempt put a new snapshot in place.
    pub fn applied(&self) -> bool {
        matches!(self, Outcome::Swapped { .. })
    }
}

impl serde::Serialize for Outcome {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// The last finished reload: the `n`th since start-up (0: none yet) and what it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finished {
    pub n: u64,
    pub outcome: Option<Outcome>,
}

/// The mutable part of [`ReloadStatus`], changed only under its one lock.
#[derive(Debug)]
pub(super) struct State {
    pub last_ok: bool,
    pub last_success: i64,
    pub last_attempt: i64,
    pub last_error: Option<String>,
    /// Digest of the inputs of the last failed attempt, so the same bad files are reported once.
    pub failed_digest: Option<String>,
    /// Attempts so far, whatever their outcome (unchanged ones included).
    pub attempts: u64,
    pub last_trigger: Option<Trigger>,
    pub last_outcome: Option<Outcome>,
    /// Items of the running config that differ from the boot config and wait for a restart.
    pub needs_restart: Vec<String>,
    /// Files the last failed attempt read or looked for, so the watcher also follows files
    /// that a rejected config names (a referenced file that does not exist yet).
    pub attempted: Vec<PathBuf>,
    /// The key rotations of the last reload that rotated one, with the backups left.
    pub last_rotation: Vec<Rotation>,
    /// Attempts begun: `READY=1` after SIGHUP waits for one that began after the signal.
    started: u64,
    /// The config the process started with (what its sockets are bound to), taken by the first
    /// reload from the snapshot running then.
    boot: Option<Arc<Config>>,
}

/// The outcome of the reload attempts so far, for `/status`, the metrics and waiters.
#[derive(Debug)]
pub struct ReloadStatus {
    state: Mutex<State>,
    finished: watch::Sender<Finished>,
    /// Test hook: while armed, every reload panics after reading its inputs.
    panic_armed: AtomicBool,
}

impl Default for ReloadStatus {
    fn default() -> Self {
        ReloadStatus::new()
    }
}

impl ReloadStatus {
    pub fn new() -> Self {
        let now = unix_now();
        ReloadStatus {
            state: Mutex::new(State {
                last_ok: true,
                last_success: now,
                last_attempt: now,
                last_error: None,
                failed_digest: None,
                attempts: 0,
                last_trigger: None,
                last_outcome: None,
                needs_restart: Vec::new(),
                attempted: Vec::new(),
                last_rotation: Vec::new(),
                started: 0,
                boot: None,
            }),
            finished: watch::Sender::new(Finished {
                n: 0,
                outcome: None,
            }),
            panic_armed: AtomicBool::new(false),
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// The boot config, fixed by the first reload from the snapshot running then.
    pub(super) fn boot(&self, running: &Arc<Config>) -> Arc<Config> {
        self.lock()
            .boot
            .get_or_insert_with(|| running.clone())
            .clone()
    }

    /// What `/status` and the status page show under `reload`.
    pub fn view(&self) -> ReloadView {
        let st = self.lock();
        ReloadView {
            last_successful: st.last_ok,
            last_success: fmt_time(st.last_success),
            last_attempt: fmt_time(st.last_attempt),
            last_error: st.last_error.clone(),
            attempts: st.attempts,
            last_trigger: st.last_trigger,
            last_outcome: st.last_outcome,
            needs_restart: st.needs_restart.clone(),
            last_rotation: st.last_rotation.clone(),
        }
    }

    /// Reload attempts begun so far (reloads run one at a time).
    pub fn started(&self) -> u64 {
        self.lock().started
    }

    /// Reload attempts completed so far (swapped, unchanged, rejected or failed).
    pub fn finished(&self) -> u64 {
        self.finished.borrow().n
    }

    /// Changes every time a reload finishes: wait on it instead of polling [`Self::finished`].
    pub fn subscribe(&self) -> watch::Receiver<Finished> {
        self.finished.subscribe()
    }

    /// Files a rejected config named beyond those of the running snapshot: the watcher follows
    /// them too, so creating a missing file triggers a reload.
    pub fn attempted_inputs(&self) -> Vec<PathBuf> {
        self.lock().attempted.clone()
    }

    /// Test hook (tests cannot otherwise reach a bug): while `on`, every reload of this proxy
    /// panics after reading its inputs, so tests see how a failing reload is contained.
    #[doc(hidden)]
    pub fn panic_on_reload(&self, on: bool) {
        self.panic_armed.store(on, Ordering::Relaxed);
    }

    pub(super) fn begin(&self) {
        self.lock().started += 1;
    }

    pub(super) fn attempt(&self, trigger: Trigger) {
        let mut st = self.lock();
        st.attempts += 1;
        st.last_attempt = unix_now();
        st.last_trigger = Some(trigger);
        drop(st);
        if self.panic_armed.load(Ordering::Relaxed) {
            panic!("reload panic armed by a test (ReloadStatus::panic_on_reload)");
        }
    }

    /// Records the outcome and wakes whoever waits for this reload.
    pub(super) fn finish(&self, outcome: Outcome) {
        self.lock().last_outcome = Some(outcome);
        self.finished.send_modify(|f| {
            f.n += 1;
            f.outcome = Some(outcome);
        });
    }

    /// A reload that did not return (it panicked): counted and shown as failed. The swap is
    /// atomic, so a whole snapshot serves, generation `running` (the old one unless the bug
    /// struck after the swap).
    pub(super) fn panicked(&self, metrics: &Metrics, cause: &str, running: u64) {
        tracing::error!(
            cause,
            generation = running,
            "reload failed on an internal error (a bug); the running config stays"
        );
        metrics
            .config_reloads
            .with_label_values(&["failure", INTERNAL])
            .inc();
        metrics.config_last_reload_ok.set(0);
        {
            let mut st = self.lock();
            st.last_ok = false;
            st.last_error = Some(format!(
                "the reload failed on an internal error (a bug): {cause}; generation {running} serves"
            ));
            // Not a verdict on the files: the next attempt judges them afresh.
            st.failed_digest = None;
        }
        self.finish(Outcome::Failed);
    }
}

/// The `reason` of a reload that failed on a bug rather than on its inputs.
const INTERNAL: &str = "internal";

/// The reload status as `/status` serialises it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReloadView {
    pub last_successful: bool,
    pub last_success: String,
    pub last_attempt: String,
    pub last_error: Option<String>,
    pub attempts: u64,
    pub last_trigger: Option<Trigger>,
    pub last_outcome: Option<Outcome>,
    pub needs_restart: Vec<String>,
    /// The last reload that moved a served certificate to another key: the backups left.
    pub last_rotation: Vec<Rotation>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_waiter_sees_each_finished_reload_with_its_outcome() {
        let status = ReloadStatus::new();
        let rx = status.subscribe();
        status.begin();
        status.finish(Outcome::Swapped { generation: 2 });
        assert_eq!(status.started(), 1);
        assert_eq!(
            *rx.borrow(),
            Finished {
                n: 1,
                outcome: Some(Outcome::Swapped { generation: 2 })
            }
        );
        assert_eq!(status.finished(), 1);
    }

    #[test]
    fn a_panicked_reload_is_shown_and_counted_as_failed() {
        let metrics = Metrics::new().expect("metrics");
        let status = ReloadStatus::new();
        status.begin();
        status.attempt(Trigger::Signal);
        status.panicked(&metrics, "boom", 1);
        let view = status.view();
        assert!(!view.last_successful);
        assert_eq!(view.last_outcome, Some(Outcome::Failed));
        assert_eq!(view.last_trigger, Some(Trigger::Signal));
        assert!(
            view.last_error
                .as_deref()
                .is_some_and(|e| e.contains("boom"))
        );
        assert_eq!(
            metrics
                .config_reloads
                .with_label_values(&["failure", INTERNAL])
                .get(),
            1
        );
        assert_eq!(metrics.config_last_reload_ok.get(), 0);
        assert_eq!(status.finished(), 1);
    }

    #[test]
    fn the_view_serialises_trigger_and_outcome_as_the_words_status_shows() {
        let status = ReloadStatus::new();
        status.attempt(Trigger::Signal);
        status.finish(Outcome::StillFailing);
        let json = serde_json::to_value(status.view()).expect("json");
        assert_eq!(json["last_trigger"], "sighup");
        assert_eq!(json["last_outcome"], "still_failing");
    }
}
