//! Hot reload: on any trigger, rebuild the whole snapshot aside, validate it, and swap it in —
//! or keep the running one and say exactly why.
//!
//! Every trigger re-reads everything and compares the content digest with what is running, so
//! a no-op event is not a reload and reverting a bad edit recovers. A failed reload changes
//! nothing but the reload metrics, the status, and one error log naming file and field.

mod rotation;
mod status;
mod task;
mod watch;

use std::path::{Path, PathBuf};

use crate::clock::unix_now;
use crate::config::Config;
use crate::diag::{Kind, Problems};
use crate::files::Files;
use crate::logfmt::LogList;
use crate::metrics::Metrics;
use crate::snapshot::{self, Live, Snapshot};

pub use status::{Finished, Outcome, ReloadStatus, ReloadView};
pub use task::spawn;
pub use watch::{Trigger, dirs_to_watch, watch_dirs, watch_files};

/// Rebuilds from `path` and swaps the result in if it differs from what runs.
pub fn reload(live: &Live, path: &Path, status: &ReloadStatus, trigger: Trigger) -> Outcome {
    status.begin();
    let cur = live.current();
    let boot = status.boot(&cur.config);
    let (result, files) = build_settled(live, path, &cur, status);
    status.attempt(trigger);
    let outcome = match result {
        Ok(next) if next.digest == cur.digest => {
            unchanged(&live.shared.metrics, status, &cur, trigger)
        }
        Ok(next) => swapped(live, status, &cur, next, &boot, trigger),
        Err(problems) => rejected(&live.shared.metrics, status, &files, &problems, trigger),
    };
    status.finish(outcome);
    outcome
}

/// Builds the next snapshot. A certificate and key rewritten in place arrive one after the
/// other: give the pair a moment to match before judging, unless these very files were already
/// judged.
fn build_settled(
    live: &Live,
    path: &Path,
    cur: &Snapshot,
    status: &ReloadStatus,
) -> (Result<Snapshot, Problems>, Files) {
    let build = |files: &mut Files| {
        snapshot::build(path, &live.shared, Some(cur), cur.generation + 1, files)
    };
    let mut files = Files::new();
    let mut result = build(&mut files);
    let settling = |r: &Result<Snapshot, Problems>| {
        r.as_ref()
            .is_err_and(|p| p.errors().all(|e| e.kind == Kind::KeyMismatch))
    };
    if !settling(&result) || status.lock().failed_digest.as_deref() == Some(&files.digest()) {
        return (result, files);
    }
    tracing::info!(
        settle_ms = crate::diag::ms(SETTLE),
        "a certificate and its key do not match (yet); waiting for the pair to settle"
    );
    let deadline = std::time::Instant::now() + SETTLE;
    while settling(&result) && std::time::Instant::now() < deadline {
        std::thread::sleep(SETTLE_STEP);
        files = Files::new();
        result = build(&mut files);
    }
    if settling(&result) {
        tracing::info!(
            settle_ms = crate::diag::ms(SETTLE),
            "the pair did not settle"
        );
    }
    (result, files)
}

/// The files match what runs: nothing to swap; after a failure, the failure is cleared.
fn unchanged(
    metrics: &Metrics,
    status: &ReloadStatus,
    cur: &Snapshot,
    trigger: Trigger,
) -> Outcome {
    let trigger = trigger.as_str();
    let mut st = status.lock();
    st.attempted.clear();
    if st.last_ok {
        // A SIGHUP is logged even when nothing changed, so "I sent SIGHUP and nothing
        // happened" is visible; a poll tick or an event for an unrelated file in a
        // watched directory is routine.
        if trigger != Trigger::Signal.as_str() {
            tracing::debug!(
                trigger,
                "reload: files match the running config; nothing to do"
            );
        } else {
            tracing::info!(
                trigger,
                generation = cur.generation,
                "reload: files match the running config; nothing to do"
            );
        }
    } else {
        st.last_ok = true;
        st.last_error = None;
        st.failed_digest = None;
        tracing::info!(
            trigger,
            "files match the running config again; last reload failure cleared"
        );
        metrics.config_last_reload_ok.set(1);
    }
    Outcome::Unchanged
}

/// A valid, different snapshot: log what changes, swap it in, record the success.
fn swapped(
    live: &Live,
    status: &ReloadStatus,
    cur: &Snapshot,
    next: Snapshot,
    boot: &Config,
    trigger: Trigger,
) -> Outcome {
    let trigger = trigger.as_str();
    let metrics = &live.shared.metrics;
    let generation = next.generation;
    let changes = Changes::between(cur, &next);
    log_changes(cur, &next);
    let rotated = rotation::rotations(cur, &next);
    for r in &rotated {
        r.log();
    }
    let pending = needs_restart(boot, &next.config);
    {
        let mut st = status.lock();
        if !rotated.is_empty() {
            st.last_rotation = rotated;
        }
        for item in pending.iter().filter(|i| !st.needs_restart.contains(i)) {
            tracing::warn!(item = %item, "changed in the config but needs a restart to apply; the rest is applied");
        }
        st.needs_restart = pending;
    }
    for w in next.warnings.warnings() {
        tracing::warn!("{w}");
    }
    let names: Vec<&str> = next.config.upstreams.keys().map(String::as_str).collect();
    live.shared.retain_observers(&names);
    publish(live, next, Some(&cur.digest));
    {
        let mut st = status.lock();
        st.last_ok = true;
        st.last_success = unix_now();
        st.last_error = None;
        st.failed_digest = None;
        st.attempted.clear();
    }
    metrics
        .config_reloads
        .with_label_values(&["success", ""])
        .inc();
    metrics.config_last_reload_ok.set(1);
    metrics.config_last_reload_ok_ts.set(unix_now() as f64);
    tracing::info!(trigger, generation, sha256 = %live.current().digest,
        files = %LogList(&changes.files), routes = %LogList(&changes.routes),
        upstreams = %LogList(&changes.upstreams),
        certificates = %LogList(&changes.certificates), "config reloaded");
    Outcome::Swapped { generation }
}

/// The files break a rule: keep what runs, follow the files the attempt read, and report these
/// very files once.
fn rejected(
    metrics: &Metrics,
    status: &ReloadStatus,
    files: &Files,
    problems: &Problems,
    trigger: Trigger,
) -> Outcome {
    let trigger = trigger.as_str();
    let digest = files.digest();
    let mut st = status.lock();
    st.attempted = files
        .paths()
        .chain(files.missing())
        .map(Path::to_path_buf)
        .collect();
    if st.failed_digest.as_deref() == Some(digest.as_str()) {
        return Outcome::StillFailing;
    }
    st.failed_digest = Some(digest);
    st.last_ok = false;
    st.last_error = Some(problems.to_string());
    drop(st);
    let reason = problems
        .first_error_kind()
        .map_or("validation", |k| k.as_label());
    metrics
        .config_reloads
        .with_label_values(&["failure", reason])
        .inc();
    metrics.config_last_reload_ok.set(0);
    tracing::error!(trigger, reason, errors = %problems, "reload rejected; the running config stays");
    Outcome::Failed
}

/// How long a reload waits for a certificate and its key to match before rejecting them.
const SETTLE: std::time::Duration = std::time::Duration::from_secs(2);
const SETTLE_STEP: std::time::Duration = std::time::Duration::from_millis(50);

/// Makes `next` the running snapshot and updates the config metrics.
pub fn publish(live: &Live, next: Snapshot, old_digest: Option<&str>) {
    // Swap first: whoever sees the new generation in the metrics must find the new state.
    live.swap(next);
    record_config(&live.shared.metrics, &live.current(), old_digest);
}

/// Sets `pinproxy_config_info` and `pinproxy_config_generation` for the running snapshot.
pub fn record_config(metrics: &Metrics, running: &Snapshot, old_digest: Option<&str>) {
    if let Some(old) = old_digest.filter(|d| *d != running.digest) {
        let _ = metrics.config_info.remove_label_values(&[old]);
    }
    metrics
        .config_info
        .with_label_values(&[running.digest.as_str()])
        .set(1);
    metrics.config_generation.set(running.generation as i64);
}

/// Logs what changed, which parts need a restart, and which pin each served chain now matches
/// (renewal on the same key, or rotation to a shipped backup).
fn log_changes(cur: &Snapshot, next: &Snapshot) {
    for (name, tls) in &next.listeners {
        let old = cur.listeners.get(name).map_or(&[][..], |o| &o.certs[..]);
        for cert in &tls.certs {
            let change = match rotation::change(old, cert) {
                rotation::CertChange::Same => continue,
                rotation::CertChange::Renewal => "renewal on the same key",
                rotation::CertChange::Rotation { .. } => "rotation to a new key",
                rotation::CertChange::New => "new certificate",
            };
            for m in tls.matches.iter().filter(|m| m.cert == cert.field) {
                let matched: Vec<String> = m
                    .matched
                    .iter()
                    .map(|p| format!("{} ({})", p.label, p.position.as_str()))
                    .collect();
                tracing::info!(listener = %name, cert = %cert.field, change, subject = %cert.path[0].subject,
                    pin_set = %m.pin_set, matched = %LogList(&matched), "served certificate changed");
            }
        }
    }
}

/// What a swap changed, for the reload log.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Files whose contents changed, appeared or went, relative to the config's directory.
    pub files: Vec<String>,
    pub routes: Vec<String>,
    pub upstreams: Vec<String>,
    /// Served certificates, each with "renewal" (same key) or "rotation" (new key).
    pub certificates: Vec<String>,
}

impl Changes {
    pub fn between(cur: &Snapshot, next: &Snapshot) -> Changes {
        let dir = &next.config.dir;
        let rel = |p: &Path| p.strip_prefix(dir).unwrap_or(p).display().to_string();
        let mut files: Vec<String> = next
            .file_hashes
            .iter()
            .filter(|(p, h)| cur.file_hashes.get(*p) != Some(h))
            .map(|(p, _)| rel(p))
            .collect();
        files.extend(
            cur.file_hashes
                .keys()
                .filter(|p| !next.file_hashes.contains_key(*p))
                .map(|p| format!("{} (no longer read)", rel(p))),
        );
        let mut routes = Vec::new();
        for r in &next.config.routes {
            match cur.config.routes.iter().find(|c| c.name == r.name) {
                None => routes.push(format!("{} (added)", r.name)),
                Some(c) if c != r => routes.push(r.name.clone()),
                Some(_) => {}
            }
        }
        for c in &cur.config.routes {
            if !next.config.routes.iter().any(|r| r.name == c.name) {
                routes.push(format!("{} (removed)", c.name));
            }
        }
        let mut upstreams = Vec::new();
        for name in next.config.upstreams.keys() {
            if !cur.config.upstreams.contains_key(name) {
                upstreams.push(format!("{name} (added)"));
            } else if next.upstream_differs(cur, name) {
                upstreams.push(name.clone());
            }
        }
        for name in cur.config.upstreams.keys() {
            if !next.config.upstreams.contains_key(name) {
                upstreams.push(format!("{name} (removed)"));
            }
        }
        let mut certificates = Vec::new();
        for (name, tls) in &next.listeners {
            let old = cur.listeners.get(name).map_or(&[][..], |o| &o.certs[..]);
            for cert in &tls.certs {
                let what = match rotation::change(old, cert) {
                    rotation::CertChange::Same => continue,
                    c => c.as_str(),
                };
                certificates.push(format!("{name} {} ({what})", cert.field));
            }
        }
        Changes {
            files,
            routes,
            upstreams,
            certificates,
        }
    }
}

/// Items that differ between the config the process started with and a newer one and cannot
/// be applied in place.
pub fn needs_restart(cur: &Config, next: &Config) -> Vec<String> {
    let mut out = Vec::new();
    for l in &next.listeners {
        match cur.listeners.iter().find(|c| c.name == l.name) {
            None => out.push(format!("listener \"{}\" added", l.name)),
            Some(c) if c.listen != l.listen => {
                out.push(format!("listener \"{}\" listen address", l.name))
            }
            _ => {}
        }
    }
    for c in &cur.listeners {
        if !next.listeners.iter().any(|l| l.name == c.name) {
            out.push(format!(
                "listener \"{}\" removed (it keeps serving its last certificates)",
                c.name
            ));
        }
    }
    if cur.admin != next.admin {
        out.push("[admin]".into());
    }
    if cur.log.format != next.log.format {
        out.push("[log] format".into());
    }
    out
}

/// The config path and the files a snapshot was built from: what the watcher must follow.
pub fn inputs(snap: &Snapshot) -> Vec<PathBuf> {
    let mut v = snap.files.clone();
    v.push(snap.config.file.clone());
    v.push(snap.config.dir.join(crate::pin::PIN_DIR));
    v
}

/// Problems of a failed first load, for the start-up error.
pub fn describe(problems: &Problems) -> String {
    problems.errors().map(|p| format!("  - {p}\n")).collect()
}
