//! The one judge of expiry: where a pin set or certificate stands against the `[expiry]`
//! windows, whether a pin set is live, and the sentence an operator reads about it.
//!
//! `check`, the start-up and reload logs (through the expiry sweep), `/status` and the status
//! page all ask this module, so they cannot disagree about the same files.

use serde::Serialize;

use crate::config::Expiry;
use crate::expiry::Urgency;
use crate::pin::PinSet;

/// What a pin set is used for; decides what its expiry means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Named by a listener: shipped in apps, which stop pinning after it.
    Listener,
    /// Named by an upstream: enforced by the proxy, also after it expired (fail closed).
    Upstream,
    /// Named by both.
    Both,
    /// Named by nothing.
    Unused,
}

impl Role {
    pub fn of(listener: bool, upstream: bool) -> Role {
        match (listener, upstream) {
            (true, true) => Role::Both,
            (true, false) => Role::Listener,
            (false, true) => Role::Upstream,
            (false, false) => Role::Unused,
        }
    }
}

/// Where one pin set stands now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PinSetStanding {
    pub urgency: Urgency,
    /// Live until `expires` (00:00 UTC) + one day + `pin_set_grace`: device clocks and time
    /// zones differ. The same rule the pin rules use.
    pub live: bool,
    /// The sentence every reader shows; `None` when there is nothing to say.
    pub message: Option<String>,
}

/// Judges `set` at `now` (unix seconds).
pub fn pin_set(set: &PinSet, role: Role, now: i64, exp: &Expiry) -> PinSetStanding {
    let urgency = Urgency::of(
        set.expires_unix(),
        now,
        exp.pin_set_warn_before,
        exp.pin_set_critical_before,
    );
    let live = set.is_live(now, exp.pin_set_grace);
    let name = &set.name;
    let consequence = match role {
        Role::Listener | Role::Both => "apps that ship it stop pinning after that date",
        Role::Upstream => "the proxy keeps enforcing it after that date (fail closed)",
        Role::Unused => "no listener or upstream names it",
    };
    let message = match urgency {
        Urgency::Ok => None,
        Urgency::Warning | Urgency::Critical => Some(format!(
            "pin set \"{name}\" expires on {} (in {}): {consequence}; {}",
            set.expires,
            days(set.expires_unix() - now),
            match role {
                Role::Upstream => "update pins/ with the provider's next keys",
                _ => "ship an app release with a new pin set",
            }
        )),
        Urgency::Expired => {
            let ago = days(now - set.expires_unix());
            let end = set.expires_unix() + 86_400 + secs(exp.pin_set_grace);
            let grace = if live {
                format!("still live for {} of grace", days(end - now))
            } else {
                "no longer live".to_string()
            };
            let then = match role {
                Role::Listener | Role::Both if live => {
                    "apps that ship it are about to stop pinning"
                }
                Role::Listener | Role::Both => {
                    "apps that ship it no longer pin; its rules are not checked"
                }
                Role::Upstream => "the proxy still enforces it (fail closed)",
                Role::Unused => "no listener or upstream names it",
            };
            Some(format!(
                "pin set \"{name}\" expired {ago} ago, {grace}: {then}"
            ))
        }
    };
    PinSetStanding {
        urgency,
        live,
        message,
    }
}

/// Where a certificate's `not_after` stands against the certificate windows.
pub fn certificate(not_after: i64, now: i64, exp: &Expiry) -> Urgency {
    Urgency::of(not_after, now, exp.warn_before, exp.critical_before)
}

/// The sentence about a certificate inside a window: `what` is "served certificate" or
/// "upstream certificate", `owner` the listener or upstream name.
pub fn certificate_message(
    what: &str,
    subject: &str,
    position: &str,
    owner: &str,
    serial: &str,
    not_after: i64,
    now: i64,
) -> String {
    let at = crate::clock::fmt_time(not_after);
    if not_after <= now {
        format!(
            "{what} {subject} ({position} of {owner}, serial {serial}) EXPIRED on {at}, {} ago",
            days(now - not_after)
        )
    } else {
        format!(
            "{what} {subject} ({position} of {owner}, serial {serial}) expires on {at} (in {})",
            days(not_after - now)
        )
    }
}

/// Whole days, rounded down: "0 days", "1 day", "12 days".
fn days(secs: i64) -> String {
    match secs.max(0) / 86_400 {
        1 => "1 day".to_string(),
        n => format!("{n} days"),
    }
}

fn secs(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use super::*;
    use crate::pin::PinMode;

    const DAY: i64 = 86_400;

    fn expiry() -> Expiry {
        Expiry {
            warn_before: Duration::from_secs(28 * DAY as u64),
            critical_before: Duration::from_secs(14 * DAY as u64),
            pin_set_warn_before: Duration::from_secs(60 * DAY as u64),
            pin_set_critical_before: Duration::from_secs(21 * DAY as u64),
            pin_set_grace: Duration::from_secs(2 * DAY as u64),
            check_every: Duration::from_secs(3600),
        }
    }

    fn set() -> PinSet {
        PinSet {
            name: "app".into(),
            file: PathBuf::from("pins/app.toml"),
            description: String::new(),
            expires: time::macros::date!(2030 - 06 - 30),
            mode: PinMode::Enforce,
            pins: vec![],
            from: None,
            frozen: None,
            app_versions: None,
        }
    }

    #[test]
    fn a_set_two_days_past_expiry_is_live_for_the_last_hours_of_its_grace() {
        let s = set();
        let now = s.expires_unix() + 2 * DAY + 3600;
        let j = pin_set(&s, Role::Listener, now, &expiry());
        assert_eq!(j.urgency, Urgency::Expired);
        assert!(j.live);
        let m = j.message.expect("a message");
        assert!(
            m.contains("expired 2 days ago, still live for 0 days of grace"),
            "{m}"
        );
    }

    #[test]
    fn grace_ends_and_an_upstream_set_stays_enforced() {
        let s = set();
        let now = s.expires_unix() + 4 * DAY;
        let j = pin_set(&s, Role::Upstream, now, &expiry());
        assert!(!j.live);
        let m = j.message.expect("a message");
        assert!(m.contains("expired 4 days ago, no longer live"), "{m}");
        assert!(m.contains("still enforces it"), "{m}");
    }

    #[test]
    fn the_warning_window_is_said_for_either_kind_of_set() {
        let s = set();
        let now = s.expires_unix() - 40 * DAY;
        for role in [Role::Listener, Role::Upstream] {
            let j = pin_set(&s, role, now, &expiry());
            assert_eq!(j.urgency, Urgency::Warning);
            assert!(j.message.expect("a message").contains("in 40 days"));
        }
        let ok = pin_set(&s, Role::Listener, s.expires_unix() - 90 * DAY, &expiry());
        assert_eq!((ok.urgency, ok.message), (Urgency::Ok, None));
    }
}
