//! References to images in a registry: `host[:port]/repository[:tag][@sha256:<hex>]`.
//!
//! The name part is validated and normalised by the store's own [`Reference`]; a reference
//! must name its registry host (berth has no default registry).

use super::super::digest::Digest;
use super::super::error::ImageError;
use super::super::reference::{Reference, explicit_domain, split_tag};
use super::error::RegistryError;

/// Docker Hub's name in references, and the host its API answers on.
const DOCKER_HUB: &str = "docker.io";
const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// An image in a registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RemoteRef {
    /// `host[:port]` as written (after Docker's normalisation of `index.docker.io`).
    pub registry: String,
    /// `library/busybox`, `team/app`.
    pub repository: String,
    /// The tag, when the reference names one (or names no digest: then `latest`).
    pub tag: Option<String>,
    /// The manifest digest, when the reference pins one.
    pub digest: Option<Digest>,
    /// The tag as the store keys it, when there is a tag.
    pub store_tag: Option<Reference>,
}

impl RemoteRef {
    /// Parses a reference; one without a registry host is refused.
    pub(crate) fn parse(reference: &str) -> Result<Self, ImageError> {
        let (name_tag, digest) = match reference.split_once('@') {
            Some((n, d)) => {
                let digest = Digest::parse(d).map_err(|e| ImageError::InvalidReference {
                    reference: reference.to_owned(),
                    reason: e.to_string(),
                })?;
                (n, Some(digest))
            }
            None => (reference, None),
        };
        let (name, tag) = split_tag(name_tag);
        if explicit_domain(name).is_none() {
            return Err(RegistryError::NoRegistryHost {
                reference: reference.to_owned(),
            }
            .into());
        }
        let parsed = Reference::parse(name_tag).map_err(|e| match e {
            ImageError::InvalidReference { reason, .. } => ImageError::InvalidReference {
                reference: reference.to_owned(),
                reason,
            },
            other => other,
        })?;
        let has_tag = tag.is_some() || digest.is_none();
        Ok(RemoteRef {
            registry: parsed.domain().to_owned(),
            repository: parsed.path().to_owned(),
            tag: has_tag.then(|| parsed.tag().to_owned()),
            digest,
            store_tag: has_tag.then_some(parsed),
        })
    }

    /// The host to connect to: Docker Hub's API host for `docker.io`, else the registry.
    pub(crate) fn endpoint(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }

    /// What to ask the manifest by: the digest if pinned, else the tag.
    pub(crate) fn manifest_reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_owned(),
        }
    }
}

impl std::fmt::Display for RemoteRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

    #[test]
    fn parses_tags_digests_and_hosts() {
        let r = RemoteRef::parse("127.0.0.1:5000/team/app:v1").unwrap();
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "team/app");
        assert_eq!(r.tag.as_deref(), Some("v1"));
        assert_eq!(r.manifest_reference(), "v1");
        assert_eq!(
            r.store_tag.unwrap().key(),
            "127.0.0.1:5000/team/app:v1".to_owned()
        );

        let r = RemoteRef::parse("localhost:5000/app").unwrap();
        assert_eq!(r.tag.as_deref(), Some("latest"));

        let r = RemoteRef::parse(&format!("reg.example/app@sha256:{HEX}")).unwrap();
        assert_eq!(r.tag, None);
        assert_eq!(r.store_tag, None);
        assert_eq!(r.manifest_reference(), format!("sha256:{HEX}"));

        let r = RemoteRef::parse(&format!("reg.example/app:v2@sha256:{HEX}")).unwrap();
        assert_eq!(r.tag.as_deref(), Some("v2"));
        assert_eq!(r.manifest_reference(), format!("sha256:{HEX}"));
        assert_eq!(r.to_string(), format!("reg.example/app:v2@sha256:{HEX}"));

        let r = RemoteRef::parse("docker.io/busybox").unwrap();
        assert_eq!(r.repository, "library/busybox");
        assert_eq!(r.endpoint(), "registry-1.docker.io");
    }

    #[test]
    fn refuses_references_without_host_or_with_bad_parts() {
        let err = RemoteRef::parse("busybox:1.36").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("\"busybox:1.36\"") && msg.contains("names no registry host"),
            "{msg}"
        );
        let err = RemoteRef::parse("team/app").unwrap_err();
        assert!(err.to_string().contains("names no registry host"), "{err}");
        let err = RemoteRef::parse("reg.example/app@sha256:abc").unwrap_err();
        assert!(matches!(err, ImageError::InvalidReference { .. }), "{err}");
        let err = RemoteRef::parse("reg.example/App:v1").unwrap_err();
        assert!(err.to_string().contains("reg.example/App:v1"), "{err}");
    }
}
