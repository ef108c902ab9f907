//! Every archive format imports, layers come out as overlayfs expects, configs are honoured.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use serde_json::json;

use super::fixtures::*;
use crate::image::{ImageConfig, ImageRecord, ImageStore};

fn assert_no_staging_left(store: &ImageStore) {
    let tmp = store.root().join("tmp");
    let left: Vec<_> = fs::read_dir(&tmp).unwrap().collect();
    assert!(left.is_empty(), "staging left behind: {left:?}");
}

fn assert_blobs_present(store: &ImageStore, record: &ImageRecord) {
    let blob = |d: &str| store.root().join("blobs/sha256").join(hex_of(d));
    assert!(blob(&record.id).is_file(), "config blob");
    let manifest = record
        .manifest
        .as_deref()
        .expect("record names its manifest");
    let bytes = fs::read(blob(manifest)).unwrap();
    assert_eq!(sha(&bytes), manifest, "manifest blob is content-addressed");
    let m: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(m["config"]["digest"], json!(record.id));
    let layers = m["layers"].as_array().unwrap();
    assert_eq!(layers.len(), record.diff_ids.len());
    for l in layers {
        let digest = l["digest"].as_str().unwrap();
        let bytes = fs::read(blob(digest)).unwrap();
        assert_eq!(sha(&bytes), digest, "layer blob is content-addressed");
        assert_eq!(l["size"], json!(bytes.len()));
    }
}

fn read(dir: &Path, rel: &str) -> Vec<u8> {
    fs::read(dir.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

#[test]
fn legacy_docker_save_with_whiteouts_opaque_dirs_and_metadata() {
    if !need_root("legacy_docker_save_with_whiteouts_opaque_dirs_and_metadata") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let store = open_store(tmp.path());
    let l1 = LayerTar::new()
        .dir("etc", 0o755)
        .file_owned("etc/secret", b"s3cret", 0o640, 1000, 1001)
        .dir("bin", 0o755)
        .file("bin/tool", b"#!/bin/sh\necho hi\n", 0o4755)
        .symlink("bin/link", "tool")
        .symlink("bin/abs", "/etc/passwd")
        .hardlink("bin/hard", "bin/tool")
        .fifo("run/fifo")
        .char_dev("dev/null", 1, 3)
        .dir("opq", 0o750)
        .file("opq/old", b"old", 0o644)
        .pax_xattr("user.test", b"value")
        .file("etc/with-xattr", b"x", 0o644)
        .pax_xattr("trusted.overlay.opaque", b"y")
        .dir("sneaky", 0o755)
        .finish();
    let l2 = LayerTar::new()
        .dir("etc", 0o755)
        .file("etc/.wh.secret", b"", 0o644)
        .dir("opq", 0o700)
        .file("opq/.wh..wh..opq", b"", 0o644)
        .file("opq/new", b"new", 0o644)
        .file("bin/tool", b"replaced", 0o755)
        .finish();
    let mut spec = ImageSpec::new(
        &["example/app:1.0"],
        vec![LayerSpec::plain(l1.clone()), LayerSpec::plain(l2.clone())],
    );
    spec.config = json!({
        "Entrypoint": ["/bin/tool"], "Cmd": ["--help"], "Env": ["PATH=/bin", "A=b"],
        "WorkingDir": "/work", "User": "1000:1001",
        "ExposedPorts": {"80/tcp": {}, "53/udp": {}}, "StopSignal": "SIGTERM",
        "Labels": {"org.example.role": "test"}, "Volumes": null
    });
    let src = tmp.path().join("save");
    let built = write_legacy(&src, &[spec]);
    let archive = tar_dir(&src, &tmp.path().join("save.tar"), false);

    let records = store.import(&archive).unwrap();
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!(r.id, built[0].id);
    assert_eq!(r.repo_tags, vec!["example/app:1.0".to_owned()]);
    assert_eq!(r.diff_ids, vec![sha(&l1), sha(&l2)]);
    assert_eq!(r.os.as_deref(), Some("linux"));
    assert_eq!(r.created.as_deref(), Some("2024-01-01T00:00:00Z"));
    assert_eq!(
        r.config,
        ImageConfig {
            entrypoint: Some(vec!["/bin/tool".into()]),
            cmd: Some(vec!["--help".into()]),
            env: vec!["PATH=/bin".into(), "A=b".into()],
            working_dir: Some("/work".into()),
            user: Some("1000:1001".into()),
            exposed_ports: ["53/udp".to_owned(), "80/tcp".to_owned()].into(),
            stop_signal: Some("SIGTERM".into()),
            labels: [("org.example.role".to_owned(), "test".to_owned())].into(),
        }
    );
    let file_bytes = (6 + 18 + 3 + 1) + (3 + 8);
    assert_eq!(r.size, file_bytes);

    let dirs = store.layer_dirs(r);
    assert_eq!(
        dirs,
        vec![
            store.root().join("layers").join(hex_of(&sha(&l1))),
            store.root().join("layers").join(hex_of(&sha(&l2))),
        ]
    );
    let (d1, d2) = (&dirs[0], &dirs[1]);

    // Layer 1: files, owners, modes, times, links, devices, xattrs.
    let secret = fs::symlink_metadata(d1.join("etc/secret")).unwrap();
    assert_eq!(read(d1, "etc/secret"), b"s3cret");
    assert_eq!(secret.permissions().mode() & 0o7777, 0o640);
    assert_eq!((secret.uid(), secret.gid()), (1000, 1001));
    assert_eq!(secret.mtime(), MTIME as i64);
    let tool = fs::symlink_metadata(d1.join("bin/tool")).unwrap();
    assert_eq!(
        tool.permissions().mode() & 0o7777,
        0o4755,
        "setuid kept after chown"
    );
    assert_eq!(
        fs::read_link(d1.join("bin/link")).unwrap(),
        Path::new("tool")
    );
    assert_eq!(
        fs::read_link(d1.join("bin/abs")).unwrap(),
        Path::new("/etc/passwd")
    );
    let hard = fs::symlink_metadata(d1.join("bin/hard")).unwrap();
    assert_eq!(hard.ino(), tool.ino(), "hard link shares the inode");
    assert!(
        fs::symlink_metadata(d1.join("run/fifo"))
            .unwrap()
            .file_type()
            .is_fifo()
    );
    let null = fs::symlink_metadata(d1.join("dev/null")).unwrap();
    assert!(null.file_type().is_char_device());
    assert_eq!(null.rdev(), nix::sys::stat::makedev(1, 3));
    let opq = fs::symlink_metadata(d1.join("opq")).unwrap();
    assert_eq!(opq.permissions().mode() & 0o7777, 0o750);
    assert_eq!(
        opq.mtime(),
        MTIME as i64,
        "directory mtime restored after its children"
    );
    assert_eq!(
        xattr::get(d1.join("etc/with-xattr"), "user.test").unwrap(),
        Some(b"value".to_vec())
    );
    assert_eq!(
        xattr::get(d1.join("sneaky"), "trusted.overlay.opaque").unwrap(),
        None,
        "overlay xattrs are never taken from the archive"
    );

    // Layer 2: whiteouts as 0/0 character devices, opaque directory as an xattr.
    let wh = fs::symlink_metadata(d2.join("etc/secret")).unwrap();
    assert!(wh.file_type().is_char_device(), "whiteout is a char device");
    assert_eq!(wh.rdev(), 0, "whiteout is device 0/0");
    assert!(!d2.join("etc/.wh.secret").exists());
    assert_eq!(
        xattr::get(d2.join("opq"), "trusted.overlay.opaque").unwrap(),
        Some(b"y".to_vec())
    );
    assert!(!d2.join("opq/.wh..wh..opq").exists());
    assert_eq!(read(d2, "opq/new"), b"new");
    assert_eq!(read(d2, "bin/tool"), b"replaced");

    assert_blobs_present(&store, r);
    assert_no_staging_left(&store);
}

#[test]
fn docker25_layout_with_gzip_layers() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open_store(tmp.path());
    let l1 = simple_layer("one");
    let l2 = simple_layer("two");
    let spec = ImageSpec::new(
        &["busybox:latest"],
        vec![LayerSpec::gzip(l1.clone()), LayerSpec::gzip(l2.clone())],
    );
    let src = tmp.path().join("save25");
    let built = write_docker25(&src, &[spec]);
    let archive = tar_dir(&src, &tmp.path().join("save25.tar"), false);

    let records = store.import(&archive).unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].id, built[0].id);
    assert_eq!(records[0].repo_tags, vec!["busybox:latest".to_owned()]);
    let r = store.resolve("docker.io/library/busybox").unwrap();
    assert_eq!(r.id, built[0].id);
    let dirs = store.layer_dirs(&r);
    assert_eq!(read(&dirs[0], "data/one"), b"one");
    assert_eq!(read(&dirs[1], "data/two"), b"two");
    // The gzip blobs are kept as they came, under their own digests.
    for l in &built[0].layers {
        let stored = fs::read(store.root().join("blobs/sha256").join(hex_of(&l.digest))).unwrap();
        assert_eq!(stored, l.blob);
    }
    assert_blobs_present(&store, &r);
    assert_no_staging_left(&store);
}

#[test]
fn oci_layout_directory_with_plain_layers_is_copied_not_moved() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open_store(tmp.path());
    let spec = ImageSpec::new(
        &["registry.example:5000/team/web:v2"],
        vec![LayerSpec::plain(simple_layer("web"))],
    );
    let src = tmp.path().join("oci");
    let built = write_oci(&src, &[spec], Naming::RefName);
    let before = snapshot(&src);

    let records = store.import(&src).unwrap();
    assert_eq!(records[0].id, built[0].id);
    assert_eq!(
        records[0].repo_tags,
        vec!["registry.example:5000/team/web:v2".to_owned()]
    );
    assert_eq!(
        records[0].manifest.as_deref(),
        Some(built[0].manifest_digest.as_str()),
        "an OCI manifest is kept as it came"
    );
    assert_eq!(
        snapshot(&src),
        before,
        "the source layout is left untouched"
    );
    let dirs = store.layer_dirs(&records[0]);
    assert_eq!(read(&dirs[0], "data/web"), b"web");
    assert_blobs_present(&store, &records[0]);
}

#[test]
fn oci_layout_tar_gzipped_as_a_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open_store(tmp.path());
    let spec = ImageSpec::new(
        &["docker.io/library/alpine:3.19"],
        vec![LayerSpec::gzip(simple_layer("alpine"))],
    );
    let src = tmp.path().join("oci");
    let built = write_oci(&src, &[spec], Naming::RefName);
    let archive = tar_dir(&src, &tmp.path().join("oci.tar.gz"), true);

    let records = store.import(&archive).unwrap();
    assert_eq!(records[0].id, built[0].id);
    assert_eq!(records[0].repo_tags, vec!["alpine:3.19".to_owned()]);
    assert_eq!(store.resolve("alpine:3.19").unwrap().id, built[0].id);
    assert_no_staging_left(&store);
}

#[test]
fn oci_bare_tag_ref_name_imports_untagged() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open_store(tmp.path());
    let spec = ImageSpec::new(&["latest"], vec![LayerSpec::plain(simple_layer("bare"))]);
    let src = tmp.path().join("oci");
    let built = write_oci(&src, &[spec], Naming::RefName);
    let records = store.import(&src).unwrap();
    assert!(
        records[0].repo_tags.is_empty(),
        "{:?}",
        records[0].repo_tags
    );
    assert_eq!(store.resolve(&built[0].id).unwrap().id, built[0].id);
}

#[test]
fn nested_index_picks_this_hosts_platform() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open_store(tmp.path());
    let spec = ImageSpec::new(&[], vec![LayerSpec::gzip(simple_layer("multi"))]);
    let src = tmp.path().join("oci");
    let built = write_oci(&src, &[spec], Naming::Containerd);
    let b = &built[0];
    let arch = crate::image::config::oci_arch();
    let other = if arch == "s390x" { "riscv64" } else { "s390x" };
    let nested = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json",
             "digest": format!("sha256:{}", "0".repeat(64)), "size": 10,
             "platform": {"os": "linux", "architecture": other}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json",
             "digest": b.manifest_digest, "size": b.manifest.len(),
             "platform": {"os": "linux", "architecture": arch}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json",
             "digest": format!("sha256:{}", "1".repeat(64)), "size": 10,
             "platform": {"os": "unknown", "architecture": "unknown"}},
        ]
    }))
    .unwrap();
    let nested_digest = sha(&nested);
    fs::write(
        src.join("blobs/sha256").join(hex_of(&nested_digest)),
        &nested,
    )
    .unwrap();
    fs::write(
        src.join("index.json"),
        serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": [
            {"mediaType": "application/vnd.oci.image.index.v1+json",
             "digest": nested_digest, "size": nested.len(),
             "annotations": {"io.containerd.image.name": "docker.io/library/multi:1"}}
        ]}))
        .unwrap(),
    )
    .unwrap();

    let records = store.import(&src).unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].id, b.id);
    assert_eq!(records[0].repo_tags, vec!["multi:1".to_owned()]);
}

#[test]
fn shared_layer_is_unpacked_once_and_reused() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open_store(tmp.path());
    let base = simple_layer("base");
    let a = ImageSpec::new(
        &["a:1"],
        vec![
            LayerSpec::plain(base.clone()),
            LayerSpec::plain(simple_layer("a")),
        ],
    );
    let b = ImageSpec::new(
        &["b:1"],
        vec![
            LayerSpec::gzip(base.clone()),
            LayerSpec::plain(simple_layer("b")),
        ],
    );
    write_legacy(&tmp.path().join("a"), &[a]);
    write_oci(&tmp.path().join("b"), &[b], Naming::RefName);

    store.import(&tmp.path().join("a")).unwrap();
    let base_dir = store.root().join("layers").join(hex_of(&sha(&base)));
    fs::write(base_dir.join("marker"), b"kept").unwrap();
    let rb = store.import(&tmp.path().join("b")).unwrap();
    assert_eq!(
        fs::read(base_dir.join("marker")).unwrap(),
        b"kept",
        "an existing layer is reused, not extracted again"
    );
    let layers = fs::read_dir(store.root().join("layers")).unwrap().count();
    assert_eq!(layers, 3, "base, a and b");
    assert_eq!(store.layer_dirs(&rb[0])[0], base_dir);
    assert_eq!(store.list().unwrap().len(), 2);
}

#[test]
fn two_images_in_one_archive_share_a_layer() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open_store(tmp.path());
    let base = simple_layer("base");
    let a = ImageSpec::new(&["a:1"], vec![LayerSpec::plain(base.clone())]);
    let mut b = ImageSpec::new(
        &["b:1", "b:latest"],
        vec![
            LayerSpec::plain(base.clone()),
            LayerSpec::plain(simple_layer("b")),
        ],
    );
    b.created = "2025-01-01T00:00:00Z".into();
    let src = tmp.path().join("save");
    write_legacy(&src, &[a, b]);
    let archive = tar_dir(&src, &tmp.path().join("save.tar"), true);
    let records = store.import(&archive).unwrap();
    assert_eq!(records.len(), 2);
    assert_eq!(
        records[1].repo_tags,
        vec!["b:1".to_owned(), "b:latest".to_owned()]
    );
    assert_eq!(
        store.layer_dirs(&records[0])[0],
        store.layer_dirs(&records[1])[0]
    );
    let listed: Vec<_> = store.list().unwrap().into_iter().map(|r| r.id).collect();
    assert_eq!(
        listed,
        vec![records[1].id.clone(), records[0].id.clone()],
        "newest first"
    );
}

#[test]
fn reimporting_the_same_archive_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open_store(tmp.path());
    let spec = ImageSpec::new(&["same:1"], vec![LayerSpec::gzip(simple_layer("same"))]);
    let src = tmp.path().join("save");
    write_docker25(&src, &[spec]);
    let archive = tar_dir(&src, &tmp.path().join("save.tar"), false);
    let first = store.import(&archive).unwrap();
    let before = snapshot(store.root());
    let second = store.import(&archive).unwrap();
    assert_eq!(first, second);
    assert_eq!(snapshot(store.root()), before);
}
