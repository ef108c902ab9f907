//! OCI image-spec documents (descriptor, manifest, index) and the media types berth handles,
//! plus the `manifest.json` of `docker save`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::config::oci_arch;
use super::digest::Digest;
use super::error::ImageError;

pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(crate) const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub(crate) const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub(crate) const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub(crate) const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub(crate) const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub(crate) const DOCKER_MANIFEST_LIST: &str =
    "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

/// Annotation holding the full image name (containerd, Docker 25+).
pub(crate) const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";
/// Annotation holding the reference name (OCI).
pub(crate) const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
const ANNOTATION_DOCKER_REF_TYPE: &str = "vnd.docker.reference.type";

/// A content descriptor.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Platform {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
}

/// An image manifest (OCI, or Docker schema 2 which has the same shape).
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Manifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
}

/// An image index (OCI, or a Docker manifest list).
#[derive(Debug, Deserialize)]
pub(crate) struct Index {
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
}

/// One entry of `docker save`'s `manifest.json`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct DockerSaveEntry {
    pub config: String,
    #[serde(default)]
    pub repo_tags: Option<Vec<String>>,
    #[serde(default)]
    pub layers: Vec<String>,
    /// Docker 25+: descriptors of the layers, keyed by diff_id.
    #[serde(default)]
    pub layer_sources: Option<BTreeMap<String, Descriptor>>,
}

/// What a descriptor in an index points at.
pub(crate) enum ManifestKind {
    Image,
    Index,
}

pub(crate) fn manifest_kind(desc: &Descriptor, holder: &Path) -> Result<ManifestKind, ImageError> {
    match desc.media_type.as_str() {
        // Some older layouts leave the media type out of index entries; such an entry is
        // read as an image manifest (and fails to parse, naming its file, if it is not one).
        OCI_MANIFEST | DOCKER_MANIFEST | "" => Ok(ManifestKind::Image),
        OCI_INDEX | DOCKER_MANIFEST_LIST => Ok(ManifestKind::Index),
        other => Err(ImageError::UnsupportedMediaType {
            path: holder.to_owned(),
            what: "manifest",
            digest: desc.digest.clone(),
            media_type: other.to_owned(),
        }),
    }
}

/// Refuses config descriptors that are not image configs (artifacts, Helm charts, ...).
pub(crate) fn check_config_media_type(desc: &Descriptor, holder: &Path) -> Result<(), ImageError> {
    match desc.media_type.as_str() {
        OCI_CONFIG | DOCKER_CONFIG => Ok(()),
        other => Err(ImageError::UnsupportedMediaType {
            path: holder.to_owned(),
            what: "config",
            digest: desc.digest.clone(),
            media_type: other.to_owned(),
        }),
    }
}

/// Checks a layer descriptor's media type: tar and tar+gzip are fine (the real compression is
/// detected from the content), zstd is refused as a compression, anything else as a media type.
pub(crate) fn check_layer_media_type(desc: &Descriptor, holder: &Path) -> Result<(), ImageError> {
    const OK: &[&str] = &[
        OCI_LAYER_TAR,
        OCI_LAYER_GZIP,
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.docker.image.rootfs.diff.tar",
        "application/vnd.docker.image.rootfs.diff.tar.gzip",
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    ];
    let mt = desc.media_type.as_str();
    if OK.contains(&mt) {
        Ok(())
    } else if mt.ends_with("+zstd") || mt.ends_with(".zstd") {
        Err(ImageError::UnsupportedCompression {
            path: holder.to_owned(),
            layer: desc.digest.clone(),
            compression: "zstd",
        })
    } else {
        Err(ImageError::UnsupportedMediaType {
            path: holder.to_owned(),
            what: "layer",
            digest: desc.digest.clone(),
            media_type: mt.to_owned(),
        })
    }
}

/// True for Docker's attestation manifests and other non-runnable index entries.
pub(crate) fn is_attestation(desc: &Descriptor) -> bool {
    let annotated = desc
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_DOCKER_REF_TYPE))
        .is_some();
    let unknown = desc
        .platform
        .as_ref()
        .is_some_and(|p| p.os == "unknown" && p.architecture == "unknown");
    annotated || unknown
}

/// True when a descriptor names no platform or linux on this host's architecture.
pub(crate) fn for_this_host(desc: &Descriptor) -> bool {
    desc.platform
        .as_ref()
        .is_none_or(|p| p.os == "linux" && p.architecture == oci_arch())
}

/// The entry of an index to run on this host: the one for linux on this host's architecture
/// (attestations skipped), else the only entry there is. The error lists what the index has.
pub(crate) fn manifest_for_host(index: &Index) -> Result<&Descriptor, String> {
    let candidates: Vec<&Descriptor> = index
        .manifests
        .iter()
        .filter(|d| !is_attestation(d))
        .collect();
    let chosen = candidates
        .iter()
        .find(|d| d.platform.is_some() && for_this_host(d))
        .or_else(|| (candidates.len() == 1).then(|| &candidates[0]));
    match chosen {
        Some(d) => Ok(d),
        None => {
            let available: Vec<String> = candidates
                .iter()
                .filter_map(|d| d.platform.as_ref())
                .map(|p| format!("{}/{}", p.os, p.architecture))
                .collect();
            Err(format!(
                "index has no manifest for linux/{} (it has: {})",
                oci_arch(),
                available.join(", ")
            ))
        }
    }
}

/// Serialises the manifest berth writes for images it assembles itself (docker-save imports,
/// root file systems).
pub(crate) fn new_manifest_json(
    config: &Digest,
    config_size: u64,
    layers: &[(Digest, u64, &'static str)],
) -> Vec<u8> {
    let desc = |media_type: &str, digest: &Digest, size: u64| Descriptor {
        media_type: media_type.to_owned(),
        digest: digest.to_string(),
        size,
        platform: None,
        annotations: None,
    };
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(OCI_MANIFEST.to_owned()),
        config: desc(OCI_CONFIG, config, config_size),
        layers: layers
            .iter()
            .map(|(digest, size, mt)| desc(mt, digest, *size))
            .collect(),
    };
    serde_json::to_vec(&manifest).expect("serialising a manifest to memory cannot fail")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(mt: &str) -> Descriptor {
        Descriptor {
            media_type: mt.to_owned(),
            digest: "sha256:ab".to_owned(),
            size: 1,
            platform: None,
            annotations: None,
        }
    }

    #[test]
    fn layer_media_types() {
        let p = Path::new("/img/blobs/sha256/m");
        assert!(check_layer_media_type(&layer(OCI_LAYER_GZIP), p).is_ok());
        assert!(check_layer_media_type(&layer(OCI_LAYER_TAR), p).is_ok());
        let zstd = check_layer_media_type(&layer("application/vnd.oci.image.layer.v1.tar+zstd"), p)
            .unwrap_err();
        assert!(
            matches!(zstd, ImageError::UnsupportedCompression { .. }),
            "{zstd}"
        );
        let weird = check_layer_media_type(&layer("application/x-weird"), p).unwrap_err();
        let msg = weird.to_string();
        assert!(
            msg.contains("application/x-weird") && msg.contains("sha256:ab"),
            "{msg}"
        );
    }

    #[test]
    fn manifest_json_round_trips() {
        let c = Digest::of(b"config");
        let l = Digest::of(b"layer");
        let bytes = new_manifest_json(&c, 6, &[(l.clone(), 5, OCI_LAYER_TAR)]);
        let m: Manifest = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(m.config.digest, c.to_string());
        assert_eq!(m.layers[0].digest, l.to_string());
        assert_eq!(m.layers[0].media_type, OCI_LAYER_TAR);
    }
}
