//! Two pulls that want the same blob at the same time fetch it once: the second follows the
//! first's download (a slow fake registry makes sure they overlap).

use std::time::Duration;

use super::super::super::ImageStore;
use super::super::super::tests::fixtures::{ImageSpec, LayerSpec};
use super::super::{LayerState, RegistryConfig};
use super::fake::{Content, Fake};
use super::images::{Events, small_layer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_pulls_of_a_shared_layer_fetch_it_once() {
    let shared = LayerSpec::gzip(small_layer("shared"));
    let a = ImageSpec::new(
        &["t/a:1"],
        vec![shared.clone(), LayerSpec::gzip(small_layer("a"))],
    )
    .build();
    let b = ImageSpec::new(&["t/b:1"], vec![shared, LayerSpec::gzip(small_layer("b"))]).build();
    let mut content = Content {
        blob_delay: Duration::from_millis(400),
        ..Content::default()
    };
    let mt = "application/vnd.docker.distribution.manifest.v2+json".to_owned();
    for (tag, built) in [("a", &a), ("b", &b)] {
        content
            .manifests
            .insert(tag.to_owned(), (mt.clone(), built.manifest.clone()));
        content.blobs.insert(built.id.clone(), built.config.clone());
        for l in &built.layers {
            content.blobs.insert(l.digest.clone(), l.blob.clone());
        }
    }
    let fake = Fake::start(content);
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::open(&tmp.path().join("store")).unwrap();
    let config = RegistryConfig {
        insecure: true,
        ..RegistryConfig::default()
    };
    let (ea, eb) = (Events::default(), Events::default());
    let (cb_a, cb_b) = (ea.callback(), eb.callback());
    let (ref_a, ref_b) = (format!("{}/r:a", fake.host), format!("{}/r:b", fake.host));
    let (ra, rb) = tokio::join!(store.pull(&ref_a, &config, &cb_a), async {
        // B starts while A's blobs are still coming.
        tokio::time::sleep(Duration::from_millis(100)).await;
        store.pull(&ref_b, &config, &cb_b).await
    });
    assert_eq!(ra.unwrap().id, a.id);
    assert_eq!(rb.unwrap().id, b.id);
    let shared_digest = &a.layers[0].digest;
    assert_eq!(
        fake.count("GET", &format!("/v2/r/blobs/{shared_digest}")),
        1,
        "{:?}",
        fake.requests()
    );
    assert!(
        ea.with_state(LayerState::Downloaded)
            .contains(shared_digest)
    );
    assert!(
        eb.with_state(LayerState::Shared).contains(shared_digest),
        "B was handed A's download: {:?}",
        eb.all()
    );
    assert!(
        !eb.with_state(LayerState::Downloaded)
            .contains(shared_digest)
    );
    assert_eq!(
        std::fs::read_dir(store.root().join("downloads"))
            .unwrap()
            .count(),
        0,
        "downloads and their locks are gone"
    );
}
