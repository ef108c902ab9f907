//! Resolving a container's `user` (`name`, `uid`, `name:group`, `uid:gid`) against the image's
//! own `/etc/passwd` and `/etc/group`, as Docker does.

/// The identity a container process runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecUser {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary groups (from `/etc/group` membership).
    pub groups: Vec<u32>,
    /// Home directory (`/` when unknown).
    pub home: String,
}

/// A user or group that cannot be resolved.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UserError {
    /// A named user is not in the image's `/etc/passwd`.
    #[error("unable to find user {0:?}: no matching entries in the image's /etc/passwd")]
    UnknownUser(String),
    /// A named group is not in the image's `/etc/group`.
    #[error("unable to find group {0:?}: no matching entries in the image's /etc/group")]
    UnknownGroup(String),
    /// The user spec has the wrong shape.
    #[error("invalid user {0:?}: expected user, uid, user:group or uid:gid")]
    Invalid(String),
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

fn passwd_entries(passwd: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    passwd.lines().filter_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 7 || l.starts_with('#') {
            return None;
        }
        Some(PasswdEntry {
            name: f[0],
            uid: f[2].parse().ok()?,
            gid: f[3].parse().ok()?,
            home: f[5],
        })
    })
}

fn group_entries(group: &str) -> impl Iterator<Item = (&str, u32, Vec<&str>)> {
    group.lines().filter_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 4 || l.starts_with('#') {
            return None;
        }
        let members = f[3].split(',').filter(|m| !m.is_empty()).collect();
        Some((f[0], f[2].parse().ok()?, members))
    })
}

/// Resolves `spec` with the contents of the image's `/etc/passwd` and `/etc/group` (empty
/// strings when the files are missing). An empty spec is root.
pub fn resolve(spec: &str, passwd: &str, group: &str) -> Result<ExecUser, UserError> {
    let spec = spec.trim();
    let (user_part, group_part) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    if group_part.is_some_and(|g| g.is_empty() || g.contains(':')) {
        return Err(UserError::Invalid(spec.to_string()));
    }
    let user_part = if user_part.is_empty() { "0" } else { user_part };

    let (uid, mut gid, name, home) = if let Ok(uid) = user_part.parse::<u32>() {
        match passwd_entries(passwd).find(|e| e.uid == uid) {
            Some(e) => (uid, e.gid, Some(e.name.to_string()), e.home.to_string()),
            // A numeric uid need not exist in the image, as in Docker.
            None => (uid, 0, None, "/".to_string()),
        }
    } else {
        let e = passwd_entries(passwd)
            .find(|e| e.name == user_part)
            .ok_or_else(|| UserError::UnknownUser(user_part.to_string()))?;
        (e.uid, e.gid, Some(e.name.to_string()), e.home.to_string())
    };

    if let Some(g) = group_part {
        gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => group_entries(group)
                .find(|(n, _, _)| *n == g)
                .map(|(_, id, _)| id)
                .ok_or_else(|| UserError::UnknownGroup(g.to_string()))?,
        };
    }

    let mut groups = Vec::new();
    if group_part.is_none()
        && let Some(name) = &name
    {
        for (_, id, members) in group_entries(group) {
            if members.contains(&name.as_str()) && id != gid && !groups.contains(&id) {
                groups.push(id);
            }
        }
    }
    let home = if home.is_empty() {
        "/".to_string()
    } else {
        home
    };
    Ok(ExecUser {
        uid,
        gid,
        groups,
        home,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\napp:x:1000:1000::/home/app:/bin/sh\n";
    const GROUP: &str =
        "root:x:0:\nnogroup:x:65534:\napp:x:1000:\nwheel:x:10:app\naudio:x:29:app,root\n";

    #[test]
    fn names_and_ids() {
        let root = resolve("", PASSWD, GROUP).unwrap();
        assert_eq!((root.uid, root.gid, root.home.as_str()), (0, 0, "/root"));
        assert_eq!(root.groups, vec![29]);
        let app = resolve("app", PASSWD, GROUP).unwrap();
        assert_eq!((app.uid, app.gid), (1000, 1000));
        assert_eq!(app.groups, vec![10, 29]);
        assert_eq!(app.home, "/home/app");
        let n = resolve("1000:nogroup", PASSWD, GROUP).unwrap();
        assert_eq!((n.uid, n.gid), (1000, 65534));
        assert!(n.groups.is_empty());
        let raw = resolve("4242:4343", PASSWD, GROUP).unwrap();
        assert_eq!((raw.uid, raw.gid, raw.home.as_str()), (4242, 4343, "/"));
    }

    #[test]
    fn unknown_names_are_errors() {
        assert_eq!(
            resolve("ghost", PASSWD, GROUP),
            Err(UserError::UnknownUser("ghost".into()))
        );
        assert_eq!(
            resolve("app:ghosts", PASSWD, GROUP),
            Err(UserError::UnknownGroup("ghosts".into()))
        );
        assert!(matches!(
            resolve("app:", PASSWD, GROUP),
            Err(UserError::Invalid(_))
        ));
        assert_eq!(
            resolve("root", "", ""),
            Err(UserError::UnknownUser("root".into()))
        );
    }
}
