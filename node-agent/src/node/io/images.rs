//! Images: import an archive the client uploads, list the store, remove an image.

use std::path::PathBuf;
use std::sync::Arc;

use berth_proto::v1::{ImageInfo, ImageList, NodeImageRemove, attach_down, attach_up};
use futures::StreamExt;
use tokio::io::AsyncWriteExt;
use tonic::Code;
use tracing::info;

use super::{Down, Up};
use crate::image::{ImageError, ImageRecord};
use crate::node::runtime::RuntimeExecutor;

/// The wire form of a stored image.
fn info(r: &ImageRecord) -> ImageInfo {
    ImageInfo {
        id: r.id.clone(),
        tags: r.repo_tags.clone(),
        size: r.size,
        created: r
            .created
            .as_deref()
            .and_then(berth_runtime::time::parse_rfc3339)
            .map_or(0, |n| i64::try_from(n / 1_000_000_000).unwrap_or(0)),
    }
}

/// The status code an image error stands for.
fn code(e: &ImageError) -> Code {
    match e {
        ImageError::NotFound { .. } => Code::NotFound,
        ImageError::InUse { .. } => Code::FailedPrecondition,
        ImageError::AmbiguousId { .. } | ImageError::InvalidReference { .. } => {
            Code::InvalidArgument
        }
        ImageError::Io { .. } => Code::Internal,
        _ => Code::InvalidArgument,
    }
}

/// Runs `f` off the async threads; its error as a failure frame.
async fn blocking<T: Send + 'static>(
    up: &Up,
    f: impl FnOnce() -> Result<T, ImageError> + Send + 'static,
) -> Option<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Some(v),
        Ok(Err(e)) => {
            up.fail(code(&e), e.to_string()).await;
            None
        }
        Err(e) => {
            up.fail(Code::Internal, format!("the image operation failed: {e}"))
                .await;
            None
        }
    }
}

/// The node's images.
pub(super) async fn list(ex: Arc<RuntimeExecutor>, up: Up) {
    let m = ex.manager();
    if let Some(records) = blocking(&up, move || m.images().list()).await {
        let images = records.iter().map(info).collect();
        up.send(attach_up::Frame::Images(ImageList { images }))
            .await;
    }
}

/// Removes an image (or one of its tags), refused while a container uses it.
pub(super) async fn remove(ex: Arc<RuntimeExecutor>, r: NodeImageRemove, up: Up) {
    let m = ex.manager();
    let removed = blocking(&up, move || {
        let record = m.images().resolve(&r.reference)?;
        let in_use = m.in_use().map_err(|e| ImageError::Io {
            op: "list the containers using",
            path: PathBuf::from(&r.reference),
            source: std::io::Error::other(e.to_string()),
        })?;
        let report = m.images().remove(&r.reference, &in_use, false)?;
        let deleted = report.deleted.first() == Some(&record.id);
        Ok(ImageInfo {
            tags: report.untagged,
            size: if deleted { record.size } else { 0 },
            ..info(&record)
        })
    })
    .await;
    if let Some(image) = removed {
        info!(image = %image.id, untagged = ?image.tags, "image removed on request");
        let images = vec![image];
        up.send(attach_up::Frame::Images(ImageList { images }))
            .await;
    }
}

/// Receives an archive into a temporary file of the store, then imports it; nothing is
/// imported unless the upload completed.
pub(super) async fn import(ex: Arc<RuntimeExecutor>, mut down: Down, up: Up) {
    let m = ex.manager();
    let dir = m.images().tmp_dir();
    let made = tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&dir)?;
        tempfile::Builder::new().prefix("upload-").tempfile_in(&dir)
    })
    .await;
    let file = match made {
        Ok(Ok(f)) => f,
        Ok(Err(e)) => {
            up.fail(Code::Internal, format!("cannot store the upload: {e}"))
                .await;
            return;
        }
        Err(e) => {
            up.fail(Code::Internal, e.to_string()).await;
            return;
        }
    };
    let (std_file, path) = file.into_parts();
    let mut out = tokio::fs::File::from_std(std_file);
    let mut received = 0u64;
    let complete = loop {
        match down.next().await.and_then(|d| d.frame) {
            Some(attach_down::Frame::Data(bytes)) => {
                received += bytes.len() as u64;
                if let Err(e) = out.write_all(&bytes).await {
                    up.fail(Code::Internal, format!("cannot store the upload: {e}"))
                        .await;
                    return;
                }
            }
            Some(attach_down::Frame::DataEnd(complete)) => break complete,
            Some(_) => continue,
            None => break false,
        }
    };
    if !complete {
        up.fail(
            Code::Aborted,
            "the upload was abandoned; nothing was imported",
        )
        .await;
        return;
    }
    if let Err(e) = out.flush().await {
        up.fail(Code::Internal, format!("cannot store the upload: {e}"))
            .await;
        return;
    }
    drop(out);
    let m = ex.manager();
    let imported = blocking(&up, move || {
        let result = m.images().import(&path);
        drop(path);
        result
    })
    .await;
    if let Some(records) = imported {
        info!(
            bytes = received,
            images = records.len(),
            "image archive imported on request"
        );
        let images = records.iter().map(info).collect();
        up.send(attach_up::Frame::Images(ImageList { images }))
            .await;
    }
}
