//! Builders for test layers and archives in every supported format.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::write::GzEncoder;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use tar::{EntryType, Header};

use crate::image::ImageStore;

pub(crate) fn sha(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

pub(crate) fn hex_of(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

pub(crate) fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// Is the test process root? Tests needing mknod or trusted xattrs skip loudly otherwise.
pub(crate) fn need_root(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        true
    } else {
        eprintln!("SKIPPED: {test} needs root");
        false
    }
}

/// A layer tar under construction. Entries get mtime 1_600_000_000 and uid/gid 0 unless set.
pub(crate) struct LayerTar {
    b: tar::Builder<Vec<u8>>,
}

pub(crate) const MTIME: u64 = 1_600_000_000;

fn header(kind: EntryType, mode: u32, size: u64) -> Header {
    let mut h = Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(MTIME);
    h.set_uid(0);
    h.set_gid(0);
    h
}

impl LayerTar {
    pub(crate) fn new() -> Self {
        LayerTar {
            b: tar::Builder::new(Vec::new()),
        }
    }

    pub(crate) fn dir(mut self, path: &str, mode: u32) -> Self {
        let mut h = header(EntryType::Directory, mode, 0);
        self.b.append_data(&mut h, path, &[][..]).unwrap();
        self
    }

    pub(crate) fn file(self, path: &str, data: &[u8], mode: u32) -> Self {
        self.file_owned(path, data, mode, 0, 0)
    }

    pub(crate) fn file_owned(
        mut self,
        path: &str,
        data: &[u8],
        mode: u32,
        uid: u64,
        gid: u64,
    ) -> Self {
        let mut h = header(EntryType::Regular, mode, data.len() as u64);
        h.set_uid(uid);
        h.set_gid(gid);
        self.b.append_data(&mut h, path, data).unwrap();
        self
    }

    pub(crate) fn symlink(mut self, path: &str, target: &str) -> Self {
        let mut h = header(EntryType::Symlink, 0o777, 0);
        self.b.append_link(&mut h, path, target).unwrap();
        self
    }

    pub(crate) fn hardlink(mut self, path: &str, target: &str) -> Self {
        let mut h = header(EntryType::Link, 0o644, 0);
        self.b.append_link(&mut h, path, target).unwrap();
        self
    }

    pub(crate) fn fifo(mut self, path: &str) -> Self {
        let mut h = header(EntryType::Fifo, 0o600, 0);
        self.b.append_data(&mut h, path, &[][..]).unwrap();
        self
    }

    pub(crate) fn char_dev(mut self, path: &str, major: u32, minor: u32) -> Self {
        let mut h = header(EntryType::Char, 0o666, 0);
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        self.b.append_data(&mut h, path, &[][..]).unwrap();
        self
    }

    /// A PAX header with `SCHILY.xattr.<key>` for the next entry.
    pub(crate) fn pax_xattr(mut self, key: &str, value: &[u8]) -> Self {
        let rec_key = format!("SCHILY.xattr.{key}");
        let body = 1 + rec_key.len() + 1 + value.len() + 1;
        let mut len = body + 1;
        while len != body + len.to_string().len() {
            len = body + len.to_string().len();
        }
        let mut data = format!("{len} {rec_key}=").into_bytes();
        data.extend_from_slice(value);
        data.push(b'\n');
        let mut h = Header::new_ustar();
        h.set_entry_type(EntryType::XHeader);
        h.set_size(data.len() as u64);
        h.set_path("PaxHeader").unwrap();
        h.set_cksum();
        self.b.append(&h, &data[..]).unwrap();
        self
    }

    /// An entry written byte for byte, bypassing the tar crate's path checks (for malicious
    /// names such as `../evil`).
    pub(crate) fn raw(
        mut self,
        name: &str,
        kind: EntryType,
        data: &[u8],
        link: Option<&str>,
    ) -> Self {
        let mut h = header(kind, 0o644, data.len() as u64);
        {
            let old = h.as_old_mut();
            old.name = [0; 100];
            old.name[..name.len()].copy_from_slice(name.as_bytes());
            if let Some(link) = link {
                old.linkname = [0; 100];
                old.linkname[..link.len()].copy_from_slice(link.as_bytes());
            }
        }
        h.set_cksum();
        self.b.append(&h, data).unwrap();
        self
    }

    pub(crate) fn finish(self) -> Vec<u8> {
        self.b.into_inner().unwrap()
    }
}

/// One layer of a test image.
#[derive(Clone)]
pub(crate) struct LayerSpec {
    /// The uncompressed tar.
    pub tar: Vec<u8>,
    pub gzip: bool,
    /// Overrides the media type written in OCI manifests.
    pub media_type: Option<&'static str>,
    /// Changes the blob after compression (the descriptor then names the changed bytes).
    pub mangle: Option<fn(&mut Vec<u8>)>,
    /// Replaces the blob with these bytes entirely (e.g. a zstd frame).
    pub blob_override: Option<Vec<u8>>,
}

impl LayerSpec {
    pub(crate) fn plain(tar: Vec<u8>) -> Self {
        LayerSpec {
            tar,
            gzip: false,
            media_type: None,
            mangle: None,
            blob_override: None,
        }
    }

    pub(crate) fn gzip(tar: Vec<u8>) -> Self {
        LayerSpec {
            gzip: true,
            ..LayerSpec::plain(tar)
        }
    }
}

/// A test image.
#[derive(Clone)]
pub(crate) struct ImageSpec {
    pub layers: Vec<LayerSpec>,
    pub tags: Vec<String>,
    /// The `config` object of the image config.
    pub config: Value,
    pub created: String,
    /// Overrides rootfs.diff_ids (to make them lie).
    pub diff_ids_override: Option<Vec<String>>,
}

impl ImageSpec {
    pub(crate) fn new(tags: &[&str], layers: Vec<LayerSpec>) -> Self {
        ImageSpec {
            layers,
            tags: tags.iter().map(|t| t.to_string()).collect(),
            config: json!({"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"]}),
            created: "2024-01-01T00:00:00Z".to_owned(),
            diff_ids_override: None,
        }
    }

    pub(crate) fn build(&self) -> Built {
        let diff_ids: Vec<String> = match &self.diff_ids_override {
            Some(d) => d.clone(),
            None => self.layers.iter().map(|l| sha(&l.tar)).collect(),
        };
        let config = serde_json::to_vec(&json!({
            "architecture": crate::image::config::oci_arch(),
            "os": "linux",
            "created": self.created,
            "config": self.config,
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": [{"created_by": "test"}],
        }))
        .unwrap();
        let layers: Vec<BuiltLayer> = self
            .layers
            .iter()
            .zip(&diff_ids)
            .map(|(l, diff_id)| {
                let mut blob = match &l.blob_override {
                    Some(b) => b.clone(),
                    None if l.gzip => gzip(&l.tar),
                    None => l.tar.clone(),
                };
                if let Some(mangle) = l.mangle {
                    mangle(&mut blob);
                }
                let media_type = l.media_type.unwrap_or(if l.gzip {
                    "application/vnd.oci.image.layer.v1.tar+gzip"
                } else {
                    "application/vnd.oci.image.layer.v1.tar"
                });
                BuiltLayer {
                    digest: sha(&blob),
                    blob,
                    media_type: media_type.to_owned(),
                    diff_id: diff_id.clone(),
                }
            })
            .collect();
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": sha(&config), "size": config.len()},
            "layers": layers.iter().map(|l| json!({
                "mediaType": l.media_type, "digest": l.digest, "size": l.blob.len()})).collect::<Vec<_>>(),
        }))
        .unwrap();
        Built {
            id: sha(&config),
            config,
            layers,
            manifest_digest: String::new(),
            manifest,
        }
        .with_manifest_digest()
    }
}

pub(crate) struct BuiltLayer {
    pub blob: Vec<u8>,
    pub digest: String,
    pub media_type: String,
    pub diff_id: String,
}

pub(crate) struct Built {
    pub id: String,
    pub config: Vec<u8>,
    pub layers: Vec<BuiltLayer>,
    pub manifest: Vec<u8>,
    pub manifest_digest: String,
}

impl Built {
    fn with_manifest_digest(mut self) -> Self {
        self.manifest_digest = sha(&self.manifest);
        self
    }
}

/// Writes a legacy `docker save` layout (`manifest.json`, `<hex>.json`, `<id>/layer.tar`).
pub(crate) fn write_legacy(dir: &Path, images: &[ImageSpec]) -> Vec<Built> {
    fs::create_dir_all(dir).unwrap();
    let mut manifest = Vec::new();
    let mut built = Vec::new();
    for image in images {
        let b = image.build();
        let config_name = format!("{}.json", hex_of(&b.id));
        fs::write(dir.join(&config_name), &b.config).unwrap();
        let mut layer_paths = Vec::new();
        for l in &b.layers {
            let layer_dir = hex_of(&l.diff_id).to_owned();
            fs::create_dir_all(dir.join(&layer_dir)).unwrap();
            fs::write(dir.join(&layer_dir).join("layer.tar"), &l.blob).unwrap();
            fs::write(dir.join(&layer_dir).join("VERSION"), b"1.0").unwrap();
            layer_paths.push(format!("{layer_dir}/layer.tar"));
        }
        manifest
            .push(json!({"Config": config_name, "RepoTags": image.tags, "Layers": layer_paths}));
        built.push(b);
    }
    fs::write(
        dir.join("manifest.json"),
        serde_json::to_vec(&manifest).unwrap(),
    )
    .unwrap();
    built
}

/// How index.json names images.
#[derive(Clone, Copy)]
pub(crate) enum Naming {
    /// `org.opencontainers.image.ref.name` = the full tag.
    RefName,
    /// `io.containerd.image.name` (Docker 25+).
    Containerd,
}

fn write_blob(dir: &Path, digest: &str, bytes: &[u8]) {
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).unwrap();
    fs::write(blobs.join(hex_of(digest)), bytes).unwrap();
}

/// Writes an OCI image layout directory.
pub(crate) fn write_oci(dir: &Path, images: &[ImageSpec], naming: Naming) -> Vec<Built> {
    fs::create_dir_all(dir).unwrap();
    fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let mut manifests = Vec::new();
    let mut built = Vec::new();
    for image in images {
        let b = image.build();
        write_blob(dir, &b.id, &b.config);
        for l in &b.layers {
            write_blob(dir, &l.digest, &l.blob);
        }
        write_blob(dir, &b.manifest_digest, &b.manifest);
        let key = match naming {
            Naming::RefName => "org.opencontainers.image.ref.name",
            Naming::Containerd => "io.containerd.image.name",
        };
        let mut desc = json!({"mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": b.manifest_digest, "size": b.manifest.len()});
        if let Some(tag) = image.tags.first() {
            desc["annotations"] = json!({ key: tag });
        }
        manifests.push(desc);
        built.push(b);
    }
    fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": manifests})).unwrap(),
    )
    .unwrap();
    built
}

/// Writes the Docker 25+ `docker save` layout: an OCI layout plus `manifest.json` pointing at
/// blobs, with `LayerSources`.
pub(crate) fn write_docker25(dir: &Path, images: &[ImageSpec]) -> Vec<Built> {
    let built = write_oci(dir, images, Naming::Containerd);
    let manifest: Vec<Value> = images
        .iter()
        .zip(&built)
        .map(|(image, b)| {
            let sources: serde_json::Map<String, Value> = b
                .layers
                .iter()
                .map(|l| {
                    (
                        l.diff_id.clone(),
                        json!({"mediaType": l.media_type, "size": l.blob.len(), "digest": l.digest}),
                    )
                })
                .collect();
            json!({
                "Config": format!("blobs/sha256/{}", hex_of(&b.id)),
                "RepoTags": image.tags,
                "Layers": b.layers.iter().map(|l| format!("blobs/sha256/{}", hex_of(&l.digest))).collect::<Vec<_>>(),
                "LayerSources": sources,
            })
        })
        .collect();
    fs::write(
        dir.join("manifest.json"),
        serde_json::to_vec(&manifest).unwrap(),
    )
    .unwrap();
    built
}

/// Packs the contents of `dir` into a tar (gzip-compressed when asked) at `out`.
pub(crate) fn tar_dir(dir: &Path, out: &Path, gz: bool) -> PathBuf {
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    b.append_dir_all(".", dir).unwrap();
    let bytes = b.into_inner().unwrap();
    fs::write(out, if gz { gzip(&bytes) } else { bytes }).unwrap();
    out.to_owned()
}

/// Every path under `root` with its type and content digest, sorted: equal snapshots mean
/// the store was left exactly as it was.
pub(crate) fn snapshot(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    walk(root, Path::new(""), &mut out);
    out.sort();
    out
}

fn walk(root: &Path, rel: &Path, out: &mut Vec<String>) {
    let Ok(entries) = fs::read_dir(root.join(rel)) else {
        return;
    };
    for e in entries.flatten() {
        let rel = rel.join(e.file_name());
        let path = root.join(&rel);
        let meta = fs::symlink_metadata(&path).unwrap();
        if meta.is_dir() {
            out.push(format!("{}/", rel.display()));
            walk(root, &rel, out);
        } else if meta.is_file() {
            out.push(format!(
                "{} {}",
                rel.display(),
                sha(&fs::read(&path).unwrap())
            ));
        } else {
            out.push(format!("{} special", rel.display()));
        }
    }
}

/// Names of all files and directories under `root`, for "nothing escaped" checks.
pub(crate) fn names_under(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    walk(root, Path::new(""), &mut out);
    out
}

pub(crate) fn open_store(tmp: &Path) -> ImageStore {
    ImageStore::open(&tmp.join("store")).unwrap()
}

/// A small two-entry layer with distinct content.
pub(crate) fn simple_layer(tag: &str) -> Vec<u8> {
    LayerTar::new()
        .dir("data", 0o755)
        .file(&format!("data/{tag}"), tag.as_bytes(), 0o644)
        .finish()
}
