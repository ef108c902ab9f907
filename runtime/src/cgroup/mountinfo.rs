//! The few fields of `/proc/self/mountinfo` the cgroup code needs (proc(5)):
//!
//! ```text
//! 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
//! id pa ma:mi root mount-point options [optional fields…] - fstype source super-options
//! ```

use std::path::PathBuf;

/// One mount, as far as the cgroup code cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Mount<'a> {
    /// Where it is mounted (octal escapes such as `\040` decoded).
    pub mount_point: PathBuf,
    /// The file-system type (`cgroup`, `cgroup2`, `tmpfs`, …).
    pub fstype: &'a str,
    /// The per-super-block options; for `cgroup` they name the controllers (`rw,cpu,cpuacct`).
    pub super_options: &'a str,
}

/// The mounts in `mountinfo`, in order (a later mount on the same point covers an earlier
/// one). Lines that do not have the documented shape are skipped.
pub(super) fn mounts(mountinfo: &str) -> impl Iterator<Item = Mount<'_>> {
    mountinfo.lines().filter_map(parse_line)
}

fn parse_line(line: &str) -> Option<Mount<'_>> {
    let mut fields = line.split(' ');
    let mount_point = fields.nth(4)?;
    // Skip the mount options and the optional fields up to the "-" separator.
    fields.by_ref().find(|field| *field == "-")?;
    let fstype = fields.next()?;
    let _source = fields.next()?;
    let super_options = fields.next()?;
    Some(Mount {
        mount_point: PathBuf::from(unescape(mount_point)),
        fstype,
        super_options,
    })
}

/// Decodes the `\ooo` escapes the kernel uses for space, tab, newline and backslash.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let digits = bytes
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
        if let (b'\\', Some(digits)) = (bytes[i], digits) {
            let value = digits
                .iter()
                .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
            if let Ok(byte) = u8::try_from(value) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fields_around_optional_ones() {
        let info = "\
35 24 0:30 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:11 master:3 - cgroup cgroup rw,cpu,cpuacct
garbage line
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
        let all: Vec<_> = mounts(info).collect();
        assert_eq!(all.len(), 2);
        assert_eq!(
            all[0].mount_point,
            PathBuf::from("/sys/fs/cgroup/cpu,cpuacct")
        );
        assert_eq!(all[0].fstype, "cgroup");
        assert_eq!(all[0].super_options, "rw,cpu,cpuacct");
        assert_eq!(all[1].fstype, "cgroup2");
        assert_eq!(all[1].super_options, "rw");
    }

    #[test]
    fn decodes_octal_escapes() {
        assert_eq!(unescape(r"/mnt/my\040cgroups"), "/mnt/my cgroups");
        assert_eq!(unescape(r"/a\134b"), r"/a\b");
        assert_eq!(unescape(r"/trailing\04"), r"/trailing\04");
    }
}
