//! File watching for reload: the directory of every input and of every hop of its symlink
//! chain (certbot's `live/` → `archive/`, Kubernetes' `..data` swaps), re-armed after every
//! event so deleted and recreated directories keep being watched.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use notify::{RecommendedWatcher, RecursiveMode, Watcher as _};
use tokio::sync::mpsc;

/// Why a reload was attempted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    Files,
    Poll,
    #[serde(rename = "sighup")]
    Signal,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Files => "files",
            Trigger::Poll => "poll",
            Trigger::Signal => "sighup",
        }
    }
}

/// A watcher over the directories that lead to `inputs`; events go to `tx` (coalesced).
pub fn watch_files(
    inputs: &[PathBuf],
    tx: mpsc::Sender<Trigger>,
) -> notify::Result<RecommendedWatcher> {
    watch_dirs(&dirs_to_watch(inputs), tx)
}

/// A watcher over `dirs` (see [`dirs_to_watch`]); events go to `tx` (coalesced).
pub fn watch_dirs(
    dirs: &BTreeSet<PathBuf>,
    tx: mpsc::Sender<Trigger>,
) -> notify::Result<RecommendedWatcher> {
    let mut watcher = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
        if let Ok(ev) = ev
            && !matches!(ev.kind, notify::EventKind::Access(_))
        {
            // Full means a reload is already pending; it will see this change too.
            let _ = tx.try_send(Trigger::Files);
        }
    })?;
    for dir in dirs {
        if let Err(e) = watcher.watch(dir, RecursiveMode::NonRecursive) {
            tracing::debug!(dir = %dir.display(), cause = %e, "cannot watch directory");
        }
    }
    Ok(watcher)
}

/// Every directory holding an input or a hop of its symlink chain; for a missing directory, its
/// nearest existing ancestor (so its re-creation is seen).
pub fn dirs_to_watch(inputs: &[PathBuf]) -> BTreeSet<PathBuf> {
    let mut dirs = BTreeSet::new();
    for input in inputs {
        let mut p = absolute(input);
        for _ in 0..MAX_HOPS {
            if let Some(parent) = p.parent() {
                dirs.insert(existing_ancestor(parent));
                // The parent itself may be a link (Kubernetes `..data`): follow it as well.
                if let Ok(real) = parent.canonicalize() {
                    dirs.insert(real);
                }
            }
            match std::fs::read_link(&p) {
                Ok(target) => {
                    p = match p.parent() {
                        Some(parent) => parent.join(target),
                        None => target,
                    };
                }
                Err(_) => break,
            }
        }
        if p.is_dir() {
            dirs.insert(p.clone());
        }
        if let Ok(real) = input.canonicalize()
            && let Some(parent) = real.parent()
        {
            dirs.insert(parent.to_path_buf());
        }
    }
    dirs
}

fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(p))
            .unwrap_or_else(|_| p.to_path_buf())
    }
}

fn existing_ancestor(p: &Path) -> PathBuf {
    let mut cur = p;
    loop {
        if cur.is_dir() {
            return cur.to_path_buf();
        }
        match cur.parent() {
            Some(parent) => cur = parent,
            None => return PathBuf::from("/"),
        }
    }
}

const MAX_HOPS: usize = 16;
