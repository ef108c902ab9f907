//! Sizes as Compose writes them (Docker's `RAMInBytes`): a number of bytes, or a number
//! with a binary unit `b`, `k`, `m`, `g`, `t`, `p` (any case, `kb`/`kib` too): `512m`,
//! `1g`, `1.5g`, `100k`, `1024`.

/// The accepted forms, for error messages.
pub const SIZE_FORMS: &str = "a number of bytes, or a number with a unit b, k, m, g, t, p (binary: 1k = 1024): 512m, 1g, 1.5g";

/// Why a size does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` is not a size: {reason}")]
pub struct SizeError {
    /// The text given.
    pub value: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// Parses a size into bytes.
pub fn parse_size(s: &str) -> Result<u64, SizeError> {
    let bad = |reason| SizeError {
        value: s.to_owned(),
        reason,
    };
    let t = s.trim();
    if t.is_empty() {
        return Err(bad("it is empty"));
    }
    let num_len = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(num_len);
    if num.is_empty() || num.starts_with('.') || num.ends_with('.') || num.matches('.').count() > 1
    {
        return Err(bad("expected a number first"));
    }
    let unit = unit.trim_start().to_ascii_lowercase();
    let shift = match unit.as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        "p" | "pb" | "pib" => 50,
        _ => return Err(bad("unknown unit (expected b, k, m, g, t or p)")),
    };
    let (whole, frac) = num.split_once('.').unwrap_or((num, ""));
    let whole: u128 = whole.parse().map_err(|_| bad("it is too large"))?;
    let mut bytes = whole
        .checked_shl(shift)
        .filter(|b| *b >> shift == whole)
        .ok_or_else(|| bad("it is too large"))?;
    let unit_bytes: u128 = 1 << shift;
    let mut scale: u128 = unit_bytes;
    let mut frac_part: u128 = 0;
    let mut denom: u128 = 1;
    for d in frac.chars().take(18) {
        frac_part = frac_part * 10 + u128::from(d.to_digit(10).unwrap_or(0));
        denom *= 10;
    }
    if denom > 1 {
        scale = scale * frac_part / denom;
        bytes += scale;
    }
    u64::try_from(bytes).map_err(|_| bad("it is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compose_sizes() {
        assert_eq!(parse_size("1024"), Ok(1024));
        assert_eq!(parse_size("100k"), Ok(102_400));
        assert_eq!(parse_size("512m"), Ok(512 << 20));
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("512mb"), Ok(512 << 20));
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("1.5g"), Ok(3 << 29));
        assert_eq!(parse_size("1 g"), Ok(1 << 30));
        assert_eq!(parse_size("2t"), Ok(2 << 40));
        assert_eq!(parse_size("10b"), Ok(10));
        assert_eq!(parse_size("0"), Ok(0));
    }

    #[test]
    fn bad_sizes_say_why() {
        for (s, why) in [
            ("", "empty"),
            ("lots", "number"),
            ("1x", "unknown unit"),
            ("-1m", "number"),
            ("1.g", "number"),
            ("1..5g", "number"),
            ("99999999999999999999999999999999999999999", "large"),
            ("16384p", "large"),
        ] {
            let e = parse_size(s).expect_err(s);
            assert!(e.reason.contains(why), "{s}: {e}");
        }
    }
}
