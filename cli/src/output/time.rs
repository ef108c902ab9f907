//! Times as the API gives them (Unix nanoseconds), shown as RFC 3339 (UTC) or as an age.

/// `nanos` (Unix nanoseconds) as RFC 3339 in UTC to the second, e.g.
/// `2026-12-04T15:53:47Z`; empty for 0 (never).
pub fn rfc3339(nanos: i64) -> String {
    if nanos == 0 {
        return String::new();
    }
    berth_runtime::time::rfc3339_secs(i128::from(nanos))
}

/// How long before `now` `then` was (both Unix nanoseconds), shortly: `12s`, `5m`, `3h`,
/// `2d`; empty when `then` is 0 (never).
pub fn age(now: i64, then: i64) -> String {
    if then == 0 {
        return String::new();
    }
    let s = now.saturating_sub(then).max(0) / 1_000_000_000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// Now, in Unix nanoseconds.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    #[test]
    fn rfc3339_is_utc_to_the_second() {
        assert_eq!(rfc3339(1_796_399_627 * S + 5), "2026-12-04T15:53:47Z");
        assert_eq!(rfc3339(951_782_400 * S), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(0), "");
    }

    #[test]
    fn ages_are_short() {
        assert_eq!(age(100 * S, 88 * S), "12s");
        assert_eq!(age(4000 * S, 100 * S), "1h");
        assert_eq!(age(10 * 86_400 * S, S), "9d");
        assert_eq!(age(S, 2 * S), "0s");
        assert_eq!(age(S, 0), "");
    }
}
