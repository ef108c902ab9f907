//! Building image archives in tests: `docker save` archives (legacy layout) from layers
//! described entry by entry, including whiteouts and deliberately malicious entries.

use std::io::Write;
use std::path::Path;

use sha2::{Digest, Sha256};

/// One entry of a layer tar.
#[derive(Debug, Clone)]
pub enum Entry {
    /// A directory.
    Dir(String),
    /// A regular file with contents and mode.
    File(String, Vec<u8>, u32),
    /// A symbolic link `path -> target`.
    Symlink(String, String),
    /// A hard link `path -> target`.
    Hardlink(String, String),
}

/// A layer tar with `entries`, written with raw headers so that hostile paths survive.
pub fn layer_tar(entries: &[Entry]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        let (path, data): (&str, &[u8]) = match e {
            Entry::Dir(p) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                (p, &[])
            }
            Entry::File(p, d, mode) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*mode);
                h.set_size(d.len() as u64);
                (p, d)
            }
            Entry::Symlink(p, t) | Entry::Hardlink(p, t) => {
                h.set_entry_type(if matches!(e, Entry::Symlink(..)) {
                    tar::EntryType::Symlink
                } else {
                    tar::EntryType::Link
                });
                h.set_mode(0o777);
                h.set_size(0);
                set_raw_link(&mut h, t);
                (p, &[])
            }
        };
        set_raw_path(&mut h, path);
        h.set_cksum();
        b.append(&h, data).expect("append");
    }
    b.into_inner().expect("finish tar")
}

fn set_raw_path(h: &mut tar::Header, path: &str) {
    let name = &mut h.as_old_mut().name;
    name.fill(0);
    name[..path.len()].copy_from_slice(path.as_bytes());
}

fn set_raw_link(h: &mut tar::Header, target: &str) {
    let name = &mut h.as_old_mut().linkname;
    name.fill(0);
    name[..target.len()].copy_from_slice(target.as_bytes());
}

/// `sha256:<hex>`.
pub fn digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// Writes a legacy `docker save` archive with `layers` (bottom first) tagged `tag`, with
/// the given image config (`Cmd` etc.) merged into the `config` object.
pub fn write_docker_save(path: &Path, tag: &str, layers: &[Vec<u8>], config: serde_json::Value) {
    let diff_ids: Vec<String> = layers.iter().map(|l| digest(l)).collect();
    let cfg = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "created": "2026-01-01T00:00:00Z",
        "config": config,
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
    });
    let cfg_bytes = serde_json::to_vec(&cfg).expect("config json");
    let cfg_name = format!("{}.json", &digest(&cfg_bytes)[7..]);
    let layer_names: Vec<String> = layers
        .iter()
        .map(|l| format!("{}/layer.tar", &digest(l)[7..]))
        .collect();
    let manifest =
        serde_json::json!([{ "Config": cfg_name, "RepoTags": [tag], "Layers": layer_names }]);

    let mut b = tar::Builder::new(std::fs::File::create(path).expect("create archive"));
    let mut add = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, name, data).expect("append");
    };
    for (l, name) in layers.iter().zip(&layer_names) {
        add(name, l);
    }
    add(&cfg_name, &cfg_bytes);
    add(
        "manifest.json",
        &serde_json::to_vec(&manifest).expect("manifest"),
    );
    b.into_inner().expect("finish").flush().expect("flush");
}

/// A layer tar of everything under `dir` (paths relative to it; symbolic links kept as
/// links), entries in name order with fixed times, so the same tree gives the same bytes.
pub fn dir_tar(dir: &Path) -> Vec<u8> {
    fn walk(dir: &Path, rel: &Path, out: &mut Vec<std::path::PathBuf>) {
        let mut names: Vec<_> = std::fs::read_dir(dir.join(rel))
            .expect("read directory")
            .map(|e| e.expect("entry").file_name())
            .collect();
        names.sort();
        for n in names {
            let r = rel.join(n);
            out.push(r.clone());
            let meta = std::fs::symlink_metadata(dir.join(&r)).expect("metadata");
            if meta.is_dir() {
                walk(dir, &r, out);
            }
        }
    }
    let mut paths = Vec::new();
    walk(dir, Path::new(""), &mut paths);
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    b.mode(tar::HeaderMode::Deterministic);
    for p in paths {
        b.append_path_with_name(dir.join(&p), &p)
            .expect("append to the layer");
    }
    b.into_inner().expect("finish tar")
}
