//! Durations as Compose writes them (Go's `time.ParseDuration`): one or more numbers, each
//! with a unit, such as `1m30s`, `10s`, `500ms`, `1.5h`, `2us`; `0` alone is zero.

use std::time::Duration;

/// The accepted forms, for error messages.
pub const DURATION_FORMS: &str =
    "a number with a unit (ns, us, ms, s, m, h), several in a row allowed: 10s, 1m30s, 500ms, 1.5h";

/// Why a duration does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` is not a duration: {reason}")]
pub struct DurationError {
    /// The text given.
    pub value: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

fn unit_nanos(unit: &str) -> Option<u128> {
    Some(match unit {
        "ns" => 1,
        "us" | "µs" | "μs" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60 * 1_000_000_000,
        "h" => 3_600 * 1_000_000_000,
        _ => return None,
    })
}

/// Parses a duration such as `1m30s`.
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    let bad = |reason| DurationError {
        value: s.to_owned(),
        reason,
    };
    let t = s.trim();
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    if t.is_empty() {
        return Err(bad("it is empty"));
    }
    if t.starts_with('-') {
        return Err(bad("it is negative"));
    }
    let mut rest = t.strip_prefix('+').unwrap_or(t);
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num = &rest[..num_len];
        if num.is_empty() || num == "." || num.matches('.').count() > 1 {
            return Err(bad("expected a number before each unit"));
        }
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        if unit.is_empty() {
            return Err(bad("a number has no unit (ns, us, ms, s, m, h)"));
        }
        let per =
            unit_nanos(unit).ok_or_else(|| bad("unknown unit (expected ns, us, ms, s, m, h)"))?;
        let (whole, frac) = num.split_once('.').unwrap_or((num, ""));
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| bad("a number is too large"))?
        };
        let mut part = whole
            .checked_mul(per)
            .ok_or_else(|| bad("it is too long"))?;
        // The fraction, to nanosecond precision.
        let mut scale = per;
        for d in frac.chars().take(30) {
            scale /= 10;
            part += u128::from(d.to_digit(10).unwrap_or(0)) * scale;
        }
        total = total
            .checked_add(part)
            .ok_or_else(|| bad("it is too long"))?;
    }
    let secs = u64::try_from(total / 1_000_000_000).map_err(|_| bad("it is too long"))?;
    let nanos = u32::try_from(total % 1_000_000_000).unwrap_or(0);
    Ok(Duration::new(secs, nanos))
}

/// Formats a duration the way [`parse_duration`] reads it back: `1m30s`, `500ms`.
pub fn format_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_owned();
    }
    if !nanos.is_multiple_of(1_000_000_000) {
        return if nanos.is_multiple_of(1_000_000) {
            format!("{}ms", nanos / 1_000_000)
        } else if nanos.is_multiple_of(1_000) {
            format!("{}us", nanos / 1_000)
        } else {
            format!("{nanos}ns")
        };
    }
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 {
        out.push_str(&format!("{s}s"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> u128 {
        parse_duration(s).expect(s).as_millis()
    }

    #[test]
    fn compose_durations() {
        assert_eq!(ms("10s"), 10_000);
        assert_eq!(ms("1m30s"), 90_000);
        assert_eq!(ms("500ms"), 500);
        assert_eq!(ms("1h"), 3_600_000);
        assert_eq!(ms("1.5h"), 5_400_000);
        assert_eq!(ms("1h2m3s4ms"), 3_723_004);
        assert_eq!(ms("0"), 0);
        assert_eq!(ms("0s"), 0);
        assert_eq!(ms(".5s"), 500);
        assert_eq!(parse_duration("2us").expect("us").as_nanos(), 2_000);
        assert_eq!(parse_duration("2µs").expect("µs").as_nanos(), 2_000);
        assert_eq!(parse_duration("7ns").expect("ns").as_nanos(), 7);
        assert_eq!(
            parse_duration("1.000000001s").expect("ns").as_nanos(),
            1_000_000_001
        );
    }

    #[test]
    fn bad_durations_say_why() {
        for (s, why) in [
            ("10", "no unit"),
            ("", "empty"),
            ("-1s", "negative"),
            ("1x", "unknown unit"),
            ("s", "number"),
            ("1..2s", "number"),
            ("1 s", "unknown unit"),
            ("ten seconds", "number"),
            ("99999999999999999999999999999999999999999h", "large"),
            ("9999999999999999999h", "long"),
        ] {
            let e = parse_duration(s).expect_err(s);
            assert!(e.reason.contains(why), "{s}: {e}");
            assert!(e.to_string().contains(&format!("`{s}`")), "{e}");
        }
    }

    #[test]
    fn format_reads_back() {
        for s in ["1m30s", "500ms", "1h", "2us", "0s", "7ns", "1h1s"] {
            let d = parse_duration(s).expect(s);
            assert_eq!(format_duration(d), s);
        }
    }
}
