//! Pushing an image: its blobs exactly as the store keeps them (the layer blobs as imported
//! or pulled, compressed or not, the config) and then its manifest, byte for byte, so the
//! image pulled back has the same id, layers and manifest digest.

use std::fs;

use hyper::header::{CONTENT_RANGE, CONTENT_TYPE, LOCATION};
use hyper::{Method, StatusCode};
use tracing::{debug, info};

use super::super::digest::Digest;
use super::super::error::ImageError;
use super::super::fsutil::read_capped;
use super::super::oci::{Manifest, OCI_MANIFEST};
use super::super::store::{ImageStore, JSON_CAP};
use super::RegistryConfig;
use super::auth::{query_escape, repository_scope};
use super::body::Body;
use super::client::{Client, Request, resolve};
use super::error::RegistryError;
use super::reference::RemoteRef;

/// Blobs up to this size go up in one PUT; bigger ones in PATCH chunks of this size.
pub(crate) const DEFAULT_CHUNK: u64 = 64 * 1024 * 1024;

/// What a push did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PushReport {
    /// The manifest's digest, `sha256:<hex>`: `REPOSITORY@<digest>` pulls exactly this image.
    pub digest: String,
    /// Blobs uploaded (layers, then the config).
    pub uploaded: Vec<String>,
    /// Blobs the registry had already.
    pub skipped: Vec<String>,
}

impl ImageStore {
    /// Pushes the local image `local` (a tag or an id) to `target`
    /// (`host[:port]/repository[:tag]`): every blob the registry lacks, then the manifest
    /// under the tag.
    pub async fn push(
        &self,
        local: &str,
        target: &str,
        config: &RegistryConfig,
    ) -> Result<PushReport, ImageError> {
        self.push_chunked(local, target, config, DEFAULT_CHUNK)
            .await
    }

    /// [`ImageStore::push`] with blobs over `chunk` bytes sent in chunks of that size.
    pub(crate) async fn push_chunked(
        &self,
        local: &str,
        target: &str,
        config: &RegistryConfig,
        chunk: u64,
    ) -> Result<PushReport, ImageError> {
        let remote = RemoteRef::parse(target)?;
        let Some(tag) = remote.tag.clone().filter(|_| remote.digest.is_none()) else {
            return Err(ImageError::InvalidReference {
                reference: target.to_owned(),
                reason: "push to a tag (HOST/REPOSITORY:TAG), not a digest".to_owned(),
            });
        };
        let store = self.clone();
        let local_ref = local.to_owned();
        let (manifest_bytes, manifest_digest) =
            tokio::task::spawn_blocking(move || store.manifest_of(&local_ref))
                .await
                .map_err(|e| ImageError::io("read", self.root(), std::io::Error::other(e)))??;
        let label = self.blob_path(&manifest_digest);
        let manifest: Manifest =
            serde_json::from_slice(&manifest_bytes).map_err(|source| ImageError::Json {
                path: label.clone(),
                source,
            })?;
        let client = Client::new(
            &remote.registry,
            remote.endpoint(),
            &remote.repository,
            repository_scope(&remote.repository, true),
            config,
        )?;

        let mut report = PushReport {
            digest: manifest_digest.to_string(),
            ..PushReport::default()
        };
        for desc in manifest
            .layers
            .iter()
            .chain(std::iter::once(&manifest.config))
        {
            let digest = Digest::parse(&desc.digest)?;
            let path = self.blob_path(&digest);
            let size = fs::metadata(&path)
                .map_err(|e| {
                    ImageError::invalid(
                        &path,
                        format!(
                            "the store lacks blob {digest} of image {local} ({e}); import or pull the image again"
                        ),
                    )
                })?
                .len();
            if blob_exists(&client, &digest).await? {
                debug!(blob = %digest, "the registry has this blob");
                report.skipped.push(digest.to_string());
                continue;
            }
            upload(&client, &digest, &path, size, chunk).await?;
            report.uploaded.push(digest.to_string());
        }

        let media_type = manifest.media_type.as_deref().unwrap_or(OCI_MANIFEST);
        let what = format!("manifest {tag}");
        let req = Request::new(
            Method::PUT,
            format!("/v2/{}/manifests/{tag}", remote.repository),
            what.clone(),
        )
        .header(CONTENT_TYPE, media_type)
        .body(Body::Bytes(manifest_bytes.into()));
        let resp = client.send_ok(&req, |s| s.is_success()).await?;
        if let Some(said) = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            && said != report.digest
        {
            return Err(RegistryError::DigestMismatch {
                registry: remote.registry.clone(),
                repository: remote.repository.clone(),
                what: "manifest",
                expected: report.digest.clone(),
                actual: said.to_owned(),
            }
            .into());
        }
        info!(image = %local, target = %remote, digest = %report.digest, uploaded = report.uploaded.len(), "pushed image");
        Ok(report)
    }

    /// The manifest bytes and digest of a local image.
    fn manifest_of(&self, local: &str) -> Result<(Vec<u8>, Digest), ImageError> {
        let record = self.resolve(local)?;
        let Some(manifest) = &record.manifest else {
            return Err(ImageError::invalid(
                self.root().join("images"),
                format!(
                    "image {local} ({}) has no manifest in the store; import it again to push it",
                    record.id
                ),
            ));
        };
        let digest = Digest::parse(manifest)?;
        let path = self.blob_path(&digest);
        Ok((read_capped(&path, &path, JSON_CAP)?, digest))
    }
}

/// HEAD the blob: true if the registry has it.
async fn blob_exists(client: &Client, digest: &Digest) -> Result<bool, ImageError> {
    let req = Request::new(
        Method::HEAD,
        format!("/v2/{}/blobs/{digest}", client.repository()),
        format!("blob {digest}"),
    );
    let resp = client
        .send_ok(&req, |s| s.is_success() || s == StatusCode::NOT_FOUND)
        .await?;
    Ok(resp.status().is_success())
}

/// POST an upload, then PUT the blob in one request, or PATCH it in chunks and PUT the
/// digest.
async fn upload(
    client: &Client,
    digest: &Digest,
    path: &std::path::Path,
    size: u64,
    chunk: u64,
) -> Result<(), ImageError> {
    let what = format!("upload of blob {digest}");
    let start = Request::new(
        Method::POST,
        format!("/v2/{}/blobs/uploads/", client.repository()),
        what.clone(),
    );
    let resp = client
        .send_ok(&start, |s| s == StatusCode::ACCEPTED)
        .await?;
    let mut location = next_location(client, &resp, &what)?;

    let mut offset = 0;
    if size > chunk {
        while offset < size {
            let len = chunk.min(size - offset);
            let req = Request::new(Method::PATCH, location.clone(), what.clone())
                .header(CONTENT_TYPE, "application/octet-stream")
                .header(CONTENT_RANGE, &format!("{offset}-{}", offset + len - 1))
                .body(Body::File {
                    path: path.to_owned(),
                    offset,
                    len,
                });
            let resp = client.send_ok(&req, |s| s == StatusCode::ACCEPTED).await?;
            location = next_location(client, &resp, &what)?;
            offset += len;
        }
    }
    let sep = if location.contains('?') { '&' } else { '?' };
    let url = format!(
        "{location}{sep}digest={}",
        query_escape(&digest.to_string())
    );
    let body = if offset < size {
        Body::File {
            path: path.to_owned(),
            offset: 0,
            len: size,
        }
    } else {
        Body::Empty
    };
    let req = Request::new(Method::PUT, url, what.clone())
        .header(CONTENT_TYPE, "application/octet-stream")
        .body(body);
    client.send_ok(&req, |s| s == StatusCode::CREATED).await?;
    Ok(())
}

/// The absolute upload URL a response's `Location` names.
fn next_location(
    client: &Client,
    resp: &hyper::Response<hyper::body::Incoming>,
    what: &str,
) -> Result<String, ImageError> {
    let location = resp
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| RegistryError::Status {
            registry: client.registry().to_owned(),
            repository: client.repository().to_owned(),
            what: format!("{what} (the answer has no Location)"),
            status: resp.status().as_u16(),
            errors: Default::default(),
        })?;
    if location.starts_with("http://") || location.starts_with("https://") {
        return Ok(location.to_owned());
    }
    let base: hyper::Uri = client
        .base()
        .parse()
        .map_err(|e| ImageError::invalid(client.base(), format!("not a URL: {e}")))?;
    Ok(resolve(&base, location))
}
