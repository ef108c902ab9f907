//! Images made from a root file system directory or tar.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt, symlink};
use std::path::Path;

use nix::sys::stat::{Mode, SFlag, makedev, mknod};
use tar::EntryType;

use super::fixtures::*;
use crate::image::{DEFAULT_PATH_ENV, ImageConfig, ImageError};

fn sample_tree(root: &Path) {
    fs::create_dir_all(root.join("bin")).unwrap();
    fs::create_dir_all(root.join("etc/conf.d")).unwrap();
    fs::write(root.join("bin/app"), b"#!/bin/sh\nexec true\n").unwrap();
    fs::set_permissions(root.join("bin/app"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(root.join("etc/conf.d/app.conf"), b"key=value\n").unwrap();
    fs::set_permissions(root.join("etc/conf.d"), fs::Permissions::from_mode(0o700)).unwrap();
    fs::hard_link(root.join("bin/app"), root.join("bin/app-alias")).unwrap();
    symlink("/etc/passwd", root.join("etc/passwd-link")).unwrap();
    symlink("app", root.join("bin/rel-link")).unwrap();
    nix::unistd::mkfifo(&root.join("etc/fifo"), Mode::from_bits_truncate(0o600)).unwrap();
}

#[test]
fn directory_rootfs_becomes_a_one_layer_image() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open_store(tmp.path());
    let rootfs = tmp.path().join("rootfs");
    sample_tree(&rootfs);
    let config = ImageConfig {
        entrypoint: Some(vec!["/bin/app".into()]),
        cmd: Some(vec!["serve".into()]),
        env: vec!["MODE=prod".into()],
        working_dir: Some("/srv".into()),
        user: Some("65534".into()),
        exposed_ports: ["8080/tcp".to_owned()].into(),
        stop_signal: Some("SIGINT".into()),
        labels: [("tier".to_owned(), "web".to_owned())].into(),
    };

    let r = store
        .import_rootfs(&rootfs, "local/app:dev", config.clone())
        .unwrap();
    assert_eq!(r.repo_tags, vec!["local/app:dev".to_owned()]);
    assert_eq!(r.diff_ids.len(), 1);
    assert_eq!(r.os.as_deref(), Some("linux"));
    assert_eq!(
        r.architecture.as_deref(),
        Some(crate::image::config::oci_arch())
    );
    let created = r.created.clone().unwrap();
    assert!(created.ends_with('Z') && created.len() == 20, "{created}");
    assert_eq!(
        r.config,
        ImageConfig {
            env: vec![DEFAULT_PATH_ENV.to_owned(), "MODE=prod".to_owned()],
            ..config
        }
    );
    assert_eq!(r.size, 20 + 10);
    assert_eq!(store.resolve("docker.io/local/app:dev").unwrap(), r);

    // The config blob is the id; the layer blob is the uncompressed tar whose digest is the diff_id.
    let blobs = store.root().join("blobs/sha256");
    assert_eq!(sha(&fs::read(blobs.join(hex_of(&r.id))).unwrap()), r.id);
    let layer_blob = fs::read(blobs.join(hex_of(&r.diff_ids[0]))).unwrap();
    assert_eq!(sha(&layer_blob), r.diff_ids[0]);
    assert!(blobs.join(hex_of(r.manifest.as_deref().unwrap())).is_file());

    let dir = &store.layer_dirs(&r)[0];
    assert_eq!(
        fs::read(dir.join("bin/app")).unwrap(),
        b"#!/bin/sh\nexec true\n"
    );
    let app = fs::metadata(dir.join("bin/app")).unwrap();
    assert_eq!(app.permissions().mode() & 0o7777, 0o755);
    assert_eq!(
        fs::metadata(dir.join("bin/app-alias")).unwrap().ino(),
        app.ino()
    );
    assert_eq!(
        fs::read_link(dir.join("etc/passwd-link")).unwrap(),
        Path::new("/etc/passwd"),
        "symlinks are kept, not followed"
    );
    assert_eq!(
        fs::read_link(dir.join("bin/rel-link")).unwrap(),
        Path::new("app")
    );
    let conf_d = fs::metadata(dir.join("etc/conf.d")).unwrap();
    assert_eq!(conf_d.permissions().mode() & 0o7777, 0o700);
    if nix::unistd::geteuid().is_root() {
        assert!(
            fs::symlink_metadata(dir.join("etc/fifo"))
                .unwrap()
                .file_type()
                .is_fifo()
        );
    }
    assert_eq!(fs::read_dir(store.root().join("tmp")).unwrap().count(), 0);
}

#[test]
fn directory_rootfs_keeps_device_nodes() {
    if !need_root("directory_rootfs_keeps_device_nodes") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let store = open_store(tmp.path());
    let rootfs = tmp.path().join("rootfs");
    fs::create_dir_all(rootfs.join("dev")).unwrap();
    mknod(
        &rootfs.join("dev/null"),
        SFlag::S_IFCHR,
        Mode::from_bits_truncate(0o666),
        makedev(1, 3),
    )
    .unwrap();
    fs::set_permissions(rootfs.join("dev/null"), fs::Permissions::from_mode(0o666)).unwrap();
    let r = store
        .import_rootfs(&rootfs, "devs", ImageConfig::default())
        .unwrap();
    let null = fs::symlink_metadata(store.layer_dirs(&r)[0].join("dev/null")).unwrap();
    assert!(null.file_type().is_char_device());
    assert_eq!(null.rdev(), makedev(1, 3));
    assert_eq!(null.permissions().mode() & 0o7777, 0o666);
}

#[test]
fn tar_and_tar_gz_rootfs() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open_store(tmp.path());
    let tar = LayerTar::new()
        .dir("usr", 0o755)
        .file("usr/hello", b"hello", 0o644)
        .finish();
    let plain = tmp.path().join("rootfs.tar");
    fs::write(&plain, &tar).unwrap();
    let gz = tmp.path().join("rootfs.tar.gz");
    fs::write(&gz, gzip(&tar)).unwrap();

    let a = store
        .import_rootfs(&plain, "from-tar", ImageConfig::default())
        .unwrap();
    assert_eq!(
        a.diff_ids,
        vec![sha(&tar)],
        "an uncompressed tar is the layer as is"
    );
    let b = store
        .import_rootfs(&gz, "from-gz:1", ImageConfig::default())
        .unwrap();
    assert_eq!(b.diff_ids, a.diff_ids);
    assert_eq!(
        store.layer_dirs(&a),
        store.layer_dirs(&b),
        "one shared layer"
    );
    assert_eq!(
        fs::read(store.layer_dirs(&b)[0].join("usr/hello")).unwrap(),
        b"hello"
    );
    assert_eq!(a.config.env, vec![DEFAULT_PATH_ENV.to_owned()]);
}

#[test]
fn bad_rootfs_inputs_leave_the_store_unchanged() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open_store(tmp.path());
    let ok = tmp.path().join("ok");
    fs::create_dir(&ok).unwrap();
    fs::write(ok.join("f"), b"f").unwrap();
    store
        .import_rootfs(&ok, "ok", ImageConfig::default())
        .unwrap();
    let before = snapshot(store.root());

    let err = store
        .import_rootfs(&ok, "Bad:Ref", ImageConfig::default())
        .unwrap_err();
    assert!(
        matches!(&err, ImageError::InvalidReference { reference, .. } if reference == "Bad:Ref"),
        "{err}"
    );

    let evil = tmp.path().join("evil.tar");
    fs::write(
        &evil,
        LayerTar::new()
            .raw("../rootfs-evil", EntryType::Regular, b"x", None)
            .finish(),
    )
    .unwrap();
    match store
        .import_rootfs(&evil, "evil", ImageConfig::default())
        .unwrap_err()
    {
        ImageError::UnsafeEntry { entry, path, .. } => {
            assert_eq!(entry, "../rootfs-evil");
            assert_eq!(path, evil);
        }
        other => panic!("{other:?}"),
    }
    assert!(!tmp.path().join("rootfs-evil").exists());
    assert!(!store.root().join("tmp/rootfs-evil").exists());

    let zstd = tmp.path().join("rootfs.tar.zst");
    fs::write(&zstd, [0x28, 0xb5, 0x2f, 0xfd, 0, 0, 0, 0]).unwrap();
    let err = store
        .import_rootfs(&zstd, "z", ImageConfig::default())
        .unwrap_err();
    assert!(
        matches!(
            err,
            ImageError::UnsupportedCompression {
                compression: "zstd",
                ..
            }
        ),
        "{err}"
    );

    let missing = tmp.path().join("missing");
    let err = store
        .import_rootfs(&missing, "m", ImageConfig::default())
        .unwrap_err();
    assert!(
        err.to_string().contains(&missing.display().to_string()),
        "{err}"
    );

    assert_eq!(snapshot(store.root()), before);
}
