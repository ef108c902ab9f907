//! Importing archives: `docker save` tars (legacy and Docker 25+), OCI image layout
//! directories and OCI image layout tars, optionally gzip-compressed as a whole.
//!
//! An archive file is first unpacked (safely, see [`super::unpack`]) into the staging
//! directory; from then on every format is read as a directory. Files the archive names are
//! resolved inside that directory, following its symbolic links but never leaving it.

use std::fs;
use std::path::{Path, PathBuf};

use tracing::debug;

use super::config::ParsedConfig;
use super::digest::{Digest, HashingReader, is_full_hex};
use super::error::ImageError;
use super::fsutil::{read_capped, resolve_in_root};
use super::layer::{Compression, Decoder, LayerInput, open_detect, stage_layer};
use super::oci::{
    ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME, Descriptor, DockerSaveEntry, Index, Manifest,
    ManifestKind, check_config_media_type, check_layer_media_type, for_this_host, is_attestation,
    manifest_for_host, manifest_kind, new_manifest_json,
};
use super::record::ImageRecord;
use super::reference::Reference;
use super::staging::{StagedLayer, Staging};
use super::store::{ImageStore, JSON_CAP, PendingImage};
use super::unpack::{Mode, unpack};

/// Deepest nesting of indexes followed.
const MAX_INDEX_DEPTH: usize = 4;

impl ImageStore {
    /// Imports every image in an archive or layout, detecting the format: a `docker save` tar
    /// (legacy `manifest.json` + `<id>/layer.tar` + `<hex>.json`, or the Docker 25+ layout
    /// that is an OCI layout plus `manifest.json`), an OCI image layout directory, or an OCI
    /// image layout tar; the tar may be gzip-compressed. Layers may be gzip or uncompressed.
    ///
    /// Everything is verified and unpacked in staging first; the store changes only once the
    /// whole archive is good, and not at all on error.
    pub fn import(&self, path: &Path) -> Result<Vec<ImageRecord>, ImageError> {
        let meta = fs::metadata(path).map_err(|e| ImageError::io("open", path, e))?;
        let lock = self.lock()?;
        let mut staging = Staging::create(&self.tmp_dir())?;
        let source = if meta.is_dir() {
            Source {
                dir: path.to_owned(),
                label: path.to_owned(),
                owned: false,
            }
        } else {
            Source {
                dir: extract_archive(path, &staging)?,
                label: path.to_owned(),
                owned: true,
            }
        };
        let images = if source.dir.join("manifest.json").exists() {
            import_docker_save(self, &mut staging, &source)?
        } else if source.dir.join("index.json").exists() {
            import_oci_layout(self, &mut staging, &source)?
        } else {
            return Err(ImageError::invalid(
                path,
                "not a docker save archive or OCI image layout: it has neither manifest.json nor index.json",
            ));
        };
        if images.is_empty() {
            return Err(ImageError::invalid(path, "the archive holds no image"));
        }
        self.commit(&lock, &staging, images)
    }
}

/// Where an import reads from.
struct Source {
    /// The directory holding the layout.
    dir: PathBuf,
    /// What the user named (the archive or directory), for messages.
    label: PathBuf,
    /// The directory is a staging copy whose files may be moved.
    owned: bool,
}

impl Source {
    fn resolve(&self, rel: &str) -> Result<PathBuf, ImageError> {
        resolve_in_root(&self.dir, rel, &self.label)
    }

    fn label(&self, rel: &str) -> PathBuf {
        self.label.join(rel)
    }

    fn read_json(&self, rel: &str) -> Result<Vec<u8>, ImageError> {
        read_capped(&self.resolve(rel)?, &self.label(rel), JSON_CAP)
    }

    fn blob_rel(digest: &Digest) -> String {
        format!("blobs/sha256/{}", digest.hex())
    }

    /// Reads a small blob (manifest, index, config) and checks its size and digest.
    fn read_blob(
        &self,
        desc: &Descriptor,
        holder: &Path,
    ) -> Result<(Vec<u8>, PathBuf), ImageError> {
        let digest = parse_digest(&desc.digest, holder)?;
        let rel = Self::blob_rel(&digest);
        let label = self.label(&rel);
        let bytes = self.read_json(&rel)?;
        if bytes.len() as u64 != desc.size {
            return Err(ImageError::SizeMismatch {
                path: label,
                digest: desc.digest.clone(),
                expected: desc.size,
                actual: bytes.len() as u64,
            });
        }
        let actual = Digest::of(&bytes);
        if actual != digest {
            return Err(ImageError::DigestMismatch {
                path: label,
                what: "blob",
                expected: digest.to_string(),
                actual: actual.to_string(),
            });
        }
        Ok((bytes, label))
    }
}

fn parse_digest(digest: &str, holder: &Path) -> Result<Digest, ImageError> {
    Digest::parse(digest).map_err(|e| ImageError::invalid(holder, e.to_string()))
}

fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8], path: &Path) -> Result<T, ImageError> {
    serde_json::from_slice(bytes).map_err(|source| ImageError::Json {
        path: path.to_owned(),
        source,
    })
}

/// Unpacks an archive file (tar or tar.gz) into `<staging>/archive`.
fn extract_archive(path: &Path, staging: &Staging) -> Result<PathBuf, ImageError> {
    let (reader, compression) = open_detect(path, path, |compression| {
        ImageError::invalid(
            path,
            format!(
                "archive is {compression}-compressed; only tar and tar.gz archives are supported"
            ),
        )
    })?;
    if compression == Compression::None && !looks_like_tar(reader.buffer()) {
        return Err(ImageError::invalid(
            path,
            "not an image archive: neither a directory, a tar nor a tar.gz",
        ));
    }
    let dest = staging.dir().join("archive");
    fs::create_dir(&dest).map_err(|e| ImageError::io("create directory", &dest, e))?;
    let reader = HashingReader::new(Decoder::new(reader, compression));
    let (_, reader) = unpack(reader, &dest, Mode::Archive, path)?;
    // Reading to the end checks the gzip trailer (CRC and length).
    reader.drain().map_err(|source| ImageError::Read {
        path: path.to_owned(),
        source,
    })?;
    Ok(dest)
}

/// A ustar/GNU header or an all-zero block (an empty tar) at the start.
fn looks_like_tar(head: &[u8]) -> bool {
    head.len() >= 512 && (&head[257..262] == b"ustar" || head[..512].iter().all(|b| *b == 0))
}

/// The 64-hex digest a member's name carries (`<hex>.json`, `blobs/sha256/<hex>`), if any.
fn digest_in_name(rel: &str) -> Option<Digest> {
    let name = Path::new(rel).file_name()?.to_str()?;
    let hex = name.strip_suffix(".json").unwrap_or(name);
    is_full_hex(hex)
        .then(|| Digest::from_hex(hex).ok())
        .flatten()
}

fn import_docker_save(
    store: &ImageStore,
    staging: &mut Staging,
    src: &Source,
) -> Result<Vec<PendingImage>, ImageError> {
    let manifest_label = src.label("manifest.json");
    let entries: Vec<DockerSaveEntry> =
        parse_json(&src.read_json("manifest.json")?, &manifest_label)?;
    let mut images = Vec::new();
    for entry in entries {
        let config_label = src.label(&entry.config);
        let config_bytes = src.read_json(&entry.config)?;
        let id = Digest::of(&config_bytes);
        if let Some(named) = digest_in_name(&entry.config)
            && named != id
        {
            return Err(ImageError::DigestMismatch {
                path: config_label,
                what: "config",
                expected: named.to_string(),
                actual: id.to_string(),
            });
        }
        let parsed = ParsedConfig::parse(&config_bytes, &config_label)?;
        if parsed.diff_ids.len() != entry.layers.len() {
            return Err(ImageError::invalid(
                &manifest_label,
                format!(
                    "image {} lists {} layers but its config {} has {} rootfs.diff_ids",
                    entry.config,
                    entry.layers.len(),
                    entry.config,
                    parsed.diff_ids.len()
                ),
            ));
        }
        let tags = entry
            .repo_tags
            .iter()
            .flatten()
            .map(|t| Reference::parse(t))
            .collect::<Result<Vec<_>, _>>()?;
        let sources = entry.layer_sources.unwrap_or_default();
        for desc in sources.values() {
            check_layer_media_type(desc, &manifest_label)?;
        }

        let mut layers = Vec::new();
        for (rel, diff_id) in entry.layers.iter().zip(&parsed.diff_ids) {
            let desc = sources.get(&diff_id.to_string());
            let blob = match desc {
                Some(d) => Some(parse_digest(&d.digest, &manifest_label)?),
                None => digest_in_name(rel),
            };
            layers.push(stage_layer(
                store,
                staging,
                LayerInput {
                    locate: &|| src.resolve(rel),
                    label: src.label(rel),
                    owned: src.owned,
                    blob,
                    size: desc.map(|d| d.size),
                    diff_id,
                },
            )?);
        }
        let config_digest = staging.add_blob_bytes(&config_bytes)?;
        let manifest =
            staging.add_blob_bytes(&manifest_for(&config_digest, config_bytes.len(), &layers))?;
        images.push(pending(config_digest, manifest, &parsed, &layers, tags));
    }
    Ok(images)
}

fn manifest_for(config: &Digest, config_size: usize, layers: &[StagedLayer]) -> Vec<u8> {
    let descs: Vec<_> = layers
        .iter()
        .map(|l| (l.blob.clone(), l.blob_size, l.media_type))
        .collect();
    new_manifest_json(config, config_size as u64, &descs)
}

pub(crate) fn pending(
    id: Digest,
    manifest: Digest,
    parsed: &ParsedConfig,
    layers: &[StagedLayer],
    tags: Vec<Reference>,
) -> PendingImage {
    PendingImage {
        record: ImageRecord {
            id: id.to_string(),
            repo_tags: Vec::new(),
            diff_ids: parsed.diff_ids.iter().map(ToString::to_string).collect(),
            config: parsed.image_config(),
            created: parsed.doc.created.clone(),
            architecture: parsed.doc.architecture.clone(),
            os: parsed.doc.os.clone(),
            size: layers.iter().map(|l| l.unpacked).sum(),
            manifest: Some(manifest.to_string()),
        },
        tags,
    }
}

fn import_oci_layout(
    store: &ImageStore,
    staging: &mut Staging,
    src: &Source,
) -> Result<Vec<PendingImage>, ImageError> {
    if let Ok(path) = src.resolve("oci-layout") {
        let label = src.label("oci-layout");
        let layout: serde_json::Value = parse_json(&read_capped(&path, &label, JSON_CAP)?, &label)?;
        if layout
            .get("imageLayoutVersion")
            .and_then(|v| v.as_str())
            .is_none()
        {
            return Err(ImageError::invalid(label, "missing imageLayoutVersion"));
        }
    }
    let index_label = src.label("index.json");
    let index: Index = parse_json(&src.read_json("index.json")?, &index_label)?;
    let only_one = index.manifests.len() == 1;
    let mut images = Vec::new();
    for desc in &index.manifests {
        if is_attestation(desc) || (!only_one && !for_this_host(desc)) {
            debug!(digest = %desc.digest, "skipping index entry for another platform");
            continue;
        }
        let tags = names_of(desc, &index_label)?;
        for manifest_desc in image_manifests(src, desc, &index_label, 0)? {
            images.push(import_manifest(
                store,
                staging,
                src,
                &manifest_desc,
                tags.clone(),
            )?);
        }
    }
    Ok(images)
}

/// The tag an index entry carries: `io.containerd.image.name`, else an
/// `org.opencontainers.image.ref.name` that is a full reference (a bare tag like `latest`
/// names no repository, so the image is imported untagged).
fn names_of(desc: &Descriptor, holder: &Path) -> Result<Vec<Reference>, ImageError> {
    let Some(annotations) = &desc.annotations else {
        return Ok(Vec::new());
    };
    if let Some(name) = annotations.get(ANNOTATION_IMAGE_NAME) {
        return Reference::parse(name)
            .map(|r| vec![r])
            .map_err(|e| ImageError::invalid(holder, e.to_string()));
    }
    match annotations.get(ANNOTATION_REF_NAME) {
        Some(name) if name.contains([':', '/']) => Reference::parse(name)
            .map(|r| vec![r])
            .map_err(|e| ImageError::invalid(holder, e.to_string())),
        _ => Ok(Vec::new()),
    }
}

/// The image manifests a descriptor leads to: itself, or through an index the entry for this
/// host's platform.
fn image_manifests(
    src: &Source,
    desc: &Descriptor,
    holder: &Path,
    depth: usize,
) -> Result<Vec<Descriptor>, ImageError> {
    match manifest_kind(desc, holder)? {
        ManifestKind::Image => Ok(vec![desc.clone()]),
        ManifestKind::Index if depth >= MAX_INDEX_DEPTH => {
            Err(ImageError::invalid(holder, "indexes nested too deeply"))
        }
        ManifestKind::Index => {
            let (bytes, label) = src.read_blob(desc, holder)?;
            let index: Index = parse_json(&bytes, &label)?;
            match manifest_for_host(&index) {
                Ok(d) => image_manifests(src, d, &label, depth + 1),
                Err(reason) => Err(ImageError::invalid(label, reason)),
            }
        }
    }
}

fn import_manifest(
    store: &ImageStore,
    staging: &mut Staging,
    src: &Source,
    desc: &Descriptor,
    tags: Vec<Reference>,
) -> Result<PendingImage, ImageError> {
    let holder = src.label("index.json");
    let (manifest_bytes, manifest_label) = src.read_blob(desc, &holder)?;
    let manifest: Manifest = parse_json(&manifest_bytes, &manifest_label)?;
    check_config_media_type(&manifest.config, &manifest_label)?;
    for layer in &manifest.layers {
        check_layer_media_type(layer, &manifest_label)?;
    }
    let (config_bytes, config_label) = src.read_blob(&manifest.config, &manifest_label)?;
    let parsed = ParsedConfig::parse(&config_bytes, &config_label)?;
    if parsed.diff_ids.len() != manifest.layers.len() {
        return Err(ImageError::invalid(
            &manifest_label,
            format!(
                "manifest lists {} layers but config {} has {} rootfs.diff_ids",
                manifest.layers.len(),
                manifest.config.digest,
                parsed.diff_ids.len()
            ),
        ));
    }
    let mut layers = Vec::new();
    for (layer, diff_id) in manifest.layers.iter().zip(&parsed.diff_ids) {
        let blob = parse_digest(&layer.digest, &manifest_label)?;
        let rel = Source::blob_rel(&blob);
        layers.push(stage_layer(
            store,
            staging,
            LayerInput {
                locate: &|| src.resolve(&rel),
                label: src.label(&rel),
                owned: src.owned,
                blob: Some(blob),
                size: Some(layer.size),
                diff_id,
            },
        )?);
    }
    let id = staging.add_blob_bytes(&config_bytes)?;
    let manifest_digest = staging.add_blob_bytes(&manifest_bytes)?;
    Ok(pending(id, manifest_digest, &parsed, &layers, tags))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_in_member_names() {
        let hex = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
        assert_eq!(digest_in_name(&format!("{hex}.json")).unwrap().hex(), hex);
        assert_eq!(
            digest_in_name(&format!("blobs/sha256/{hex}"))
                .unwrap()
                .hex(),
            hex
        );
        assert!(digest_in_name("abc/layer.tar").is_none());
        assert!(digest_in_name("config.json").is_none());
    }
}
