//! `berth image push ARCHIVE REF`: the archive read into a throwaway image store on this
//! machine, then pushed to the registry by the agent's registry client (only the blobs the
//! registry lacks are sent).

use berth_agent::image::ImageStore;

use super::Io;
use crate::args::ImagePushArgs;
use crate::error::CliError;
use crate::exit;

/// Runs `berth image push`.
pub async fn run(a: &ImagePushArgs, io: &mut Io<'_>) -> Result<u8, CliError> {
    let fail = |what: String| CliError::Push(what);
    let config =
        berth_agent::cli::registry_config(&a.registry).map_err(|e| fail(format!("{e:#}")))?;
    let dir = tempfile::Builder::new()
        .prefix("berth-push-")
        .tempdir()
        .map_err(|e| fail(format!("a temporary directory: {e}")))?;
    let store = ImageStore::open(dir.path()).map_err(|e| fail(e.to_string()))?;
    let archive = a.archive.clone();
    let (store, records) = tokio::task::spawn_blocking(move || {
        let r = store.import(&archive);
        (store, r)
    })
    .await
    .map_err(|e| fail(e.to_string()))?;
    let records = records.map_err(|e| fail(format!("{}: {e}", a.archive.display())))?;
    let local = match (&a.image, records.as_slice()) {
        (Some(tag), _) => tag.clone(),
        (None, [one]) => one.id.clone(),
        (None, many) => {
            let tags: Vec<String> = many.iter().flat_map(|r| r.repo_tags.clone()).collect();
            return Err(fail(format!(
                "{} holds {} images ({}); say which with --image TAG",
                a.archive.display(),
                many.len(),
                tags.join(", ")
            )));
        }
    };
    let report = store
        .push(&local, &a.reference, &config)
        .await
        .map_err(|e| fail(e.to_string()))?;
    io.print(&format!(
        "pushed {}@{} ({} blobs uploaded, {} already there)\n",
        a.reference,
        report.digest,
        report.uploaded.len(),
        report.skipped.len()
    ))?;
    Ok(exit::OK)
}
