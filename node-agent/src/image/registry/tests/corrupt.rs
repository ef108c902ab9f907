//! A blob the registry serves wrong (its storage file tampered with) is refused, and the
//! store is left exactly as it was.

use std::fs;

use super::super::super::tests::fixtures::{ImageSpec, LayerSpec, snapshot};
use super::super::super::{ImageError, ImageStore};
use super::super::{RegistryConfig, RegistryError};
use super::images::{import, small_layer};
use super::server::{Options, Registry, available};

fn insecure() -> RegistryConfig {
    RegistryConfig {
        insecure: true,
        ..RegistryConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_or_truncated_blob_is_refused_and_leaves_nothing() {
    if !available("a_corrupted_or_truncated_blob_is_refused_and_leaves_nothing") {
        return;
    }
    let reg = Registry::start(Options::default());
    let tmp = tempfile::tempdir().unwrap();
    let spec = ImageSpec::new(
        &["test/c:v1"],
        vec![
            LayerSpec::gzip(small_layer("c1")),
            LayerSpec::gzip(small_layer("c2")),
        ],
    );
    let built = spec.build();
    let src = ImageStore::open(&tmp.path().join("src")).unwrap();
    import(&src, tmp.path(), &[spec]);
    let target = format!("{}/team/c:v1", reg.host);
    src.push("test/c:v1", &target, &insecure()).await.unwrap();

    let dst = ImageStore::open(&tmp.path().join("dst")).unwrap();
    let empty = snapshot(dst.root());
    let layer = &built.layers[1];
    let file = reg.blob_file(&layer.digest);
    let good = fs::read(&file).unwrap();
    assert_eq!(good, layer.blob, "the registry keeps the blob as pushed");

    // Same size, one byte changed.
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0xff;
    fs::write(&file, &bad).unwrap();
    let err = dst.pull(&target, &insecure(), &|_| {}).await.unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(&err, ImageError::Registry(e) if matches!(**e, RegistryError::DigestMismatch { .. })),
        "{msg}"
    );
    assert!(
        msg.contains(&layer.digest) && msg.contains(&reg.host) && msg.contains("team/c"),
        "the error names the blob, registry and repository: {msg}"
    );
    assert_eq!(
        snapshot(dst.root()),
        empty,
        "nothing kept from the failed pull"
    );

    // Cut short.
    fs::write(&file, &good[..good.len() - 10]).unwrap();
    let err = dst.pull(&target, &insecure(), &|_| {}).await.unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(&layer.digest)
            && (msg.contains("size mismatch") || msg.contains(&target[..9])),
        "{msg}"
    );
    assert_eq!(
        snapshot(dst.root()),
        empty,
        "nothing kept from the failed pull"
    );

    // Mended, the pull works and fetches the layer again.
    fs::write(&file, &good).unwrap();
    let record = dst.pull(&target, &insecure(), &|_| {}).await.unwrap();
    assert_eq!(record.id, built.id);
}
