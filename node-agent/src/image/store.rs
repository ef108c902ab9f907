//! The on-disk store: layout, records, tags, and committing or removing images.
//!
//! ```text
//! <root>/lock                      flock(2) taken around every mutation
//! <root>/blobs/sha256/<hex>        configs, manifests, layer blobs (content-addressed)
//! <root>/layers/<diff_id hex>/     each layer unpacked once, shared by all images
//! <root>/images/<id hex>.json      one ImageRecord per image
//! <root>/repositories.json         {"docker.io/library/busybox:latest": "sha256:<id hex>"}
//! <root>/tmp/<unique>/             staging of imports; anything here is garbage once no
//!                                  process holds the lock
//! <root>/downloads/<hex>[.partial|.lock]  blobs being pulled (see `registry::download`)
//! ```
//!
//! Readers (`resolve`, `list`) take no lock: every file they read is replaced by rename.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs::{self, DirBuilder};
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use tracing::{debug, info, warn};

use super::digest::{Digest, is_full_hex, is_hex};
use super::error::ImageError;
use super::fsutil::{StoreLock, read_capped, remove_tree, sync_dir, unique_name, write_atomic};
use super::oci::Manifest;
use super::record::{ImageRecord, InUse, RemoveReport};
use super::reference::{Reference, familiar_of_key};
use super::staging::Staging;

/// Largest JSON document (record, manifest, config) the store reads.
pub(crate) const JSON_CAP: u64 = 16 * 1024 * 1024;
/// Shortest id prefix `resolve` accepts.
const MIN_ID_PREFIX: usize = 4;

/// `repositories.json`: full tag -> image id.
type Repositories = BTreeMap<String, String>;

/// The content-addressed image store of one node.
#[derive(Debug, Clone)]
pub struct ImageStore {
    root: PathBuf,
}

/// An image assembled in staging, ready to commit.
pub(crate) struct PendingImage {
    /// The record; `repo_tags` is filled at commit from `tags`.
    pub record: ImageRecord,
    pub tags: Vec<Reference>,
}

impl ImageStore {
    /// Opens (creating if missing) a store rooted at `root` (e.g. `<state-dir>/images`).
    /// Staging directories left by a crashed import are removed when no other process holds
    /// the store lock.
    pub fn open(root: &Path) -> Result<Self, ImageError> {
        let store = ImageStore {
            root: root.to_owned(),
        };
        for dir in [
            store.root.clone(),
            store.root.join("blobs/sha256"),
            store.root.join("layers"),
            store.root.join("images"),
            store.tmp_dir(),
            store.downloads_dir(),
        ] {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .map_err(|e| ImageError::io("create directory", &dir, e))?;
        }
        if let Some(_lock) = StoreLock::try_acquire(&store.lock_path())? {
            store.clean_tmp();
            super::registry::clean_downloads(&store.downloads_dir());
        }
        Ok(store)
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Unpacked layer directories of an image, bottom layer first (overlayfs wants `lowerdir`
    /// top first: reverse this).
    pub fn layer_dirs(&self, image: &ImageRecord) -> Vec<PathBuf> {
        image
            .diff_ids
            .iter()
            .map(|d| {
                let hex = d.strip_prefix("sha256:").unwrap_or(d);
                self.root.join("layers").join(hex)
            })
            .collect()
    }

    /// Finds an image by `name[:tag]` (tag defaults to `latest`, names normalised like
    /// Docker's), by id `sha256:<hex>` or `<hex>`, or by a unique id prefix of at least 4 hex
    /// digits. A tag wins over an id prefix that happens to look the same.
    pub fn resolve(&self, reference: &str) -> Result<ImageRecord, ImageError> {
        let repos = self.load_repos()?;
        let id = self.resolve_id(reference, &repos)?;
        self.load_record(&id, &repos)?
            .ok_or_else(|| ImageError::NotFound {
                reference: reference.to_owned(),
            })
    }

    /// Every image, newest first.
    pub fn list(&self) -> Result<Vec<ImageRecord>, ImageError> {
        let repos = self.load_repos()?;
        let mut records = Vec::new();
        for hex in self.image_hexes()? {
            if let Some(record) = self.load_record(&format!("sha256:{hex}"), &repos)? {
                records.push(record);
            }
        }
        records.sort_by(|a, b| b.created.cmp(&a.created).then_with(|| a.id.cmp(&b.id)));
        Ok(records)
    }

    /// Points the tag `target` at the image `source` resolves to (moving it if it pointed
    /// elsewhere).
    pub fn tag(&self, source: &str, target: &str) -> Result<(), ImageError> {
        if target.starts_with("sha256:") {
            return Err(ImageError::InvalidReference {
                reference: target.to_owned(),
                reason: "a tag cannot look like an image id".to_owned(),
            });
        }
        let target_ref = Reference::parse(target)?;
        let _lock = self.lock()?;
        let mut repos = self.load_repos()?;
        let id = self.resolve_id(source, &repos)?;
        if self.load_record(&id, &repos)?.is_none() {
            return Err(ImageError::NotFound {
                reference: source.to_owned(),
            });
        }
        repos.insert(target_ref.key(), id.clone());
        self.save_repos(&repos)?;
        info!(image = %id, tag = %target_ref.familiar(), "tagged image");
        Ok(())
    }

    /// Removes a reference. A tag of an image with other tags is only untagged. Otherwise the
    /// image loses all its tags and its record (refused, unless `force`, when `in_use.images`
    /// holds its id), then every layer and blob no remaining image references and
    /// `in_use.layers` does not hold is deleted.
    pub fn remove(
        &self,
        reference: &str,
        in_use: &InUse,
        force: bool,
    ) -> Result<RemoveReport, ImageError> {
        let _lock = self.lock()?;
        let mut repos = self.load_repos()?;
        let as_tag = Reference::parse(reference)
            .ok()
            .map(|r| r.key())
            .filter(|key| repos.contains_key(key));
        let id = match &as_tag {
            Some(key) => repos[key].clone(),
            None => self.resolve_id(reference, &repos)?,
        };
        let tags: Vec<String> = repos
            .iter()
            .filter(|(_, v)| **v == id)
            .map(|(k, _)| k.clone())
            .collect();
        let mut report = RemoveReport::default();

        if let Some(key) = as_tag
            && tags.len() > 1
        {
            repos.remove(&key);
            self.save_repos(&repos)?;
            report.untagged.push(familiar_of_key(&key));
            info!(image = %id, tag = %familiar_of_key(&key), "untagged image");
            return Ok(report);
        }
        if in_use.images.contains(&id) && !force {
            return Err(ImageError::InUse {
                reference: reference.to_owned(),
                id,
            });
        }
        if !tags.is_empty() {
            for key in &tags {
                repos.remove(key);
                report.untagged.push(familiar_of_key(key));
            }
            self.save_repos(&repos)?;
        }
        let hex = id.strip_prefix("sha256:").unwrap_or(&id);
        let record_path = self.image_path(hex);
        match fs::remove_file(&record_path) {
            Ok(()) => sync_dir(&self.root.join("images"))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(ImageError::io("remove", &record_path, e)),
        }
        report.deleted.push(id.clone());
        info!(image = %id, forced = force, "removed image");
        if let Err(e) = self.collect_garbage(in_use, &mut report) {
            warn!(error = %e, "garbage collection stopped; unused layers and blobs stay until the next removal");
        }
        Ok(report)
    }

    pub(crate) fn lock(&self) -> Result<StoreLock, ImageError> {
        StoreLock::acquire(&self.lock_path())
    }

    pub(crate) fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    pub(crate) fn downloads_dir(&self) -> PathBuf {
        self.root.join("downloads")
    }

    /// Where a pull puts the verified blob `digest` until it is committed.
    pub(crate) fn download_path(&self, digest: &Digest) -> PathBuf {
        self.downloads_dir().join(digest.hex())
    }

    pub(crate) fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.blob_path_hex(digest.hex())
    }

    fn blob_path_hex(&self, hex: &str) -> PathBuf {
        self.root.join("blobs/sha256").join(hex)
    }

    pub(crate) fn layer_dir(&self, diff_id: &Digest) -> PathBuf {
        self.root.join("layers").join(diff_id.hex())
    }

    fn image_path(&self, hex: &str) -> PathBuf {
        self.root.join("images").join(format!("{hex}.json"))
    }

    fn repos_path(&self) -> PathBuf {
        self.root.join("repositories.json")
    }

    fn lock_path(&self) -> PathBuf {
        self.root.join("lock")
    }

    /// Moves staged layers and blobs into place, then writes the records, then the tags. Any
    /// failure undoes what this commit moved or wrote. The caller holds the lock.
    pub(crate) fn commit(
        &self,
        _lock: &StoreLock,
        staging: &Staging,
        images: Vec<PendingImage>,
    ) -> Result<Vec<ImageRecord>, ImageError> {
        let mut undo = Undo::default();
        let result = self.commit_steps(staging, &images, &mut undo);
        if result.is_err() {
            undo.roll_back();
        }
        result?;
        let repos = self.load_repos()?;
        let mut out: Vec<ImageRecord> = Vec::new();
        for image in &images {
            if out.iter().any(|r| r.id == image.record.id) {
                continue;
            }
            let record = self.load_record(&image.record.id, &repos)?.ok_or_else(|| {
                ImageError::NotFound {
                    reference: image.record.id.clone(),
                }
            })?;
            info!(image = %record.id, tags = ?record.repo_tags, "imported image");
            out.push(record);
        }
        Ok(out)
    }

    fn commit_steps(
        &self,
        staging: &Staging,
        images: &[PendingImage],
        undo: &mut Undo,
    ) -> Result<(), ImageError> {
        for hex in staging.extracted_layers() {
            let dst = self.root.join("layers").join(hex);
            undo.move_into_place(&staging.layer_path(hex), &dst)?;
        }
        for hex in staging.blobs() {
            undo.move_into_place(&staging.blob_path(hex), &self.blob_path_hex(hex))?;
        }
        sync_dir(&self.root.join("layers"))?;
        sync_dir(&self.root.join("blobs/sha256"))?;

        let mut repos = self.load_repos()?;
        for image in images {
            for tag in &image.tags {
                repos.insert(tag.key(), image.record.id.clone());
            }
        }
        for image in images {
            let mut record = image.record.clone();
            record.repo_tags = tags_of(&repos, &record.id);
            let hex = record.id.strip_prefix("sha256:").unwrap_or(&record.id);
            let path = self.image_path(hex);
            let bytes =
                serde_json::to_vec_pretty(&record).expect("serialising a record cannot fail");
            undo.write(&path, &bytes)?;
        }
        self.save_repos(&repos)
    }

    fn clean_tmp(&self) {
        let tmp = self.tmp_dir();
        let Ok(entries) = fs::read_dir(&tmp) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            match remove_tree(&path).or_else(|_| fs::remove_file(&path)) {
                Ok(()) => debug!(path = %path.display(), "removed stale staging directory"),
                Err(e) => {
                    warn!(path = %path.display(), error = %e, "cannot remove stale staging directory")
                }
            }
        }
    }

    fn resolve_id(&self, reference: &str, repos: &Repositories) -> Result<String, ImageError> {
        if let Some(hex) = reference.strip_prefix("sha256:") {
            return self.id_by_prefix(reference, hex);
        }
        if is_full_hex(reference) {
            return self.id_by_prefix(reference, reference);
        }
        let looks_like_id = is_hex(reference) && reference.len() >= MIN_ID_PREFIX;
        match Reference::parse(reference) {
            Ok(parsed) => match repos.get(&parsed.key()) {
                Some(id) => Ok(id.clone()),
                None if looks_like_id => self.id_by_prefix(reference, reference),
                None => Err(ImageError::NotFound {
                    reference: reference.to_owned(),
                }),
            },
            Err(_) if looks_like_id => self.id_by_prefix(reference, reference),
            Err(e) => Err(e),
        }
    }

    fn id_by_prefix(&self, reference: &str, prefix: &str) -> Result<String, ImageError> {
        let not_found = || ImageError::NotFound {
            reference: reference.to_owned(),
        };
        if !is_hex(prefix) || prefix.len() < MIN_ID_PREFIX {
            return Err(not_found());
        }
        if is_full_hex(prefix) {
            return if self.image_path(prefix).is_file() {
                Ok(format!("sha256:{prefix}"))
            } else {
                Err(not_found())
            };
        }
        let matches: Vec<String> = self
            .image_hexes()?
            .into_iter()
            .filter(|hex| hex.starts_with(prefix))
            .map(|hex| format!("sha256:{hex}"))
            .collect();
        match matches.len() {
            0 => Err(not_found()),
            1 => Ok(matches.into_iter().next().unwrap_or_default()),
            _ => Err(ImageError::AmbiguousId {
                prefix: reference.to_owned(),
                matches,
            }),
        }
    }

    /// Hex ids of all records, sorted.
    fn image_hexes(&self) -> Result<Vec<String>, ImageError> {
        let dir = self.root.join("images");
        let entries = fs::read_dir(&dir).map_err(|e| ImageError::io("list", &dir, e))?;
        let mut hexes = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| ImageError::io("list", &dir, e))?;
            let name = entry.file_name();
            let Some(hex) = name.to_str().and_then(|n| n.strip_suffix(".json")) else {
                continue;
            };
            if is_full_hex(hex) {
                hexes.push(hex.to_owned());
            }
        }
        hexes.sort();
        Ok(hexes)
    }

    /// Reads a record, with `repo_tags` from `repos`; `None` if there is no such record.
    fn load_record(
        &self,
        id: &str,
        repos: &Repositories,
    ) -> Result<Option<ImageRecord>, ImageError> {
        let hex = id.strip_prefix("sha256:").unwrap_or(id);
        let path = self.image_path(hex);
        let bytes = match fs::metadata(&path) {
            Ok(_) => read_capped(&path, &path, JSON_CAP)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(ImageError::io("inspect", &path, e)),
        };
        let mut record: ImageRecord =
            serde_json::from_slice(&bytes).map_err(|source| ImageError::Json {
                path: path.clone(),
                source,
            })?;
        record.repo_tags = tags_of(repos, &record.id);
        Ok(Some(record))
    }

    fn load_repos(&self) -> Result<Repositories, ImageError> {
        let path = self.repos_path();
        match fs::metadata(&path) {
            Ok(_) => {
                let bytes = read_capped(&path, &path, JSON_CAP)?;
                serde_json::from_slice(&bytes).map_err(|source| ImageError::Json { path, source })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Repositories::new()),
            Err(e) => Err(ImageError::io("inspect", &path, e)),
        }
    }

    fn save_repos(&self, repos: &Repositories) -> Result<(), ImageError> {
        let bytes = serde_json::to_vec_pretty(repos).expect("serialising tags cannot fail");
        write_atomic(&self.repos_path(), &bytes)
    }

    /// Deletes layers and blobs that no record references and `in_use` does not hold. A
    /// deletion that fails is logged and retried by the next collection; an error (say, an
    /// unreadable record) stops the collection before it deletes anything it cannot vouch
    /// for. Neither fails the removal that triggered it.
    fn collect_garbage(&self, in_use: &InUse, report: &mut RemoveReport) -> Result<(), ImageError> {
        let repos = self.load_repos()?;
        let mut live_layers: HashSet<String> = in_use
            .layers
            .iter()
            .map(|d| d.strip_prefix("sha256:").unwrap_or(d).to_owned())
            .collect();
        let mut live_blobs: HashSet<String> = HashSet::new();
        let mut blobs_known = true;
        for hex in self.image_hexes()? {
            let Some(record) = self.load_record(&hex, &repos)? else {
                continue;
            };
            live_layers.extend(record.diff_ids.iter().map(|d| strip(d).to_owned()));
            live_blobs.insert(hex);
            match &record.manifest {
                Some(manifest) => {
                    blobs_known &= self.mark_manifest(strip(manifest), &mut live_blobs)
                }
                // Without its manifest, the record's layer blobs are unknown.
                None => blobs_known = false,
            }
        }

        let layers_dir = self.root.join("layers");
        for hex in hex_names(&layers_dir)? {
            if live_layers.contains(&hex) {
                continue;
            }
            let path = layers_dir.join(&hex);
            let doomed = self.tmp_dir().join(format!("gc-{}", unique_name()));
            // Rename first so a crash never leaves a half-deleted layer under its real name.
            let result = fs::rename(&path, &doomed).and_then(|()| remove_tree(&doomed));
            match result {
                Ok(()) => report.deleted.push(format!("sha256:{hex}")),
                Err(e) => warn!(layer = %hex, error = %e, "cannot delete unused layer"),
            }
        }

        if !blobs_known {
            warn!("a manifest could not be read; keeping all blobs");
            return Ok(());
        }
        let blobs_dir = self.root.join("blobs/sha256");
        for hex in hex_names(&blobs_dir)? {
            if !live_blobs.contains(&hex)
                && let Err(e) = fs::remove_file(blobs_dir.join(&hex))
            {
                warn!(blob = %hex, error = %e, "cannot delete unused blob");
            }
        }
        Ok(())
    }

    /// Adds a manifest and the blobs it names to `live`; false if it cannot be read.
    fn mark_manifest(&self, hex: &str, live: &mut HashSet<String>) -> bool {
        live.insert(hex.to_owned());
        let path = self.blob_path_hex(hex);
        let Ok(bytes) = read_capped(&path, &path, JSON_CAP) else {
            return false;
        };
        let Ok(manifest) = serde_json::from_slice::<Manifest>(&bytes) else {
            return false;
        };
        for desc in std::iter::once(&manifest.config).chain(&manifest.layers) {
            live.insert(strip(&desc.digest).to_owned());
        }
        true
    }
}

fn strip(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

fn tags_of(repos: &Repositories, id: &str) -> Vec<String> {
    let tags: BTreeSet<String> = repos
        .iter()
        .filter(|(_, v)| *v == id)
        .map(|(k, _)| familiar_of_key(k))
        .collect();
    tags.into_iter().collect()
}

/// Names in `dir` that are 64-digit hex.
fn hex_names(dir: &Path) -> Result<Vec<String>, ImageError> {
    let entries = fs::read_dir(dir).map_err(|e| ImageError::io("list", dir, e))?;
    Ok(entries
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| is_full_hex(n))
        .collect())
}

/// What a commit changed, to undo it if a later step fails.
#[derive(Default)]
struct Undo {
    /// (placed path, staging path) of layers and blobs moved into the store.
    moved: Vec<(PathBuf, PathBuf)>,
    /// (record path, previous content) of records written.
    written: Vec<(PathBuf, Option<Vec<u8>>)>,
}

impl Undo {
    /// Renames `src` to `dst` unless `dst` already exists (content-addressed: same content).
    fn move_into_place(&mut self, src: &Path, dst: &Path) -> Result<(), ImageError> {
        if fs::symlink_metadata(dst).is_ok() {
            return Ok(());
        }
        fs::rename(src, dst).map_err(|e| ImageError::io("rename into place", dst, e))?;
        self.moved.push((dst.to_owned(), src.to_owned()));
        Ok(())
    }

    fn write(&mut self, path: &Path, bytes: &[u8]) -> Result<(), ImageError> {
        let previous = fs::read(path).ok();
        write_atomic(path, bytes)?;
        self.written.push((path.to_owned(), previous));
        Ok(())
    }

    fn roll_back(self) {
        for (path, previous) in self.written.into_iter().rev() {
            let result = match previous {
                Some(bytes) => write_atomic(&path, &bytes).map_err(|e| e.to_string()),
                None => fs::remove_file(&path).map_err(|e| e.to_string()),
            };
            if let Err(e) = result {
                warn!(path = %path.display(), error = %e, "cannot undo record write");
            }
        }
        for (placed, staged) in self.moved.into_iter().rev() {
            if let Err(e) = fs::rename(&placed, &staged) {
                warn!(path = %placed.display(), error = %e, "cannot undo move; the next removal collects it");
            }
        }
    }
}
