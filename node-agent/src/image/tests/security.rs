//! Malicious layers and archives: refused by entry name, nothing written outside.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

use tar::EntryType;

use super::fixtures::*;
use crate::image::{ImageError, ImageStore};

/// Imports a legacy docker-save tar with `layer` on top of a harmless one. Expects an unsafe
/// entry error naming `entry`; checks the store is unchanged.
fn refuse_layer(tmp: &Path, store: &ImageStore, layer: Vec<u8>, entry: &str) -> ImageError {
    let spec = ImageSpec::new(
        &["evil:1"],
        vec![
            LayerSpec::plain(simple_layer("harmless")),
            LayerSpec::plain(layer),
        ],
    );
    let src = tmp.join(format!("src-{}", sha(entry.as_bytes())));
    write_legacy(&src, &[spec]);
    let archive = tar_dir(
        &src,
        &tmp.join(format!("{}.tar", sha(entry.as_bytes()))),
        false,
    );
    let before = snapshot(store.root());
    let err = store.import(&archive).unwrap_err();
    assert_eq!(snapshot(store.root()), before, "store changed after: {err}");
    match &err {
        ImageError::UnsafeEntry { entry: e, .. } => assert_eq!(e, entry, "{err}"),
        other => panic!("expected an unsafe entry error for {entry:?}, got {other:?}"),
    }
    assert!(err.to_string().contains(entry), "{err}");
    err
}

/// No file or directory called `name` anywhere under `root`.
fn assert_nowhere(root: &Path, name: &str) {
    let hits: Vec<String> = names_under(root)
        .into_iter()
        .filter(|p| {
            let p = p
                .split(' ')
                .next()
                .unwrap_or_default()
                .trim_end_matches('/');
            Path::new(p).file_name().is_some_and(|n| n == name)
        })
        .collect();
    assert!(hits.is_empty(), "{name} was written: {hits:?}");
}

#[test]
fn parent_dir_entries_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open_store(tmp.path());
    let layer = LayerTar::new()
        .file("ok", b"fine", 0o644)
        .raw("../evil", EntryType::Regular, b"pwned", None)
        .finish();
    let err = refuse_layer(tmp.path(), &store, layer, "../evil");
    assert!(err.to_string().contains(".."), "{err}");
    assert_nowhere(tmp.path(), "evil");
    assert!(!tmp.path().parent().unwrap().join("evil").exists());

    let layer = LayerTar::new()
        .raw("/abs/../../escaped", EntryType::Regular, b"pwned", None)
        .finish();
    refuse_layer(tmp.path(), &store, layer, "/abs/../../escaped");
    assert_nowhere(tmp.path(), "escaped");
    assert!(!Path::new("/escaped").exists());
}

#[test]
fn absolute_and_dot_paths_are_made_relative() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open_store(tmp.path());
    let layer = LayerTar::new()
        .raw("/etc/abs-file", EntryType::Regular, b"abs", None)
        .raw("./rel/dot-file", EntryType::Regular, b"dot", None)
        .finish();
    let spec = ImageSpec::new(&["paths:1"], vec![LayerSpec::plain(layer)]);
    let src = tmp.path().join("src");
    write_legacy(&src, &[spec]);
    let r = store.import(&src).unwrap();
    let dir = &store.layer_dirs(&r[0])[0];
    assert_eq!(fs::read(dir.join("etc/abs-file")).unwrap(), b"abs");
    assert_eq!(fs::read(dir.join("rel/dot-file")).unwrap(), b"dot");
    assert!(!Path::new("/etc/abs-file").exists());
}

#[test]
fn writing_through_a_symlinked_parent_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open_store(tmp.path());
    let outside = tmp.path().join("outside-dir");
    fs::create_dir(&outside).unwrap();
    let layer = LayerTar::new()
        .symlink("link", outside.to_str().unwrap())
        .raw("link/x", EntryType::Regular, b"pwned", None)
        .finish();
    let err = refuse_layer(tmp.path(), &store, layer, "link/x");
    assert!(err.to_string().contains("symbolic link"), "{err}");
    assert!(!outside.join("x").exists(), "canary written outside");
    assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);

    // A relative link climbing out, then a directory entry beneath it.
    let layer = LayerTar::new()
        .symlink("up", "../../../../..")
        .raw("up/tmp/escape-dir/", EntryType::Directory, b"", None)
        .finish();
    refuse_layer(tmp.path(), &store, layer, "up/tmp/escape-dir/");
    assert!(!Path::new("/tmp/escape-dir").exists());
}

#[test]
fn hard_links_out_of_the_layer_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open_store(tmp.path());
    let layer = LayerTar::new()
        .raw("passwd", EntryType::Link, b"", Some("../../etc/passwd"))
        .finish();
    let err = refuse_layer(tmp.path(), &store, layer, "passwd");
    assert!(err.to_string().contains("../../etc/passwd"), "{err}");
    assert_nowhere(store.root(), "passwd");

    // Through a symlink to a directory outside.
    let layer = LayerTar::new()
        .symlink("etc-link", "/etc")
        .raw("stolen", EntryType::Link, b"", Some("etc-link/passwd"))
        .finish();
    let err = refuse_layer(tmp.path(), &store, layer, "stolen");
    assert!(err.to_string().contains("etc-link/passwd"), "{err}");

    // Absolute targets are layer-relative, like entry names: this one does not exist.
    let layer = LayerTar::new()
        .raw("abs", EntryType::Link, b"", Some("/etc/shadow"))
        .finish();
    refuse_layer(tmp.path(), &store, layer, "abs");
}

#[test]
fn a_file_replaces_a_symlink_instead_of_writing_through_it() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open_store(tmp.path());
    let canary = tmp.path().join("canary");
    fs::write(&canary, b"original").unwrap();
    let layer = LayerTar::new()
        .symlink("target", canary.to_str().unwrap())
        .file("target", b"overwritten?", 0o644)
        .symlink("d", tmp.path().to_str().unwrap())
        .dir("d", 0o755)
        .file("d/canary", b"overwritten?", 0o644)
        .finish();
    let spec = ImageSpec::new(&["replace:1"], vec![LayerSpec::plain(layer)]);
    let src = tmp.path().join("src");
    write_legacy(&src, &[spec]);
    let r = store.import(&src).unwrap();
    assert_eq!(fs::read(&canary).unwrap(), b"original");
    let dir = &store.layer_dirs(&r[0])[0];
    assert!(fs::symlink_metadata(dir.join("target")).unwrap().is_file());
    assert!(fs::symlink_metadata(dir.join("d")).unwrap().is_dir());
    assert_eq!(fs::read(dir.join("d/canary")).unwrap(), b"overwritten?");
}

#[test]
fn malicious_outer_archive_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open_store(tmp.path());
    let outside = tmp.path().join("outer-outside");
    fs::create_dir(&outside).unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "../outer-evil",
            LayerTar::new()
                .raw("../outer-evil", EntryType::Regular, b"x", None)
                .finish(),
        ),
        (
            "lnk/manifest.json",
            LayerTar::new()
                .symlink("lnk", outside.to_str().unwrap())
                .raw("lnk/manifest.json", EntryType::Regular, b"[]", None)
                .finish(),
        ),
        (
            "hl",
            LayerTar::new()
                .raw("hl", EntryType::Link, b"", Some("../../../etc/passwd"))
                .finish(),
        ),
    ];
    for (entry, bytes) in cases {
        let path = tmp.path().join("outer.tar");
        fs::write(&path, &bytes).unwrap();
        let before = snapshot(store.root());
        let err = store.import(&path).unwrap_err();
        assert_eq!(snapshot(store.root()), before);
        match &err {
            ImageError::UnsafeEntry {
                entry: e, path: p, ..
            } => {
                assert_eq!(e, entry);
                assert_eq!(p, &path);
            }
            other => panic!("{entry}: {other:?}"),
        }
    }
    assert_nowhere(tmp.path(), "outer-evil");
    assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);
}

#[test]
fn manifest_paths_cannot_leave_the_archive() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open_store(tmp.path());
    let src = tmp.path().join("save");
    let built = write_legacy(
        &src,
        &[ImageSpec::new(
            &["m:1"],
            vec![LayerSpec::plain(simple_layer("m"))],
        )],
    );
    // A config path with '..' in manifest.json.
    let manifest = serde_json::json!([{
        "Config": format!("../{}.json", hex_of(&built[0].id)),
        "RepoTags": ["m:1"], "Layers": ["x/layer.tar"]}]);
    fs::write(
        src.join("manifest.json"),
        serde_json::to_vec(&manifest).unwrap(),
    )
    .unwrap();
    let err = store.import(&src).unwrap_err();
    assert!(err.to_string().contains(".."), "{err}");

    // A layer that is a symlink out of the archive resolves inside it, and is missing there.
    let outside_layer = tmp.path().join("outside-layer.tar");
    fs::write(&outside_layer, simple_layer("m")).unwrap();
    let layer_path = src
        .join(hex_of(&built[0].layers[0].diff_id))
        .join("layer.tar");
    fs::remove_file(&layer_path).unwrap();
    symlink(&outside_layer, &layer_path).unwrap();
    let manifest = serde_json::json!([{
        "Config": format!("{}.json", hex_of(&built[0].id)),
        "RepoTags": ["m:1"],
        "Layers": [format!("{}/layer.tar", hex_of(&built[0].layers[0].diff_id))]}]);
    fs::write(
        src.join("manifest.json"),
        serde_json::to_vec(&manifest).unwrap(),
    )
    .unwrap();
    let err = store.import(&src).unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");
    assert!(store.list().unwrap().is_empty());
}
