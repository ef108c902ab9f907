//! Fetching one blob into `<root>/downloads/`, verified while it streams, and at most once at
//! a time however many pulls want it.
//!
//! ```text
//! <root>/downloads/<hex>.lock            flock(2): held while the blob is fetched, and
//!                                        briefly to link or remove <hex>
//! <root>/downloads/<hex>.partial         the bytes so far (never read by anyone)
//! <root>/downloads/<hex>                 the whole blob, its size and sha256 checked
//! <root>/downloads/<hex>.<pid>-<unique>  one pull's own hard link to it, until it commits
//! ```
//!
//! In one process, the first pull to want a blob leads: the others follow its progress
//! through a watch channel and share its verified file ([`Download`], reference-counted;
//! the link goes when the last pull using it is done). Across processes, the lock does the
//! same: a second process waits for the lock, then finds the blob in the store, or the
//! verified `<hex>` the first one left (it links it), or fetches it itself if the first one
//! failed. The lock is never held while waiting for anything else, so pulls cannot deadlock.
//! The committing pull removes `<hex>` once the blob is in the store. A leader that fails or
//! is cancelled leaves its followers to try again themselves. A partial file is never used:
//! a blob only gets its final name after its size and digest are checked.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex, Weak};

use http_body_util::BodyExt;
use hyper::Method;
use nix::fcntl::Flock;
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::sync::watch;
use tracing::{debug, warn};

use super::super::digest::{Digest, is_full_hex};
use super::super::error::ImageError;
use super::super::fsutil::unique_name;
use super::super::store::ImageStore;
use super::client::{Client, Request};
use super::error::RegistryError;
use super::progress::{LayerProgress, LayerState, ProgressFn};

/// How often (in bytes) a download reports progress.
const PROGRESS_STEP: u64 = 256 * 1024;

/// Where a blob a pull needs is.
#[derive(Clone)]
pub(crate) enum Fetched {
    /// In the store already (someone committed it).
    InStore,
    /// Downloaded and verified.
    File(Arc<Download>),
}

/// A pull's own link to a verified blob in `downloads/`. On drop (the last pull of this
/// process using it is done, committed or failed) the link goes, and the shared file too
/// unless another process holds its lock right then.
pub(crate) struct Download {
    path: PathBuf,
    shared: PathBuf,
}

impl Download {
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Download {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_file(&self.path)
            && e.kind() != io::ErrorKind::NotFound
        {
            warn!(path = %self.path.display(), error = %e, "cannot remove a finished download");
        }
        release_shared(&self.shared);
        let mut map = inflight();
        map.retain(|_, slot| !matches!(slot, Slot::Done(w) if w.strong_count() == 0));
    }
}

/// An exclusive `flock` on `<hex>.lock`; the file is removed (while still locked) on drop.
pub(crate) struct BlobLock {
    path: PathBuf,
    _lock: Flock<File>,
}

impl BlobLock {
    /// Waits for the lock. A holder that finished removed the file it locked, so after
    /// locking, the file must still be the one at `path`; otherwise lock again.
    fn acquire(path: &Path) -> Result<Self, ImageError> {
        loop {
            let lock = crate::durable::lock_exclusive(path)?;
            if same_file(&lock, path) {
                return Ok(BlobLock {
                    path: path.to_owned(),
                    _lock: lock,
                });
            }
        }
    }

    /// Takes the lock only if nobody holds it.
    fn try_acquire(path: &Path) -> Result<Option<Self>, ImageError> {
        Ok(crate::durable::try_lock_exclusive(path)?
            .filter(|lock| same_file(lock, path))
            .map(|lock| BlobLock {
                path: path.to_owned(),
                _lock: lock,
            }))
    }
}

fn same_file(lock: &Flock<File>, path: &Path) -> bool {
    match (lock.metadata(), fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
        _ => false,
    }
}

impl Drop for BlobLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// What followers of a download see.
#[derive(Clone)]
enum State {
    Running { done: u64, total: u64 },
    Done(Fetched),
    Failed,
}

/// A blob in the in-process map.
enum Slot {
    Running(watch::Receiver<State>),
    Done(Weak<Download>),
}

/// Downloads of this process, by final path.
static INFLIGHT: LazyLock<Mutex<HashMap<PathBuf, Slot>>> = LazyLock::new(Default::default);

fn inflight() -> std::sync::MutexGuard<'static, HashMap<PathBuf, Slot>> {
    INFLIGHT.lock().unwrap_or_else(|e| e.into_inner())
}

enum Role {
    Lead(watch::Sender<State>),
    Follow(watch::Receiver<State>),
}

/// Removes the leader's slot if the leader ends without saying how (an error, or the pull
/// was cancelled); followers then see the channel close and try themselves.
struct Leading<'a> {
    key: &'a Path,
    tx: Option<watch::Sender<State>>,
}

impl Leading<'_> {
    fn finish(mut self, state: State) {
        let mut map = inflight();
        match &state {
            State::Done(Fetched::File(d)) => {
                map.insert(self.key.to_owned(), Slot::Done(Arc::downgrade(d)));
            }
            _ => {
                map.remove(self.key);
            }
        }
        drop(map);
        if let Some(tx) = self.tx.take() {
            tx.send_replace(state);
        }
    }
}

impl Drop for Leading<'_> {
    fn drop(&mut self) {
        if self.tx.is_some() {
            inflight().remove(self.key);
        }
    }
}

/// One blob to fetch.
pub(crate) struct BlobRequest<'a> {
    pub store: &'a ImageStore,
    pub client: &'a Client,
    pub digest: &'a Digest,
    pub size: u64,
    pub progress: &'a ProgressFn<'a>,
}

/// Fetches a blob unless the store has it or another pull is fetching it; see the module
/// docs.
pub(crate) async fn fetch(req: &BlobRequest<'_>) -> Result<Fetched, ImageError> {
    let key = req.store.download_path(req.digest);
    loop {
        let role = {
            let mut map = inflight();
            match map.get(&key) {
                Some(Slot::Running(rx)) => Role::Follow(rx.clone()),
                Some(Slot::Done(weak)) if weak.strong_count() > 0 => match weak.upgrade() {
                    Some(d) => {
                        report(req, LayerState::Shared, req.size, req.size);
                        return Ok(Fetched::File(d));
                    }
                    None => lead(&mut map, &key, req.size),
                },
                _ => lead(&mut map, &key, req.size),
            }
        };
        match role {
            Role::Follow(rx) => {
                if let Some(fetched) = follow(req, rx).await {
                    return Ok(fetched);
                }
                debug!(blob = %req.digest, "the pull fetching this blob failed; fetching it here");
            }
            Role::Lead(tx) => {
                let leading = Leading {
                    key: &key,
                    tx: Some(tx),
                };
                let result = download(req, &key, leading.tx.as_ref()).await;
                leading.finish(match &result {
                    Ok(fetched) => State::Done(fetched.clone()),
                    Err(_) => State::Failed,
                });
                return result;
            }
        }
    }
}

fn lead(map: &mut HashMap<PathBuf, Slot>, key: &Path, total: u64) -> Role {
    let (tx, rx) = watch::channel(State::Running { done: 0, total });
    map.insert(key.to_owned(), Slot::Running(rx));
    Role::Lead(tx)
}

/// Waits for the leader; `None` if it failed.
async fn follow(req: &BlobRequest<'_>, mut rx: watch::Receiver<State>) -> Option<Fetched> {
    loop {
        let state = rx.borrow_and_update().clone();
        match state {
            State::Running { done, total } => report(req, LayerState::Waiting, done, total),
            State::Done(fetched) => {
                report(req, LayerState::Shared, req.size, req.size);
                return Some(fetched);
            }
            State::Failed => return None,
        }
        if rx.changed().await.is_err() {
            // The leader went away without a result.
            return None;
        }
    }
}

fn report(req: &BlobRequest<'_>, state: LayerState, done: u64, total: u64) {
    (req.progress)(&LayerProgress {
        digest: req.digest.to_string(),
        state,
        done,
        total,
    });
}

/// Takes the blob's lock; unless the store has the blob by then, fetches it (or finds it
/// fetched by another process) and links it under a name of this pull's own.
async fn download(
    req: &BlobRequest<'_>,
    shared: &Path,
    tx: Option<&watch::Sender<State>>,
) -> Result<Fetched, ImageError> {
    if req.store.blob_path(req.digest).is_file() {
        return Ok(Fetched::InStore);
    }
    let lock_path = with_suffix(shared, ".lock");
    let lock = tokio::task::spawn_blocking(move || BlobLock::acquire(&lock_path))
        .await
        .map_err(|e| ImageError::io("lock", shared, io::Error::other(e)))??;
    if req.store.blob_path(req.digest).is_file() {
        return Ok(Fetched::InStore);
    }
    if shared.is_file() {
        debug!(blob = %req.digest, "another process fetched this blob");
        report(req, LayerState::Shared, req.size, req.size);
    } else {
        let partial = Partial(with_suffix(shared, ".partial"));
        let received = stream_to(req, &partial.0, tx).await?;
        fs::rename(&partial.0, shared).map_err(|e| ImageError::io("rename", shared, e))?;
        std::mem::forget(partial);
        report(req, LayerState::Downloaded, received, req.size);
    }
    let own = with_suffix(shared, &format!(".{}", unique_name()));
    fs::hard_link(shared, &own).map_err(|e| ImageError::io("link", &own, e))?;
    drop(lock);
    Ok(Fetched::File(Arc::new(Download {
        path: own,
        shared: shared.to_owned(),
    })))
}

/// Removes a shared download, unless another process holds its lock (it is linking it, or
/// fetching it again); opening the store removes what is left.
fn release_shared(shared: &Path) {
    if !shared.exists() {
        return;
    }
    if let Ok(Some(lock)) = BlobLock::try_acquire(&with_suffix(shared, ".lock")) {
        let _ = fs::remove_file(shared);
        drop(lock);
    }
}

/// Removes a partial download on drop.
struct Partial(PathBuf);

impl Drop for Partial {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// GETs the blob into `dest`, hashing and counting as it comes; refuses a body longer than
/// the descriptor's size as soon as it is, and a wrong size or digest at the end. Returns
/// the bytes received.
async fn stream_to(
    req: &BlobRequest<'_>,
    dest: &Path,
    tx: Option<&watch::Sender<State>>,
) -> Result<u64, ImageError> {
    let client = req.client;
    let digest = req.digest;
    let what = format!("blob {digest}");
    let target = format!("/v2/{}/blobs/{digest}", client.repository());
    let resp = client
        .send_ok(
            &Request::new(Method::GET, target.clone(), what.clone()),
            |s| s.is_success(),
        )
        .await?;
    let io_err = |op, e| ImageError::io(op, dest, e);
    let file = tokio::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(dest)
        .await
        .map_err(|e| io_err("create", e))?;
    let mut out = BufWriter::with_capacity(1024 * 1024, file);
    let mut hasher = Sha256::new();
    let mut body = resp.into_body();
    let (mut done, mut reported) = (0u64, 0u64);
    let size_err = |actual| RegistryError::SizeMismatch {
        registry: client.registry().to_owned(),
        repository: client.repository().to_owned(),
        what: "blob",
        digest: digest.to_string(),
        expected: req.size,
        actual,
    };
    report(req, LayerState::Downloading, 0, req.size);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| client.http_error(&Method::GET, &what, e))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        done += data.len() as u64;
        if done > req.size {
            return Err(size_err(done).into());
        }
        hasher.update(&data);
        out.write_all(&data).await.map_err(|e| io_err("write", e))?;
        if done - reported >= PROGRESS_STEP || done == req.size {
            reported = done;
            report(req, LayerState::Downloading, done, req.size);
            if let Some(tx) = tx {
                tx.send_replace(State::Running {
                    done,
                    total: req.size,
                });
            }
        }
    }
    out.flush().await.map_err(|e| io_err("write", e))?;
    out.get_ref()
        .sync_all()
        .await
        .map_err(|e| io_err("sync", e))?;
    if done != req.size {
        return Err(size_err(done).into());
    }
    let actual = hex::encode(hasher.finalize());
    if actual != digest.hex() {
        return Err(RegistryError::DigestMismatch {
            registry: client.registry().to_owned(),
            repository: client.repository().to_owned(),
            what: "blob",
            expected: digest.to_string(),
            actual: format!("sha256:{actual}"),
        }
        .into());
    }
    Ok(done)
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Removes what finished or crashed pulls left in `dir`: shared and partial downloads whose
/// lock nobody holds, and links of processes that are gone.
pub(crate) fn clean_downloads(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let (hex, rest) = name.split_at(name.len().min(64));
        if !is_full_hex(hex) {
            continue;
        }
        match rest {
            "" | ".partial" => {
                if let Ok(Some(lock)) = BlobLock::try_acquire(&dir.join(format!("{hex}.lock"))) {
                    let _ = fs::remove_file(entry.path());
                    debug!(file = %name, "removed a download a pull left");
                    drop(lock);
                }
            }
            ".lock" => {}
            own => {
                let pid = own
                    .trim_start_matches('.')
                    .split('-')
                    .next()
                    .and_then(|p| p.parse::<i32>().ok());
                let gone = pid.is_some_and(|pid| {
                    pid != std::process::id() as i32
                        && nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_err()
                });
                if gone {
                    let _ = fs::remove_file(entry.path());
                    debug!(file = %name, "removed the download link of a process that is gone");
                }
            }
        }
    }
}
