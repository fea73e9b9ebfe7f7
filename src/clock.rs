//! Wall-clock time as the proxy reports it: seconds since the Unix epoch, and RFC 3339 text for
//! `/status`, the logs and check. Below every other module, so none has to reach up for it.

use std::time::SystemTime;

/// Seconds since the Unix epoch (0 on a clock set before it).
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// `unix` seconds as RFC 3339 (UTC), or the number itself when out of range.
pub fn fmt_time(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_in_utc_and_out_of_range_ones_stay_numbers() {
        assert_eq!(fmt_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(fmt_time(i64::MAX), i64::MAX.to_string());
        assert!(unix_now() > 1_700_000_000);
    }
}
