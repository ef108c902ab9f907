//! Another process fetching the same blob (simulated by holding its lock file, as a second
//! process would): a pull waits for it, then uses the store's copy or the verified file it
//! left, and fetches nothing.

use std::time::Duration;

use super::super::super::ImageStore;
use super::super::super::tests::fixtures::{Built, ImageSpec, LayerSpec, hex_of};
use super::super::{LayerState, RegistryConfig};
use super::fake::{Content, Fake};
use super::images::{Events, import, small_layer};

fn serve(built: &Built) -> Fake {
    let mut content = Content::default();
    content.manifests.insert(
        "v1".to_owned(),
        (
            "application/vnd.oci.image.manifest.v1+json".to_owned(),
            built.manifest.clone(),
        ),
    );
    content.blobs.insert(built.id.clone(), built.config.clone());
    for l in &built.layers {
        content.blobs.insert(l.digest.clone(), l.blob.clone());
    }
    Fake::start(content)
}

fn insecure() -> RegistryConfig {
    RegistryConfig {
        insecure: true,
        ..RegistryConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_waits_for_another_process_fetching_the_blob() {
    let spec = ImageSpec::new(&["x/y:1"], vec![LayerSpec::gzip(small_layer("x"))]);
    let built = spec.build();
    let layer = built.layers[0].digest.clone();
    let blob_path = format!("/v2/r/blobs/{layer}");
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("store");
    let store = ImageStore::open(&root).unwrap();
    let lock_path = root.join(format!("downloads/{}.lock", hex_of(&layer)));

    // The other process commits the image while this pull waits.
    let fake = serve(&built);
    let other = crate::durable::lock_exclusive(&lock_path).unwrap();
    let events = Events::default();
    let pull = {
        let (store, reference, cb) = (
            store.clone(),
            format!("{}/r:v1", fake.host),
            events.callback(),
        );
        tokio::spawn(async move { store.pull(&reference, &insecure(), &cb).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!pull.is_finished(), "the pull waits for the blob's lock");
    assert_eq!(fake.count("GET", &blob_path), 0);
    import(
        &ImageStore::open(&root).unwrap(),
        tmp.path(),
        std::slice::from_ref(&spec),
    );
    drop(other);
    assert_eq!(pull.await.unwrap().unwrap().id, built.id);
    assert_eq!(
        fake.count("GET", &blob_path),
        0,
        "found in the store, not fetched"
    );
    assert!(events.with_state(LayerState::Downloaded).is_empty());
    drop(fake);

    // The other process fetched and verified it, then failed before committing.
    let root2 = tmp.path().join("store2");
    let store2 = ImageStore::open(&root2).unwrap();
    let fake = serve(&built);
    let lock_path = root2.join(format!("downloads/{}.lock", hex_of(&layer)));
    let other = crate::durable::lock_exclusive(&lock_path).unwrap();
    std::fs::write(
        root2.join("downloads").join(hex_of(&layer)),
        &built.layers[0].blob,
    )
    .unwrap();
    let events = Events::default();
    let pull = {
        let (store, reference, cb) = (
            store2.clone(),
            format!("{}/r:v1", fake.host),
            events.callback(),
        );
        tokio::spawn(async move { store.pull(&reference, &insecure(), &cb).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!pull.is_finished());
    drop(other);
    assert_eq!(pull.await.unwrap().unwrap().id, built.id);
    assert_eq!(
        fake.count("GET", &blob_path),
        0,
        "the verified file was used"
    );
    assert_eq!(events.with_state(LayerState::Shared), vec![layer.clone()]);
    assert_eq!(
        std::fs::read_dir(root2.join("downloads")).unwrap().count(),
        0,
        "the shared file and lock are gone after the commit"
    );
}

#[test]
fn opening_the_store_removes_what_crashed_pulls_left() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("store");
    drop(ImageStore::open(&root).unwrap());
    let hex = "a".repeat(64);
    let downloads = root.join("downloads");
    // A verified blob, a partial one, a lock, and the links of a live and a dead process.
    let dead_pid = 0x7fff_fff0u32;
    for name in [
        hex.clone(),
        format!("{hex}.partial"),
        format!("{hex}.lock"),
        format!("{hex}.{}-1-0", std::process::id()),
        format!("{hex}.{dead_pid}-1-0"),
    ] {
        std::fs::write(downloads.join(name), b"x").unwrap();
    }
    drop(ImageStore::open(&root).unwrap());
    let mut left: Vec<String> = std::fs::read_dir(&downloads)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(
        left,
        vec![format!("{hex}.{}-1-0", std::process::id())],
        "only this live process's link stays"
    );
}
