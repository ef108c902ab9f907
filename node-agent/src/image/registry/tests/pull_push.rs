//! Push and pull against a real docker-registry: round trips, fetching only missing layers,
//! concurrent pulls sharing layers.

use std::collections::BTreeSet;

use super::super::super::ImageStore;
use super::super::{LayerState, RegistryConfig};
use super::images::{Events, busybox_layer, import, pair};
use super::server::{Options, Registry, available};

fn insecure() -> RegistryConfig {
    RegistryConfig {
        insecure: true,
        ..RegistryConfig::default()
    }
}

fn ignore(_: &super::super::LayerProgress) {}

/// Starts a registry and pushes images A and B to it from a first store; `None` (after a
/// SKIPPED line) when docker-registry or busybox is missing.
async fn registry_with_pair(
    test: &str,
) -> Option<(Registry, super::images::Pair, tempfile::TempDir)> {
    if !available(test) {
        return None;
    }
    let Some(base) = busybox_layer() else {
        eprintln!(
            "\n*** SKIPPED: {test}: needs busybox-static (apt-get install busybox-static) ***\n"
        );
        return None;
    };
    let reg = Registry::start(Options::default());
    let tmp = tempfile::tempdir().unwrap();
    let p = pair(base);
    let src = ImageStore::open(&tmp.path().join("src")).unwrap();
    import(&src, tmp.path(), &[p.a_spec.clone(), p.b_spec.clone()]);
    src.push(
        "test/a:v1",
        &format!("{}/team/app:a", reg.host),
        &insecure(),
    )
    .await
    .unwrap();
    src.push(
        "test/b:v1",
        &format!("{}/team/app:b", reg.host),
        &insecure(),
    )
    .await
    .unwrap();
    Some((reg, p, tmp))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_then_pull_into_a_fresh_store_gives_the_same_image() {
    let test = "push_then_pull_into_a_fresh_store_gives_the_same_image";
    if !available(test) {
        return;
    }
    let Some(base) = busybox_layer() else {
        eprintln!("\n*** SKIPPED: {test}: needs busybox-static ***\n");
        return;
    };
    let reg = Registry::start(Options::default());
    let tmp = tempfile::tempdir().unwrap();
    let p = pair(base);
    let src = ImageStore::open(&tmp.path().join("src")).unwrap();
    import(&src, tmp.path(), std::slice::from_ref(&p.a_spec));
    let local = src.resolve("test/a:v1").unwrap();

    // Chunks of 64 KiB: the busybox layer goes up in PATCH chunks, the others in one PUT.
    let target = format!("{}/team/app:v1", reg.host);
    let report = src
        .push_chunked("test/a:v1", &target, &insecure(), 64 * 1024)
        .await
        .unwrap();
    assert_eq!(report.digest, p.a.manifest_digest);
    assert_eq!(
        report.uploaded.len(),
        6,
        "5 layers and the config: {report:?}"
    );
    assert!(report.skipped.is_empty());
    assert!(
        reg.log().contains("\"PATCH /v2/team/app/blobs/uploads/"),
        "the big layer went up in chunks"
    );

    // Pushing again uploads nothing: every blob is there (HEAD).
    let again = src.push("test/a:v1", &target, &insecure()).await.unwrap();
    assert!(again.uploaded.is_empty(), "{again:?}");
    assert_eq!(again.skipped.len(), 6);

    let dst = ImageStore::open(&tmp.path().join("dst")).unwrap();
    let events = Events::default();
    let pulled = dst
        .pull(&target, &insecure(), &events.callback())
        .await
        .unwrap();
    assert_eq!(pulled.id, local.id, "same config, same id");
    assert_eq!(pulled.diff_ids, local.diff_ids);
    assert_eq!(
        pulled.manifest, local.manifest,
        "same manifest, byte for byte"
    );
    assert_eq!(pulled.config, local.config);
    assert_eq!(pulled.repo_tags, vec![target.clone()]);
    assert_eq!(dst.resolve(&target).unwrap().id, local.id);
    let rootfs = &dst.layer_dirs(&pulled)[0];
    assert!(rootfs.join("bin/busybox").is_file(), "busybox unpacked");
    assert!(
        rootfs
            .join("bin/sh")
            .symlink_metadata()
            .unwrap()
            .is_symlink(),
        "applet links unpacked"
    );
    let downloaded: BTreeSet<String> = events
        .with_state(LayerState::Downloaded)
        .into_iter()
        .collect();
    let layers: BTreeSet<String> = p.a.layers.iter().map(|l| l.digest.clone()).collect();
    assert_eq!(downloaded, layers);
    assert_eq!(
        events.bytes_received(),
        p.a.layers.iter().map(|l| l.blob.len() as u64).sum::<u64>()
    );
    assert_eq!(
        std::fs::read_dir(dst.root().join("downloads"))
            .unwrap()
            .count(),
        0,
        "downloads are gone once committed"
    );

    // By digest: untagged, the same image, nothing fetched again.
    let by_digest = format!("{}/team/app@{}", reg.host, report.digest);
    let events = Events::default();
    let again = dst
        .pull(&by_digest, &insecure(), &events.callback())
        .await
        .unwrap();
    assert_eq!(again.id, local.id);
    assert_eq!(events.bytes_received(), 0);
    assert_eq!(events.with_state(LayerState::Cached).len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_fetches_only_the_layers_the_store_lacks() {
    let test = "a_pull_fetches_only_the_layers_the_store_lacks";
    let Some((reg, p, tmp)) = registry_with_pair(test).await else {
        return;
    };
    let dst = ImageStore::open(&tmp.path().join("dst")).unwrap();
    dst.pull(&format!("{}/team/app:a", reg.host), &insecure(), &ignore)
        .await
        .unwrap();
    let before: Vec<usize> =
        p.b.layers
            .iter()
            .map(|l| reg.blob_gets("team/app", &l.digest))
            .collect();
    assert_eq!(
        before,
        vec![1, 1, 1, 1, 0],
        "A's pull fetched the shared layers once each"
    );

    let events = Events::default();
    let b = dst
        .pull(
            &format!("{}/team/app:b", reg.host),
            &insecure(),
            &events.callback(),
        )
        .await
        .unwrap();
    assert_eq!(b.id, p.b.id);
    let new_layer = &p.b.layers[4];
    assert_eq!(
        events.with_state(LayerState::Downloaded),
        vec![new_layer.digest.clone()]
    );
    assert_eq!(
        events.bytes_received(),
        new_layer.blob.len() as u64,
        "only the missing layer's bytes"
    );
    assert_eq!(events.with_state(LayerState::Cached).len(), 4);
    let after: Vec<usize> =
        p.b.layers
            .iter()
            .map(|l| reg.blob_gets("team/app", &l.digest))
            .collect();
    assert_eq!(
        after,
        vec![1, 1, 1, 1, 1],
        "the registry served only the new layer"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_pulls_of_images_sharing_layers_fetch_each_once() {
    let test = "concurrent_pulls_of_images_sharing_layers_fetch_each_once";
    let Some((reg, p, tmp)) = registry_with_pair(test).await else {
        return;
    };
    let dst = ImageStore::open(&tmp.path().join("dst")).unwrap();
    let (ea, eb) = (Events::default(), Events::default());
    let (cb_a, cb_b) = (ea.callback(), eb.callback());
    let (ref_a, ref_b) = (
        format!("{}/team/app:a", reg.host),
        format!("{}/team/app:b", reg.host),
    );
    let config = insecure();
    let (a, b) = tokio::join!(
        dst.pull(&ref_a, &config, &cb_a),
        dst.pull(&ref_b, &config, &cb_b),
    );
    assert_eq!(a.unwrap().id, p.a.id);
    assert_eq!(b.unwrap().id, p.b.id);
    let mut blobs: BTreeSet<(String, u64)> = BTreeSet::new();
    for l in p.a.layers.iter().chain(&p.b.layers) {
        blobs.insert((l.digest.clone(), l.blob.len() as u64));
    }
    for (digest, _) in &blobs {
        assert_eq!(
            reg.blob_gets("team/app", digest),
            1,
            "{digest} fetched once"
        );
    }
    assert_eq!(
        ea.bytes_received() + eb.bytes_received(),
        blobs.iter().map(|(_, n)| n).sum::<u64>(),
        "the two pulls together received each blob once"
    );
    assert_eq!(dst.list().unwrap().len(), 2);
}

#[test]
fn pulls_and_pushes_can_be_spawned() {
    fn spawnable<F: std::future::Future + Send + 'static>(_: F) {}
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::open(&tmp.path().join("store")).unwrap();
    let (s1, s2) = (store.clone(), store);
    spawnable(async move {
        s1.pull("reg.example/a:1", &insecure(), &ignore)
            .await
            .map(|_| ())
    });
    spawnable(async move {
        s2.push("a", "reg.example/a:1", &insecure())
            .await
            .map(|_| ())
    });
}
