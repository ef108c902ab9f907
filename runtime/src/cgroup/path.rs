//! The caller's cgroup path, checked so that joining it to a hierarchy root cannot escape it.

use std::path::{Path, PathBuf};

use super::CgroupError;

/// A cgroup path relative to every hierarchy root, such as `berth/3f2a…`: one or more
/// components separated by `/`, none of them empty, `.` or `..`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct CgroupPath {
    rel: PathBuf,
}

impl CgroupPath {
    /// Checks `path`; the error says what is wrong with it.
    pub(super) fn parse(path: &str) -> Result<Self, CgroupError> {
        let invalid = |reason| CgroupError::InvalidPath {
            path: path.to_owned(),
            reason,
        };
        if path.is_empty() {
            return Err(invalid("it is empty"));
        }
        if path.starts_with('/') {
            return Err(invalid(
                "it must be relative to the hierarchy root (no leading '/')",
            ));
        }
        if path.contains('\0') {
            return Err(invalid("it contains a NUL byte"));
        }
        for component in path.split('/') {
            match component {
                "" => {
                    return Err(invalid(
                        "it has an empty component ('//' or a trailing '/')",
                    ));
                }
                "." | ".." => return Err(invalid("it has a '.' or '..' component")),
                _ => {}
            }
        }
        Ok(Self {
            rel: PathBuf::from(path),
        })
    }

    /// The relative path itself.
    pub(super) fn as_path(&self) -> &Path {
        &self.rel
    }

    /// Every prefix of the path, shortest first: `a`, `a/b`, `a/b/c` for `a/b/c`.
    pub(super) fn levels(&self) -> Vec<PathBuf> {
        let mut levels = Vec::new();
        let mut current = PathBuf::new();
        for component in self.rel.components() {
            current.push(component);
            levels.push(current.clone());
        }
        levels
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_relative_paths_and_lists_levels() {
        let p = CgroupPath::parse("berth/abc/def").unwrap();
        assert_eq!(p.as_path(), Path::new("berth/abc/def"));
        assert_eq!(
            p.levels(),
            vec![
                PathBuf::from("berth"),
                PathBuf::from("berth/abc"),
                PathBuf::from("berth/abc/def")
            ]
        );
    }

    #[test]
    fn rejects_paths_that_could_escape_the_root() {
        for bad in [
            "",
            "/berth/x",
            "berth//x",
            "berth/",
            "../x",
            "berth/../x",
            "./x",
            "a\0b",
        ] {
            let err = CgroupPath::parse(bad).unwrap_err();
            assert!(
                matches!(&err, CgroupError::InvalidPath { path, .. } if path == bad),
                "{bad:?}: {err}"
            );
        }
    }
}
