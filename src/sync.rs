//! Locking shared by the modules that keep plain data behind a `Mutex`.

use std::sync::{Mutex, MutexGuard};

/// Locks `m`, also after a panic elsewhere poisoned it: every user keeps plain data whose
/// updates are single calls, so a poisoned lock holds nothing half-written.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
