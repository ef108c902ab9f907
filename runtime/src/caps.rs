//! Capabilities: Docker's default set, `cap_add` / `cap_drop`, and applying them.

use std::collections::BTreeSet;
use std::str::FromStr;

use caps::{CapSet, Capability, CapsHashSet};

/// The 14 capabilities Docker grants by default.
pub const DOCKER_DEFAULT: [&str; 14] = [
    "CAP_AUDIT_WRITE",
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_MKNOD",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_RAW",
    "CAP_SETFCAP",
    "CAP_SETGID",
    "CAP_SETPCAP",
    "CAP_SETUID",
    "CAP_SYS_CHROOT",
];

/// A capability name that is not one the kernel knows.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown capability {name:?} (expected a name such as NET_ADMIN or CAP_NET_ADMIN, or ALL)")]
pub struct UnknownCapability {
    /// The name as given.
    pub name: String,
}

fn normalize(name: &str) -> Result<Capability, UnknownCapability> {
    let upper = name.trim().to_ascii_uppercase();
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    Capability::from_str(&full).map_err(|_| UnknownCapability {
        name: name.to_string(),
    })
}

/// Docker's rule: start from the default set, drop `drop` (`ALL` empties it), then add `add`
/// (`ALL` grants every capability). Names may omit `CAP_` and any case is accepted.
pub fn resolve(add: &[String], drop: &[String]) -> Result<Vec<String>, UnknownCapability> {
    let mut set: BTreeSet<String> = DOCKER_DEFAULT.iter().map(|s| s.to_string()).collect();
    for d in drop {
        if d.eq_ignore_ascii_case("ALL") {
            set.clear();
        } else {
            set.remove(&normalize(d)?.to_string());
        }
    }
    for a in add {
        if a.eq_ignore_ascii_case("ALL") {
            set.extend(caps::all().into_iter().map(|c| c.to_string()));
        } else {
            set.insert(normalize(a)?.to_string());
        }
    }
    Ok(set.into_iter().collect())
}

/// Parses resolved names back into a set.
pub fn to_set(names: &[String]) -> Result<CapsHashSet, UnknownCapability> {
    names.iter().map(|n| normalize(n)).collect()
}

/// Drops every capability outside `keep` from the bounding set. Needs `CAP_SETPCAP`, so it
/// runs before the process changes user.
pub fn limit_bounding(keep: &CapsHashSet) -> Result<(), caps::errors::CapsError> {
    for cap in caps::all() {
        if !keep.contains(&cap) && caps::has_cap(None, CapSet::Bounding, cap).unwrap_or(false) {
            caps::drop(None, CapSet::Bounding, cap)?;
        }
    }
    Ok(())
}

/// Sets the permitted and effective sets to `set` (empty for a non-root user, as Docker
/// does), clears the inheritable and ambient sets.
pub fn apply(set: &CapsHashSet) -> Result<(), caps::errors::CapsError> {
    caps::clear(None, CapSet::Ambient)?;
    caps::clear(None, CapSet::Inheritable)?;
    // Effective must stay a subset of permitted at every step.
    caps::set(None, CapSet::Effective, set)?;
    caps::set(None, CapSet::Permitted, set)?;
    caps::set(None, CapSet::Effective, set)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn default_set_is_dockers_fourteen() {
        let r = resolve(&[], &[]).unwrap();
        assert_eq!(r.len(), 14);
        assert!(r.contains(&"CAP_NET_RAW".to_string()));
        assert!(!r.contains(&"CAP_SYS_ADMIN".to_string()));
    }

    #[test]
    fn add_and_drop_accept_short_names_and_all() {
        let r = resolve(&s(&["net_admin"]), &s(&["CAP_NET_RAW", "mknod"])).unwrap();
        assert!(r.contains(&"CAP_NET_ADMIN".to_string()));
        assert!(!r.contains(&"CAP_NET_RAW".to_string()));
        assert!(!r.contains(&"CAP_MKNOD".to_string()));
        assert_eq!(r.len(), 13);
        assert_eq!(
            resolve(&s(&["CHOWN"]), &s(&["ALL"])).unwrap(),
            s(&["CAP_CHOWN"])
        );
        assert!(
            resolve(&s(&["ALL"]), &[])
                .unwrap()
                .contains(&"CAP_SYS_ADMIN".to_string())
        );
    }

    #[test]
    fn unknown_capability_is_named() {
        let e = resolve(&s(&["FLY"]), &[]).unwrap_err();
        assert_eq!(e.name, "FLY");
        assert!(e.to_string().contains("\"FLY\""));
    }
}
