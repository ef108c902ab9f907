//! Image references `name[:tag]`, normalised the way Docker does.
//!
//! `busybox`, `busybox:latest`, `library/busybox` and `docker.io/library/busybox:latest` all
//! name the same tag. The store keys tags by the full form and shows them in the short
//! ("familiar") form, as `docker images` does.

use super::digest::is_full_hex;
use super::error::ImageError;

const DEFAULT_DOMAIN: &str = "docker.io";
const LEGACY_DOMAIN: &str = "index.docker.io";
const OFFICIAL_PREFIX: &str = "library/";
const DEFAULT_TAG: &str = "latest";
const MAX_NAME_LEN: usize = 255;
const MAX_TAG_LEN: usize = 128;

/// A normalised `domain/path:tag` reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Reference {
    domain: String,
    path: String,
    tag: String,
}

impl Reference {
    /// Parses and normalises `name[:tag]`. Digest references (`name@sha256:...`) are refused.
    pub(crate) fn parse(reference: &str) -> Result<Self, ImageError> {
        let bad = |reason: &str| ImageError::InvalidReference {
            reference: reference.to_owned(),
            reason: reason.to_owned(),
        };
        if reference.is_empty() {
            return Err(bad("empty reference"));
        }
        if reference.contains('@') {
            return Err(bad(
                "digest references are not supported; use the image id instead",
            ));
        }
        let (name, tag) = split_tag(reference);
        let tag = tag.unwrap_or(DEFAULT_TAG);
        if !valid_tag(tag) {
            return Err(bad(
                "tag must be 1 to 128 characters of letters, digits, '_', '.' or '-', not starting with '.' or '-'",
            ));
        }
        if name.len() > MAX_NAME_LEN {
            return Err(bad("repository name is longer than 255 characters"));
        }

        let (domain, remainder) = match explicit_domain(name) {
            Some(domain) => (domain, &name[domain.len() + 1..]),
            None => (DEFAULT_DOMAIN, name),
        };
        if !valid_domain(domain) {
            return Err(bad("invalid registry host"));
        }
        if remainder.is_empty() || !remainder.split('/').all(valid_path_component) {
            return Err(bad(
                "repository name must be lowercase letters, digits and separators ('.', '_', '__', '-'), separated by '/'",
            ));
        }
        if is_full_hex(remainder) {
            return Err(bad(
                "a repository name cannot be a 64-digit hex string (that is an image id)",
            ));
        }
        let domain = if domain == LEGACY_DOMAIN {
            DEFAULT_DOMAIN
        } else {
            domain
        };
        let path = if domain == DEFAULT_DOMAIN && !remainder.contains('/') {
            format!("{OFFICIAL_PREFIX}{remainder}")
        } else {
            remainder.to_owned()
        };
        Ok(Reference {
            domain: domain.to_owned(),
            path,
            tag: tag.to_owned(),
        })
    }

    /// The registry host, `docker.io` when the reference names none.
    pub(crate) fn domain(&self) -> &str {
        &self.domain
    }

    /// The repository path inside the registry, `library/busybox`.
    pub(crate) fn path(&self) -> &str {
        &self.path
    }

    /// The tag, `latest` when the reference names none.
    pub(crate) fn tag(&self) -> &str {
        &self.tag
    }

    /// The full form, `docker.io/library/busybox:latest`: the key in `repositories.json`.
    pub(crate) fn key(&self) -> String {
        format!("{}/{}:{}", self.domain, self.path, self.tag)
    }

    /// The short form, `busybox:latest`, as Docker shows it.
    pub(crate) fn familiar(&self) -> String {
        if self.domain != DEFAULT_DOMAIN {
            return self.key();
        }
        let path = match self.path.strip_prefix(OFFICIAL_PREFIX) {
            Some(short) if !short.contains('/') => short,
            _ => &self.path,
        };
        format!("{path}:{}", self.tag)
    }
}

/// Splits `name[:tag]` at the tag's colon (a colon before the last `/` is a port).
pub(crate) fn split_tag(reference: &str) -> (&str, Option<&str>) {
    let last_slash = reference.rfind('/');
    match reference.rfind(':') {
        Some(colon) if last_slash.is_none_or(|slash| colon > slash) => {
            (&reference[..colon], Some(&reference[colon + 1..]))
        }
        _ => (reference, None),
    }
}

/// The registry host a name starts with, if it names one: a first component with a `.` or a
/// `:`, `localhost`, or one with capitals (Docker's rule).
pub(crate) fn explicit_domain(name: &str) -> Option<&str> {
    let (first, _) = name.split_once('/')?;
    (first.contains(['.', ':']) || first == "localhost" || first.to_lowercase() != first)
        .then_some(first)
}

/// The short form of a stored key, or the key itself if it does not parse.
pub(crate) fn familiar_of_key(key: &str) -> String {
    Reference::parse(key)
        .map(|r| r.familiar())
        .unwrap_or_else(|_| key.to_owned())
}

fn valid_tag(tag: &str) -> bool {
    let mut bytes = tag.bytes();
    let Some(first) = bytes.next() else {
        return false;
    };
    tag.len() <= MAX_TAG_LEN
        && (first.is_ascii_alphanumeric() || first == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn valid_domain(domain: &str) -> bool {
    let (host, port) = match domain.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (domain, None),
    };
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    let host_ok = !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    port_ok && host_ok
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`
fn valid_path_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &component[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> String {
        Reference::parse(s).unwrap().key()
    }

    #[test]
    fn normalises_like_docker() {
        let full = "docker.io/library/busybox:latest";
        for s in [
            "busybox",
            "busybox:latest",
            "library/busybox",
            "docker.io/busybox",
            "docker.io/library/busybox:latest",
            "index.docker.io/library/busybox",
        ] {
            assert_eq!(key(s), full, "{s}");
        }
        assert_eq!(key("user/app:1.0"), "docker.io/user/app:1.0");
        assert_eq!(
            key("localhost:5000/app"),
            "localhost:5000/app:latest",
            "a port is not a tag"
        );
        assert_eq!(key("localhost/app:v1"), "localhost/app:v1");
        assert_eq!(key("ghcr.io/org/sub/app:v2"), "ghcr.io/org/sub/app:v2");
    }

    #[test]
    fn familiar_form_drops_default_domain() {
        let f = |s: &str| Reference::parse(s).unwrap().familiar();
        assert_eq!(f("docker.io/library/busybox"), "busybox:latest");
        assert_eq!(f("docker.io/user/app:1"), "user/app:1");
        assert_eq!(f("ghcr.io/org/app:1"), "ghcr.io/org/app:1");
        assert_eq!(
            familiar_of_key("docker.io/library/alpine:3.19"),
            "alpine:3.19"
        );
    }

    #[test]
    fn refuses_malformed_references() {
        for bad in [
            "",
            "Busybox",
            "busy box",
            "busybox:",
            "busybox:-x",
            "busybox@sha256:0000",
            "a//b",
            "-lead",
            "trail-",
            "x/../y",
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
        ] {
            let err = Reference::parse(bad).unwrap_err();
            assert!(
                matches!(&err, ImageError::InvalidReference { reference, .. } if reference == bad),
                "{bad}: {err}"
            );
        }
    }
}
