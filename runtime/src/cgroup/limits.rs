//! Checking [`Limits`] before they reach the kernel, parsing Docker-style memory sizes, and
//! the unit conversions both layouts share.

use super::{CgroupError, Limits};

/// The smallest memory limit accepted: 6 MiB, Docker's minimum (less cannot start a process).
pub const MIN_MEMORY_BYTES: u64 = 6 * 1024 * 1024;
/// The smallest CPU quota accepted, in CPUs: 0.01, i.e. a 1 ms quota per 100 ms period, the
/// least the kernel takes in `cpu.cfs_quota_us`/`cpu.max` (Docker's lower bound too).
pub const MIN_CPUS: f64 = 0.01;
/// The range of `cpu_shares` (v1 `cpu.shares` accepts 2..=262144).
pub const SHARES_RANGE: std::ops::RangeInclusive<u64> = 2..=262_144;
/// The largest `pids_max` the kernel accepts (`PID_MAX_LIMIT` on 64-bit hosts).
pub const MAX_PIDS: u64 = 4_194_304;

/// The CFS period berth always uses, in microseconds (100 ms).
pub(super) const CPU_PERIOD_US: u64 = 100_000;
/// The v1 kernel default of `cpu.shares`.
pub(super) const DEFAULT_SHARES: u64 = 1024;
/// The v2 kernel default of `cpu.weight`.
pub(super) const DEFAULT_WEIGHT: u64 = 100;

const ONLINE_CPUS: &str = "/sys/devices/system/cpu/online";

/// How many CPUs the host has, and where that number came from (for the error message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct HostCpus {
    pub count: usize,
    pub source: &'static str,
}

impl HostCpus {
    /// The online CPUs from `/sys/devices/system/cpu/online`, or, when that cannot be read,
    /// `std::thread::available_parallelism` (which may be lower: it honours this process's
    /// affinity mask). As Docker does, the check is against the host, not against the quota
    /// of whatever cgroup the caller itself runs in.
    pub(super) fn detect() -> Self {
        if let Some(count) = std::fs::read_to_string(ONLINE_CPUS)
            .ok()
            .and_then(|s| count_cpu_list(&s))
        {
            return Self {
                count,
                source: ONLINE_CPUS,
            };
        }
        Self {
            count: std::thread::available_parallelism().map_or(1, usize::from),
            source: "std::thread::available_parallelism",
        }
    }
}

/// Counts the CPUs in a kernel CPU list such as `0-3,8,10-11`.
fn count_cpu_list(list: &str) -> Option<usize> {
    let mut count = 0;
    for part in list.trim().split(',') {
        count += match part.split_once('-') {
            Some((lo, hi)) => {
                let (lo, hi) = (lo.parse::<usize>().ok()?, hi.parse::<usize>().ok()?);
                hi.checked_sub(lo)? + 1
            }
            None => {
                part.parse::<usize>().ok()?;
                1
            }
        };
    }
    (count > 0).then_some(count)
}

/// Checks every limit that is set against what the kernel (and Docker) accept: memory at
/// least [`MIN_MEMORY_BYTES`]; cpus finite, at least [`MIN_CPUS`] and at most the host's
/// online CPUs; shares in [`SHARES_RANGE`]; pids from 1 to [`MAX_PIDS`]. The error names the
/// limit and the value.
pub fn validate(limits: &Limits) -> Result<(), CgroupError> {
    validate_for_host(limits, HostCpus::detect())
}

pub(super) fn validate_for_host(limits: &Limits, host: HostCpus) -> Result<(), CgroupError> {
    if let Some(bytes) = limits.memory_bytes
        && bytes < MIN_MEMORY_BYTES
    {
        return Err(CgroupError::InvalidLimit {
            name: "memory",
            reason: format!(
                "{bytes} bytes is below the minimum of {MIN_MEMORY_BYTES} bytes (6 MiB)"
            ),
        });
    }
    if let Some(cpus) = limits.cpus {
        // Written so that NaN fails too.
        if !(cpus.is_finite() && cpus >= MIN_CPUS) {
            return Err(CgroupError::InvalidLimit {
                name: "cpus",
                reason: format!(
                    "{cpus} is below the minimum of {MIN_CPUS} (a 1 ms quota per 100 ms period)"
                ),
            });
        }
        if cpus > host.count as f64 {
            return Err(CgroupError::InvalidLimit {
                name: "cpus",
                reason: format!(
                    "{cpus} is more than the {} CPUs this host has online (from {})",
                    host.count, host.source
                ),
            });
        }
    }
    if let Some(shares) = limits.cpu_shares
        && !SHARES_RANGE.contains(&shares)
    {
        return Err(CgroupError::InvalidLimit {
            name: "cpu_shares",
            reason: format!(
                "{shares} is outside {}..={}",
                SHARES_RANGE.start(),
                SHARES_RANGE.end()
            ),
        });
    }
    if let Some(pids) = limits.pids_max
        && !(1..=MAX_PIDS).contains(&pids)
    {
        return Err(CgroupError::InvalidLimit {
            name: "pids",
            reason: format!("{pids} is outside 1..={MAX_PIDS}"),
        });
    }
    Ok(())
}

/// Parses a memory size as Docker's `--memory` does: a number, optionally with a fraction,
/// then an optional unit `b`, `k`, `m`, `g`, `t` or `p` (powers of 1024), optionally
/// followed by `b` or `ib`; case-insensitive. `1024` and `1024b` are bytes; `64m`, `64MB`
/// and `64MiB` (and `64 m`) are 64 MiB; `1.5g` is 1.5 GiB (rounded down to a whole byte).
pub fn parse_memory(s: &str) -> Result<u64, CgroupError> {
    parse_memory_inner(s).ok_or_else(|| CgroupError::InvalidLimit {
        name: "memory",
        reason: format!(
            "cannot parse {s:?}: expected a number of bytes with an optional unit b, k, m, g, t \
             or p (powers of 1024), such as 1024, 512k, 64m or 1g"
        ),
    })
}

fn parse_memory_inner(s: &str) -> Option<u64> {
    let lower = s.trim().to_ascii_lowercase();
    let number_end = lower
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(lower.len());
    let (number, unit) = lower.split_at(number_end);
    // Docker allows one space between the number and the unit.
    let unit = unit
        .strip_prefix(' ')
        .filter(|u| !u.is_empty())
        .unwrap_or(unit);
    let shift = match unit {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        "p" | "pb" | "pib" => 50,
        _ => return None,
    };
    let multiplier = 1u128 << shift;
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if number.contains('.')
        && (fraction.is_empty() || !fraction.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    let mut bytes = whole.parse::<u128>().ok()?.checked_mul(multiplier)?;
    if !fraction.is_empty() {
        // Exact: fraction / 10^len * multiplier, rounded down. Digits past 30 cannot matter.
        let fraction = &fraction[..fraction.len().min(30)];
        let numerator = fraction.parse::<u128>().ok()?.checked_mul(multiplier)?;
        bytes = bytes.checked_add(numerator / 10u128.checked_pow(fraction.len() as u32)?)?;
    }
    u64::try_from(bytes).ok()
}

/// The CFS quota for `cpus`, in microseconds per [`CPU_PERIOD_US`].
pub(super) fn cpus_to_quota(cpus: f64) -> u64 {
    // `validate` bounds cpus to [0.01, host CPUs], so this is a small positive number.
    (cpus * CPU_PERIOD_US as f64).round() as u64
}

/// Docker's `cpu_shares` to v2 `cpu.weight` with the linear mapping runc uses:
/// `1 + ((shares - 2) * 9999) / 262142`, so 2 → 1 and 262144 → 10000 (and 1024 → 39, not the
/// v2 default of 100).
pub(super) fn shares_to_weight(shares: u64) -> u64 {
    let shares = shares.clamp(*SHARES_RANGE.start(), *SHARES_RANGE.end());
    1 + ((shares - 2) * 9999) / 262_142
}

/// The inverse of [`shares_to_weight`]. The mapping loses information (about 26 share values
/// land on each weight), so this returns the smallest shares value that maps to `weight`:
/// `shares_to_weight(weight_to_shares(w)) == w` for every weight, but reading back a cgroup
/// created with 512 shares gives 501.
pub(super) fn weight_to_shares(weight: u64) -> u64 {
    let weight = weight.clamp(1, 10_000);
    2 + ((weight - 1) * 262_142).div_ceil(9999)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: HostCpus = HostCpus {
        count: 2,
        source: "test",
    };

    fn invalid(limits: Limits) -> (&'static str, String) {
        match validate_for_host(&limits, HOST) {
            Err(CgroupError::InvalidLimit { name, reason }) => (name, reason),
            other => panic!("{limits:?}: expected InvalidLimit, got {other:?}"),
        }
    }

    #[test]
    fn accepts_limits_in_range() {
        validate_for_host(&Limits::default(), HOST).unwrap();
        let limits = Limits {
            memory_bytes: Some(MIN_MEMORY_BYTES),
            cpus: Some(2.0),
            cpu_shares: Some(2),
            pids_max: Some(1),
        };
        validate_for_host(&limits, HOST).unwrap();
        let limits = Limits {
            memory_bytes: Some(u64::MAX),
            cpus: Some(0.01),
            cpu_shares: Some(262_144),
            pids_max: Some(MAX_PIDS),
        };
        validate_for_host(&limits, HOST).unwrap();
        // The real host check runs too (every host has at least one CPU).
        validate(&Limits {
            cpus: Some(1.0),
            ..Limits::default()
        })
        .unwrap();
    }

    #[test]
    fn rejects_each_limit_out_of_range_naming_it_and_the_value() {
        let (name, reason) = invalid(Limits {
            memory_bytes: Some(MIN_MEMORY_BYTES - 1),
            ..Limits::default()
        });
        assert_eq!(name, "memory");
        assert!(reason.contains("6291455"), "{reason}");

        for cpus in [0.0, -1.0, 0.009, f64::NAN, f64::INFINITY] {
            let (name, reason) = invalid(Limits {
                cpus: Some(cpus),
                ..Limits::default()
            });
            assert_eq!(name, "cpus");
            assert!(reason.contains(&cpus.to_string()), "{reason}");
        }
        let (name, reason) = invalid(Limits {
            cpus: Some(2.5),
            ..Limits::default()
        });
        assert_eq!(name, "cpus");
        assert!(
            reason.contains("2.5") && reason.contains("2 CPUs") && reason.contains("test"),
            "{reason}"
        );

        for shares in [0, 1, 262_145] {
            let (name, reason) = invalid(Limits {
                cpu_shares: Some(shares),
                ..Limits::default()
            });
            assert_eq!(name, "cpu_shares");
            assert!(reason.contains(&shares.to_string()), "{reason}");
        }
        for pids in [0, MAX_PIDS + 1] {
            let (name, reason) = invalid(Limits {
                pids_max: Some(pids),
                ..Limits::default()
            });
            assert_eq!(name, "pids");
            assert!(reason.contains(&pids.to_string()), "{reason}");
        }
    }

    #[test]
    fn counts_cpu_lists() {
        assert_eq!(count_cpu_list("0-1\n"), Some(2));
        assert_eq!(count_cpu_list("0"), Some(1));
        assert_eq!(count_cpu_list("0-3,8,10-11"), Some(7));
        assert_eq!(count_cpu_list(""), None);
        assert_eq!(count_cpu_list("3-1"), None);
        assert_eq!(count_cpu_list("x"), None);
    }

    #[test]
    fn parses_docker_memory_sizes() {
        const MIB: u64 = 1 << 20;
        assert_eq!(parse_memory("64m").unwrap(), 64 * MIB);
        assert_eq!(parse_memory("64M").unwrap(), 64 * MIB);
        assert_eq!(parse_memory("64MiB").unwrap(), 64 * MIB);
        assert_eq!(parse_memory("64mb").unwrap(), 64 * MIB);
        assert_eq!(parse_memory("64 m").unwrap(), 64 * MIB);
        assert_eq!(parse_memory("1g").unwrap(), 1 << 30);
        assert_eq!(parse_memory("1G").unwrap(), 1 << 30);
        assert_eq!(parse_memory("512k").unwrap(), 512 << 10);
        assert_eq!(parse_memory("100b").unwrap(), 100);
        assert_eq!(parse_memory("100B").unwrap(), 100);
        assert_eq!(parse_memory("1024").unwrap(), 1024);
        assert_eq!(parse_memory(" 2t ").unwrap(), 2 << 40);
        assert_eq!(parse_memory("1p").unwrap(), 1 << 50);
        assert_eq!(parse_memory("1.5g").unwrap(), 3 << 29);
        assert_eq!(parse_memory("0.5k").unwrap(), 512);
        assert_eq!(parse_memory("0").unwrap(), 0);
    }

    #[test]
    fn rejects_bad_memory_sizes_clearly() {
        for bad in [
            "",
            "m",
            "-1m",
            "1x",
            "64  m",
            "1.g",
            ".5g",
            "1..5g",
            "1.5.2g",
            "abc",
            "1e6",
            "64mm",
            "1gibb",
            "99999999p",
            "18446744073709551616",
        ] {
            match parse_memory(bad) {
                Err(CgroupError::InvalidLimit { name, reason }) => {
                    assert_eq!(name, "memory");
                    assert!(
                        reason.contains(&format!("{bad:?}")) && reason.contains("64m"),
                        "{reason}"
                    );
                }
                other => panic!("{bad:?}: expected InvalidLimit, got {other:?}"),
            }
        }
        assert_eq!(parse_memory("18446744073709551615").unwrap(), u64::MAX);
    }

    #[test]
    fn converts_cpu_units() {
        assert_eq!(cpus_to_quota(0.5), 50_000);
        assert_eq!(cpus_to_quota(0.01), 1_000);
        assert_eq!(cpus_to_quota(1.234_567), 123_457);
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(512), 20);
        assert_eq!(weight_to_shares(1), 2);
        assert_eq!(weight_to_shares(10_000), 262_144);
        assert_eq!(weight_to_shares(20), 501);
        for weight in 1..=10_000 {
            assert_eq!(
                shares_to_weight(weight_to_shares(weight)),
                weight,
                "weight {weight}"
            );
        }
    }
}
