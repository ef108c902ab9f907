//! Wall-clock timestamps as RFC 3339 strings, without a date library.

use std::time::{SystemTime, UNIX_EPOCH};

/// Nanoseconds since the Unix epoch.
pub fn now_unix_nanos() -> i128 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    }
}

/// Formats nanoseconds since the epoch as `2026-11-23T11:22:11.123456789Z`.
pub fn rfc3339_nanos(unix_nanos: i128) -> String {
    let nanos = unix_nanos.rem_euclid(1_000_000_000) as u32;
    format!("{}.{nanos:09}Z", date_time(unix_nanos))
}

/// Formats nanoseconds since the epoch as `2026-11-23T11:22:11Z`, to the second
/// (rounded down).
pub fn rfc3339_secs(unix_nanos: i128) -> String {
    format!("{}Z", date_time(unix_nanos))
}

/// `YYYY-MM-DDTHH:MM:SS` (UTC) of the second that holds `unix_nanos`.
fn date_time(unix_nanos: i128) -> String {
    let secs = unix_nanos.div_euclid(1_000_000_000) as i64;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        sod / 3600,
        (sod % 3600) / 60,
        sod % 60
    )
}

/// Parses what [`rfc3339_nanos`] writes (UTC, `Z`, optional fraction) back to nanoseconds.
pub fn parse_rfc3339(s: &str) -> Option<i128> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut dp = date.splitn(3, '-');
    let y: i64 = dp.next()?.parse().ok()?;
    let m: u32 = dp.next()?.parse().ok()?;
    let d: u32 = dp.next()?.parse().ok()?;
    let (hms, frac) = match time.split_once('.') {
        Some((a, b)) => (a, b),
        None => (time, ""),
    };
    let mut tp = hms.splitn(3, ':');
    let h: i64 = tp.next()?.parse().ok()?;
    let mi: i64 = tp.next()?.parse().ok()?;
    let se: i64 = tp.next()?.parse().ok()?;
    let mut nanos: i128 = 0;
    if !frac.is_empty() {
        let digits: String = frac.chars().take(9).collect();
        let n: i128 = digits.parse().ok()?;
        nanos = n * 10i128.pow(9 - digits.len() as u32);
    }
    let days = days_from_civil(y, m, d);
    Some(((days * 86_400 + h * 3600 + mi * 60 + se) as i128) * 1_000_000_000 + nanos)
}

// Howard Hinnant's algorithms (public domain), proleptic Gregorian calendar.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339_nanos(0), "1970-01-01T00:00:00.000000000Z");
        // 2026-11-23T11:22:11Z
        assert_eq!(
            rfc3339_nanos(1_795_432_931_000_000_123),
            "2026-11-23T11:22:11.000000123Z"
        );
        assert_eq!(
            rfc3339_nanos(951_782_400_000_000_000),
            "2000-02-29T00:00:00.000000000Z"
        );
    }

    #[test]
    fn formats_to_the_second_rounding_down_before_and_after_the_epoch() {
        assert_eq!(rfc3339_secs(0), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339_secs(951_782_400_999_999_999),
            "2000-02-29T00:00:00Z"
        );
        assert_eq!(rfc3339_secs(-1), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn parse_round_trips() {
        for t in [
            0i128,
            1_795_432_931_000_000_123,
            951_782_400_500_000_000,
            -86_400_000_000_000,
        ] {
            assert_eq!(parse_rfc3339(&rfc3339_nanos(t)), Some(t));
        }
        assert_eq!(
            parse_rfc3339("2026-11-23T11:22:11Z"),
            Some(1_795_432_931_000_000_000)
        );
        assert_eq!(parse_rfc3339("yesterday"), None);
    }
}
