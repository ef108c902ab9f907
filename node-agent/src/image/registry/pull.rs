//! Pulling an image: resolve the reference to an image manifest (through an index to this
//! host's platform), fetch the config and the layer blobs the store lacks, then stage and
//! commit them exactly as an import does.

use std::fs;
use std::path::{Path, PathBuf};

use futures::{StreamExt, TryStreamExt};
use hyper::header::{ACCEPT, CONTENT_TYPE};
use hyper::{Method, StatusCode};
use tracing::info;

use super::super::config::ParsedConfig;
use super::super::digest::Digest;
use super::super::error::ImageError;
use super::super::fsutil::read_capped;
use super::super::import::pending;
use super::super::layer::{LayerInput, stage_layer};
use super::super::oci::{
    DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, Descriptor, Index, Manifest, OCI_INDEX, OCI_MANIFEST,
    check_config_media_type, check_layer_media_type, manifest_for_host,
};
use super::super::record::ImageRecord;
use super::super::staging::Staging;
use super::super::store::{ImageStore, JSON_CAP};
use super::RegistryConfig;
use super::auth::repository_scope;
use super::client::{Client, Request};
use super::download::{BlobRequest, Fetched, fetch};
use super::error::RegistryError;
use super::progress::{LayerProgress, LayerState, ProgressFn};
use super::reference::RemoteRef;

/// Largest manifest or index accepted (the distribution spec's limit is 4 MiB).
const MANIFEST_CAP: u64 = 4 * 1024 * 1024;
/// Layers fetched at the same time by one pull.
const PARALLEL_LAYERS: usize = 3;

/// Every manifest media type berth reads, for `Accept`.
pub(crate) const ACCEPTED: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

impl ImageStore {
    /// Pulls `reference` (`host[:port]/repository[:tag]` or `...@sha256:<hex>`) from its
    /// registry, and returns the image, tagged with the reference's tag (an image pulled by
    /// digest only is untagged). Layers the store has are not fetched; concurrent pulls of
    /// the same layer fetch it once; every blob is checked against its digest before it is
    /// used. `progress` hears about every layer. On error the store is as it was.
    pub async fn pull(
        &self,
        reference: &str,
        config: &RegistryConfig,
        progress: &ProgressFn<'_>,
    ) -> Result<ImageRecord, ImageError> {
        let remote = RemoteRef::parse(reference)?;
        let client = Client::new(
            &remote.registry,
            remote.endpoint(),
            &remote.repository,
            repository_scope(&remote.repository, false),
            config,
        )?;
        let image = resolve_manifest(&client, &remote).await?;
        let label = PathBuf::from(format!("{remote}@{}", image.digest));
        check_config_media_type(&image.manifest.config, &label)?;
        for layer in &image.manifest.layers {
            check_layer_media_type(layer, &label)?;
        }
        let config_bytes = self.config_blob(&client, &image.manifest.config).await?;
        let parsed = ParsedConfig::parse(&config_bytes, &label)?;
        if parsed.diff_ids.len() != image.manifest.layers.len() {
            return Err(manifest_err(
                &client,
                &remote.manifest_reference(),
                format!(
                    "the manifest lists {} layers but its config has {} rootfs.diff_ids",
                    image.manifest.layers.len(),
                    parsed.diff_ids.len()
                ),
            )
            .into());
        }

        let mut wanted = Vec::new();
        for (desc, diff_id) in image.manifest.layers.iter().zip(&parsed.diff_ids) {
            wanted.push((Digest::parse(&desc.digest)?, desc.size, diff_id.clone()));
        }
        // The futures are made eagerly (a closure mapped over a stream would make the pull's
        // future not `Send` for every lifetime, so it could not be spawned).
        let layer_fetches: Vec<_> = wanted
            .iter()
            .map(|(blob, size, diff_id)| self.fetch_layer(&client, blob, *size, diff_id, progress))
            .collect();
        let fetched: Vec<Fetched> = futures::stream::iter(layer_fetches)
            .buffered(PARALLEL_LAYERS)
            .try_collect()
            .await?;

        let store = self.clone();
        let commit = Commit {
            label,
            layers: wanted,
            fetched,
            config_bytes,
            manifest_bytes: image.bytes,
            parsed,
            tag: remote.store_tag.clone(),
        };
        let record = tokio::task::spawn_blocking(move || store.commit_pull(commit))
            .await
            .map_err(|e| ImageError::io("commit", self.root(), std::io::Error::other(e)))??;
        info!(image = %record.id, reference = %remote, "pulled image");
        Ok(record)
    }

    /// A layer: in the store already, or fetched (once, however many pulls want it).
    async fn fetch_layer(
        &self,
        client: &Client,
        blob: &Digest,
        size: u64,
        diff_id: &Digest,
        progress: &ProgressFn<'_>,
    ) -> Result<Fetched, ImageError> {
        if self.layer_dir(diff_id).is_dir() && self.blob_path(blob).is_file() {
            progress(&LayerProgress {
                digest: blob.to_string(),
                state: LayerState::Cached,
                done: size,
                total: size,
            });
            return Ok(Fetched::InStore);
        }
        fetch(&BlobRequest {
            store: self,
            client,
            digest: blob,
            size,
            progress,
        })
        .await
    }

    /// The config blob, from the store when it has it.
    async fn config_blob(&self, client: &Client, desc: &Descriptor) -> Result<Vec<u8>, ImageError> {
        let digest = Digest::parse(&desc.digest)?;
        let local = self.blob_path(&digest);
        if local.is_file() {
            return read_capped(&local, &local, JSON_CAP);
        }
        let what = format!("config {digest}");
        let target = format!("/v2/{}/blobs/{digest}", client.repository());
        let resp = client
            .send_ok(&Request::new(Method::GET, target, what.clone()), |s| {
                s.is_success()
            })
            .await?;
        let bytes = client.read_body(resp, &what, JSON_CAP).await?;
        verify(client, "config", &digest, desc.size, &bytes)?;
        Ok(bytes)
    }

    /// Stages the layers (hard links of the downloads, or the store's own), the config and
    /// the manifest, and commits, under the store lock.
    fn commit_pull(&self, c: Commit) -> Result<ImageRecord, ImageError> {
        let lock = self.lock()?;
        let mut staging = Staging::create(&self.tmp_dir())?;
        let mut layers = Vec::new();
        for ((blob, size, diff_id), fetched) in c.layers.iter().zip(&c.fetched) {
            let download = match fetched {
                Fetched::File(d) => Some(d.path().to_owned()),
                Fetched::InStore => None,
            };
            let scratch = staging.scratch_path("pull");
            let label = c.label.join(blob.to_string());
            let locate = || link_download(download.as_deref(), &scratch, &label);
            layers.push(stage_layer(
                self,
                &mut staging,
                LayerInput {
                    locate: &locate,
                    label: label.clone(),
                    owned: true,
                    blob: Some(blob.clone()),
                    size: Some(*size),
                    diff_id,
                },
            )?);
        }
        let id = staging.add_blob_bytes(&c.config_bytes)?;
        let manifest = staging.add_blob_bytes(&c.manifest_bytes)?;
        let image = pending(
            id,
            manifest,
            &c.parsed,
            &layers,
            c.tag.into_iter().collect(),
        );
        let mut records = self.commit(&lock, &staging, vec![image])?;
        records
            .pop()
            .ok_or_else(|| ImageError::invalid(&c.label, "the pull committed no image"))
    }
}

/// What a pull hands to its blocking commit.
struct Commit {
    label: PathBuf,
    layers: Vec<(Digest, u64, Digest)>,
    fetched: Vec<Fetched>,
    config_bytes: Vec<u8>,
    manifest_bytes: Vec<u8>,
    parsed: ParsedConfig,
    tag: Option<super::super::reference::Reference>,
}

/// Hard-links a download into the staging directory (staging then owns the link, and the
/// download stays for other pulls sharing it).
fn link_download(
    download: Option<&Path>,
    scratch: &Path,
    label: &Path,
) -> Result<PathBuf, ImageError> {
    let Some(download) = download else {
        return Err(ImageError::invalid(
            label,
            "the blob left the store while this pull was running (an image was removed); pull again",
        ));
    };
    fs::hard_link(download, scratch).map_err(|e| ImageError::io("link", scratch, e))?;
    Ok(scratch.to_owned())
}

/// An image manifest with its bytes and digest.
pub(crate) struct ImageManifest {
    pub manifest: Manifest,
    pub bytes: Vec<u8>,
    pub digest: Digest,
}

/// GETs the manifest the reference names; through an index, the one for this host.
async fn resolve_manifest(
    client: &Client,
    remote: &RemoteRef,
) -> Result<ImageManifest, ImageError> {
    let reference = remote.manifest_reference();
    let (bytes, media_type) = get_manifest(client, &reference).await?;
    let digest = Digest::of(&bytes);
    if let Some(expected) = &remote.digest {
        verify(client, "manifest", expected, bytes.len() as u64, &bytes)?;
    }
    match kind(&media_type, &bytes) {
        Kind::Image => image_manifest(client, &reference, bytes, digest),
        Kind::Index => {
            let index: Index = serde_json::from_slice(&bytes).map_err(|e| {
                manifest_err(client, &reference, format!("invalid index JSON: {e}"))
            })?;
            let desc = manifest_for_host(&index)
                .map_err(|reason| manifest_err(client, &reference, reason))?
                .clone();
            let child = Digest::parse(&desc.digest)?;
            let (bytes, media_type) = get_manifest(client, &child.to_string()).await?;
            verify(client, "manifest", &child, desc.size, &bytes)?;
            match kind(&media_type, &bytes) {
                Kind::Image => image_manifest(client, &child.to_string(), bytes, child),
                Kind::Index => Err(manifest_err(
                    client,
                    &child.to_string(),
                    "an index inside an index is not supported".to_owned(),
                )
                .into()),
                Kind::Other(mt) => Err(unsupported(client, &child.to_string(), &mt).into()),
            }
        }
        Kind::Other(mt) => Err(unsupported(client, &reference, &mt).into()),
    }
}

fn image_manifest(
    client: &Client,
    reference: &str,
    bytes: Vec<u8>,
    digest: Digest,
) -> Result<ImageManifest, ImageError> {
    let manifest: Manifest = serde_json::from_slice(&bytes)
        .map_err(|e| manifest_err(client, reference, format!("invalid manifest JSON: {e}")))?;
    Ok(ImageManifest {
        manifest,
        bytes,
        digest,
    })
}

async fn get_manifest(client: &Client, reference: &str) -> Result<(Vec<u8>, String), ImageError> {
    let what = if reference.starts_with("sha256:") {
        format!("manifest {reference}")
    } else {
        format!("manifest of tag {reference}")
    };
    let target = format!("/v2/{}/manifests/{reference}", client.repository());
    let req = Request::new(Method::GET, target, what.clone()).header(ACCEPT, ACCEPTED);
    let resp = client.send_ok(&req, |s| s == StatusCode::OK).await?;
    let media_type = resp
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or_default().trim().to_owned())
        .unwrap_or_default();
    let bytes = client.read_body(resp, &what, MANIFEST_CAP).await?;
    Ok((bytes, media_type))
}

enum Kind {
    Image,
    Index,
    Other(String),
}

/// What a manifest is: by its `Content-Type`, else by its own `mediaType`, else by shape.
fn kind(content_type: &str, bytes: &[u8]) -> Kind {
    let by_type = |mt: &str| match mt {
        OCI_MANIFEST | DOCKER_MANIFEST => Some(Kind::Image),
        OCI_INDEX | DOCKER_MANIFEST_LIST => Some(Kind::Index),
        _ => None,
    };
    if let Some(k) = by_type(content_type) {
        return k;
    }
    let doc: serde_json::Value = serde_json::from_slice(bytes).unwrap_or_default();
    if let Some(mt) = doc.get("mediaType").and_then(|v| v.as_str()) {
        return by_type(mt).unwrap_or_else(|| Kind::Other(mt.to_owned()));
    }
    if doc.get("manifests").is_some() {
        Kind::Index
    } else if doc.get("layers").is_some() && doc.get("config").is_some() {
        Kind::Image
    } else {
        Kind::Other(content_type.to_owned())
    }
}

fn unsupported(client: &Client, reference: &str, media_type: &str) -> RegistryError {
    let reason = if media_type.contains("manifest.v1") {
        "Docker schema 1 manifests are not supported (push the image again with a current client)"
            .to_owned()
    } else {
        format!("unsupported manifest media type {media_type:?}")
    };
    manifest_err(client, reference, reason)
}

pub(crate) fn manifest_err(client: &Client, reference: &str, reason: String) -> RegistryError {
    RegistryError::Manifest {
        registry: client.registry().to_owned(),
        repository: client.repository().to_owned(),
        reference: reference.to_owned(),
        reason,
    }
}

/// Checks a small blob held in memory against its descriptor.
fn verify(
    client: &Client,
    what: &'static str,
    expected: &Digest,
    size: u64,
    bytes: &[u8],
) -> Result<(), RegistryError> {
    if bytes.len() as u64 != size {
        return Err(RegistryError::SizeMismatch {
            registry: client.registry().to_owned(),
            repository: client.repository().to_owned(),
            what,
            digest: expected.to_string(),
            expected: size,
            actual: bytes.len() as u64,
        });
    }
    let actual = Digest::of(bytes);
    if actual != *expected {
        return Err(RegistryError::DigestMismatch {
            registry: client.registry().to_owned(),
            repository: client.repository().to_owned(),
            what,
            expected: expected.to_string(),
            actual: actual.to_string(),
        });
    }
    Ok(())
}
