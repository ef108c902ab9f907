//! Bad archives give clean errors naming what is wrong, and leave the store exactly as it was.

use std::fs;
use std::path::{Path, PathBuf};

use super::fixtures::*;
use crate::image::{ImageError, ImageStore};

/// A store already holding one image, so "unchanged" covers records, tags, blobs and layers.
fn populated_store(tmp: &Path) -> ImageStore {
    let store = open_store(tmp);
    let spec = ImageSpec::new(
        &["existing:1"],
        vec![LayerSpec::plain(simple_layer("existing"))],
    );
    let dir = tmp.join("existing");
    write_legacy(&dir, &[spec]);
    store.import(&dir).unwrap();
    store
}

/// Imports `path`, expecting an error; asserts the store did not change.
fn import_fails(store: &ImageStore, path: &Path) -> ImageError {
    let before = snapshot(store.root());
    let err = store.import(path).unwrap_err();
    assert_eq!(snapshot(store.root()), before, "store changed after: {err}");
    err
}

fn two_layer_spec(bad: LayerSpec) -> ImageSpec {
    ImageSpec::new(
        &["broken:1"],
        vec![LayerSpec::plain(simple_layer("good-first")), bad],
    )
}

#[test]
fn layer_blob_digest_mismatch_names_file_and_both_digests() {
    let tmp = tempfile::tempdir().unwrap();
    let store = populated_store(tmp.path());
    let src = tmp.path().join("oci");
    let built = write_oci(
        &src,
        &[two_layer_spec(LayerSpec::gzip(simple_layer("second")))],
        Naming::RefName,
    );
    let layer = &built[0].layers[1];
    let blob_path = src.join("blobs/sha256").join(hex_of(&layer.digest));
    let mut tampered = layer.blob.clone();
    let last = tampered.len() - 9;
    tampered[last] ^= 0xff;
    fs::write(&blob_path, &tampered).unwrap();

    let err = import_fails(&store, &src);
    match &err {
        ImageError::DigestMismatch {
            path,
            expected,
            actual,
            ..
        } => {
            assert_eq!(path, &blob_path);
            assert_eq!(expected, &layer.digest);
            assert_eq!(actual, &sha(&tampered));
        }
        other => panic!("{other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains(&layer.digest) && msg.contains(&sha(&tampered)),
        "{msg}"
    );
}

#[test]
fn descriptor_size_mismatch_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let store = populated_store(tmp.path());
    let src = tmp.path().join("oci");
    let built = write_oci(
        &src,
        &[ImageSpec::new(
            &["s:1"],
            vec![LayerSpec::plain(simple_layer("s"))],
        )],
        Naming::RefName,
    );
    let layer = &built[0].layers[0];
    let blob_path = src.join("blobs/sha256").join(hex_of(&layer.digest));
    let mut longer = layer.blob.clone();
    longer.extend_from_slice(&[0; 512]);
    fs::write(&blob_path, &longer).unwrap();
    match import_fails(&store, &src) {
        ImageError::SizeMismatch {
            path,
            expected,
            actual,
            ..
        } => {
            assert_eq!(path, blob_path);
            assert_eq!(
                (expected, actual),
                (layer.blob.len() as u64, longer.len() as u64)
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn diff_id_mismatch_in_legacy_save_names_the_layer_file() {
    let tmp = tempfile::tempdir().unwrap();
    let store = populated_store(tmp.path());
    let good = simple_layer("good-first");
    let second = simple_layer("second");
    let lie = sha(b"not the layer");
    let mut spec = two_layer_spec(LayerSpec::plain(second.clone()));
    spec.diff_ids_override = Some(vec![sha(&good), lie.clone()]);
    let src = tmp.path().join("save");
    write_legacy(&src, &[spec]);
    let archive = tar_dir(&src, &tmp.path().join("save.tar"), false);
    match import_fails(&store, &archive) {
        ImageError::DigestMismatch {
            path,
            expected,
            actual,
            what,
        } => {
            assert_eq!(path, archive.join(format!("{}/layer.tar", hex_of(&lie))));
            assert_eq!(expected, lie);
            assert_eq!(actual, sha(&second));
            assert!(what.contains("diff_id"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn legacy_config_digest_mismatch_names_the_config() {
    let tmp = tempfile::tempdir().unwrap();
    let store = populated_store(tmp.path());
    let src = tmp.path().join("save");
    let built = write_legacy(
        &src,
        &[ImageSpec::new(
            &["c:1"],
            vec![LayerSpec::plain(simple_layer("c"))],
        )],
    );
    let config_path = src.join(format!("{}.json", hex_of(&built[0].id)));
    let mut config = built[0].config.clone();
    config.push(b' ');
    fs::write(&config_path, &config).unwrap();
    match import_fails(&store, &src) {
        ImageError::DigestMismatch {
            path,
            expected,
            actual,
            what,
        } => {
            assert_eq!(path, config_path);
            assert_eq!(expected, built[0].id);
            assert_eq!(actual, sha(&config));
            assert_eq!(what, "config");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn truncated_archive_is_a_clean_error() {
    let tmp = tempfile::tempdir().unwrap();
    let store = populated_store(tmp.path());
    let src = tmp.path().join("save");
    write_legacy(
        &src,
        &[two_layer_spec(LayerSpec::plain(simple_layer("second")))],
    );
    let archive = tar_dir(&src, &tmp.path().join("save.tar"), false);
    let bytes = fs::read(&archive).unwrap();
    for cut in [bytes.len() / 2, bytes.len() / 3 + 100, 700] {
        let cut_path = tmp.path().join(format!("cut-{cut}.tar"));
        fs::write(&cut_path, &bytes[..cut]).unwrap();
        let err = import_fails(&store, &cut_path);
        assert!(
            err.to_string().contains(&cut_path.display().to_string()),
            "error names the archive: {err}"
        );
    }
    // Cut inside a gzip-compressed archive too.
    let gz = tar_dir(&src, &tmp.path().join("save.tar.gz"), true);
    let bytes = fs::read(&gz).unwrap();
    let cut_path = tmp.path().join("cut.tar.gz");
    fs::write(&cut_path, &bytes[..bytes.len() / 2]).unwrap();
    let err = import_fails(&store, &cut_path);
    assert!(
        matches!(err, ImageError::Read { .. } | ImageError::Entry { .. }),
        "{err}"
    );
}

#[allow(clippy::ptr_arg, reason = "must match LayerSpec::mangle")]
fn corrupt_gzip_crc(blob: &mut Vec<u8>) {
    let n = blob.len();
    blob[n - 8] ^= 0xff; // first byte of the CRC32 trailer
}

fn truncate_gzip(blob: &mut Vec<u8>) {
    blob.truncate(blob.len() - 20);
}

#[test]
fn bad_gzip_layers_are_clean_errors() {
    for (what, mangle) in [
        ("bad crc", corrupt_gzip_crc as fn(&mut Vec<u8>)),
        ("truncated", truncate_gzip),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let store = populated_store(tmp.path());
        let mut bad = LayerSpec::gzip(simple_layer("second"));
        bad.mangle = Some(mangle);
        let src = tmp.path().join("oci");
        let built = write_oci(&src, &[two_layer_spec(bad)], Naming::RefName);
        let blob_path = src
            .join("blobs/sha256")
            .join(hex_of(&built[0].layers[1].digest));
        match import_fails(&store, &src) {
            ImageError::Read { path, .. } | ImageError::Entry { path, .. } => {
                assert_eq!(path, blob_path, "{what}")
            }
            other => panic!("{what}: {other:?}"),
        }
    }
}

#[test]
fn bad_gzip_in_legacy_layer_tar() {
    let tmp = tempfile::tempdir().unwrap();
    let store = populated_store(tmp.path());
    let mut bad = LayerSpec::gzip(simple_layer("second"));
    bad.mangle = Some(corrupt_gzip_crc);
    let src = tmp.path().join("save");
    write_legacy(&src, &[two_layer_spec(bad)]);
    let archive = tar_dir(&src, &tmp.path().join("save.tar"), false);
    let err = import_fails(&store, &archive);
    assert!(
        matches!(err, ImageError::Read { .. } | ImageError::Entry { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("layer.tar"), "{err}");
}

#[test]
fn unknown_layer_media_type_is_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let store = populated_store(tmp.path());
    let mut weird = LayerSpec::plain(simple_layer("weird"));
    weird.media_type = Some("application/vnd.example.weird.layer");
    let src = tmp.path().join("oci");
    let built = write_oci(&src, &[two_layer_spec(weird)], Naming::RefName);
    let err = import_fails(&store, &src);
    match &err {
        ImageError::UnsupportedMediaType {
            media_type,
            digest,
            what,
            ..
        } => {
            assert_eq!(media_type, "application/vnd.example.weird.layer");
            assert_eq!(digest, &built[0].layers[1].digest);
            assert_eq!(*what, "layer");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn zstd_layers_are_refused_by_media_type_and_by_magic() {
    let tmp = tempfile::tempdir().unwrap();
    let store = populated_store(tmp.path());
    let zstd_frame = vec![0x28, 0xb5, 0x2f, 0xfd, 0x20, 0x00, 0x01, 0x00, 0x00];

    let mut by_type = LayerSpec::plain(simple_layer("z"));
    by_type.media_type = Some("application/vnd.oci.image.layer.v1.tar+zstd");
    by_type.blob_override = Some(zstd_frame.clone());
    let src = tmp.path().join("oci-type");
    let built = write_oci(&src, &[two_layer_spec(by_type)], Naming::RefName);
    match import_fails(&store, &src) {
        ImageError::UnsupportedCompression {
            layer, compression, ..
        } => {
            assert_eq!(layer, built[0].layers[1].digest);
            assert_eq!(compression, "zstd");
        }
        other => panic!("{other:?}"),
    }

    // Labelled gzip, but the bytes are zstd: detection is by magic.
    let mut by_magic = LayerSpec::gzip(simple_layer("z"));
    by_magic.blob_override = Some(zstd_frame);
    let src = tmp.path().join("save25");
    let built = write_docker25(&src, &[two_layer_spec(by_magic)]);
    let err = import_fails(&store, &src);
    match &err {
        ImageError::UnsupportedCompression {
            layer,
            compression,
            path,
        } => {
            assert_eq!(layer, &built[0].layers[1].digest);
            assert_eq!(*compression, "zstd");
            assert_eq!(path, &src.join("blobs/sha256").join(hex_of(layer)));
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("zstd"));
}

#[test]
fn missing_layer_file_and_layer_count_mismatch() {
    let tmp = tempfile::tempdir().unwrap();
    let store = populated_store(tmp.path());
    let src = tmp.path().join("save");
    let built = write_legacy(
        &src,
        &[two_layer_spec(LayerSpec::plain(simple_layer("second")))],
    );
    let layer_file: PathBuf = src
        .join(hex_of(&built[0].layers[1].diff_id))
        .join("layer.tar");
    fs::remove_file(&layer_file).unwrap();
    let err = import_fails(&store, &src);
    assert!(
        err.to_string().contains(&layer_file.display().to_string()),
        "{err}"
    );

    // manifest.json lists one layer fewer than the config.
    let src = tmp.path().join("save2");
    write_legacy(
        &src,
        &[two_layer_spec(LayerSpec::plain(simple_layer("second")))],
    );
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(src.join("manifest.json")).unwrap()).unwrap();
    manifest[0]["Layers"].as_array_mut().unwrap().pop();
    fs::write(
        src.join("manifest.json"),
        serde_json::to_vec(&manifest).unwrap(),
    )
    .unwrap();
    let err = import_fails(&store, &src);
    assert!(err.to_string().contains("rootfs.diff_ids"), "{err}");
}

#[test]
fn not_an_image_archive() {
    let tmp = tempfile::tempdir().unwrap();
    let store = populated_store(tmp.path());
    let junk = tmp.path().join("junk.bin");
    fs::write(&junk, vec![0x5a; 4096]).unwrap();
    let err = import_fails(&store, &junk);
    assert!(
        err.to_string().contains("junk.bin: not an image archive"),
        "{err}"
    );

    let empty_dir = tmp.path().join("empty");
    fs::create_dir(&empty_dir).unwrap();
    let err = import_fails(&store, &empty_dir);
    assert!(
        err.to_string()
            .contains("neither manifest.json nor index.json"),
        "{err}"
    );

    let missing = tmp.path().join("nope.tar");
    let err = import_fails(&store, &missing);
    assert!(
        matches!(&err, ImageError::Io { path, .. } if *path == missing),
        "{err}"
    );
}

#[test]
fn failure_in_a_later_image_commits_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let store = populated_store(tmp.path());
    let good = ImageSpec::new(&["fine:1"], vec![LayerSpec::plain(simple_layer("fine"))]);
    let mut bad = ImageSpec::new(&["bad:1"], vec![LayerSpec::plain(simple_layer("bad"))]);
    bad.diff_ids_override = Some(vec![sha(b"wrong")]);
    let src = tmp.path().join("save");
    write_legacy(&src, &[good, bad]);
    import_fails(&store, &tar_dir(&src, &tmp.path().join("save.tar"), false));
    assert!(matches!(
        store.resolve("fine:1"),
        Err(ImageError::NotFound { .. })
    ));
}
