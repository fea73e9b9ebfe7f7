//! The last day's request counts per (listener, pin set): 24 hourly buckets, kept across
//! reloads, so `/status` and `check` can say what share of requests each pin set carries.
//!
//! Bounded by design: 24 buckets per pin set a listener maps versions to, whatever the traffic.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Hours kept: the window is one day.
pub const HOURS: u64 = 24;

/// One (listener, pin set)'s counts per hour; a bucket is reused when its hour comes round again.
#[derive(Debug, Default)]
pub struct Buckets {
    slots: [Slot; HOURS as usize],
}

#[derive(Debug, Default)]
struct Slot {
    /// Hours since the Unix epoch that `count` belongs to.
    hour: AtomicU64,
    count: AtomicU64,
}

impl Buckets {
    /// Counts one request in hour `hour` (hours since the epoch).
    pub fn add(&self, hour: u64) {
        let slot = &self.slots[(hour % HOURS) as usize];
        let seen = slot.hour.load(Ordering::Relaxed);
        if seen != hour
            && slot
                .hour
                .compare_exchange(seen, hour, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            // First request of a new hour in this slot: yesterday's count goes. A request racing
            // this reset may be lost; a share is a figure to read, not a bill.
            slot.count.store(0, Ordering::Relaxed);
        }
        slot.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Requests in the 24 hours up to and including hour `now`.
    pub fn last_day(&self, now: u64) -> u64 {
        self.slots
            .iter()
            .filter(|s| {
                let h = s.hour.load(Ordering::Relaxed);
                h <= now && h + HOURS > now
            })
            .map(|s| s.count.load(Ordering::Relaxed))
            .sum()
    }
}

/// Every (listener, pin set)'s buckets, handed out at snapshot build and kept across reloads.
#[derive(Debug, Default)]
pub struct Window {
    map: Mutex<HashMap<(String, String), Arc<Buckets>>>,
}

impl Window {
    pub fn buckets(&self, listener: &str, pin_set: &str) -> Arc<Buckets> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.entry((listener.to_string(), pin_set.to_string()))
            .or_default()
            .clone()
    }
}

/// Hours since the Unix epoch.
pub fn current_hour() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() / 3600)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_the_last_day_and_forgets_older_hours() {
        let b = Buckets::default();
        b.add(1000);
        b.add(1000);
        b.add(1010);
        assert_eq!(b.last_day(1010), 3);
        assert_eq!(b.last_day(1023), 3);
        assert_eq!(b.last_day(1024), 1, "hour 1000 left the window");
        b.add(1024); // same slot as 1000: reused
        assert_eq!(b.last_day(1024), 2);
    }
}
