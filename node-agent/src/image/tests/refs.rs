//! resolve, list, tag and remove.

use std::collections::HashMap;
use std::fs;

use serde_json::json;

use super::fixtures::*;
use crate::image::{ImageError, ImageStore, InUse};

/// Imports one small image tagged `tags`, with its own layer `name` on top of a shared base.
fn import_one(store: &ImageStore, tmp: &std::path::Path, name: &str, tags: &[&str]) -> String {
    let spec = ImageSpec::new(
        tags,
        vec![
            LayerSpec::plain(simple_layer("base")),
            LayerSpec::plain(simple_layer(name)),
        ],
    );
    let dir = tmp.join(format!("src-{name}"));
    let built = write_legacy(&dir, &[spec]);
    store.import(&dir).unwrap();
    built[0].id.clone()
}

fn layer_exists(store: &ImageStore, tar: &[u8]) -> bool {
    store.root().join("layers").join(hex_of(&sha(tar))).is_dir()
}

#[test]
fn resolve_by_name_id_and_prefix() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open_store(tmp.path());
    let id = import_one(&store, tmp.path(), "bb", &["busybox"]);
    let hex = hex_of(&id).to_owned();
    for reference in [
        "busybox",
        "busybox:latest",
        "library/busybox",
        "docker.io/library/busybox:latest",
        "index.docker.io/library/busybox",
        id.as_str(),
        hex.as_str(),
        &hex[..4],
        &hex[..12],
        &format!("sha256:{}", &hex[..8]),
    ] {
        assert_eq!(store.resolve(reference).unwrap().id, id, "{reference}");
    }
    let r = store.resolve("busybox").unwrap();
    assert_eq!(r.repo_tags, vec!["busybox:latest".to_owned()]);

    for missing in ["busybox:1.0", "alpine", "ffff", &"f".repeat(64)] {
        match store.resolve(missing) {
            Err(ImageError::NotFound { reference }) => assert_eq!(reference, missing),
            other => panic!("{missing}: {other:?}"),
        }
    }
    let err = store.resolve(&hex[..3]).unwrap_err();
    assert!(
        matches!(err, ImageError::NotFound { .. }),
        "3 hex digits are too short: {err}"
    );
    let err = store.resolve("Not Valid").unwrap_err();
    assert!(matches!(err, ImageError::InvalidReference { .. }), "{err}");
}

#[test]
fn ambiguous_id_prefix_is_its_own_error() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open_store(tmp.path());
    // Find two configs whose ids share their first 4 hex digits.
    let layer = simple_layer("amb");
    let mut seen: HashMap<String, ImageSpec> = HashMap::new();
    let (a, b) = (0..100_000)
        .find_map(|i| {
            let mut spec = ImageSpec::new(&[], vec![LayerSpec::plain(layer.clone())]);
            spec.config = json!({"Labels": {"n": i.to_string()}});
            let id = spec.build().id;
            let prefix = hex_of(&id)[..4].to_owned();
            match seen.remove(&prefix) {
                Some(other) => Some((other, spec)),
                None => {
                    seen.insert(prefix, spec);
                    None
                }
            }
        })
        .unwrap();
    let src = tmp.path().join("amb");
    let built = write_legacy(&src, &[a, b]);
    store.import(&src).unwrap();
    let prefix = &hex_of(&built[0].id)[..4];
    match store.resolve(prefix) {
        Err(ImageError::AmbiguousId { prefix: p, matches }) => {
            assert_eq!(p, prefix);
            assert_eq!(matches.len(), 2);
        }
        other => panic!("{other:?}"),
    }
    let err = store.resolve(prefix).unwrap_err().to_string();
    assert!(
        err.contains(&built[0].id) && err.contains(&built[1].id),
        "{err}"
    );
    assert_eq!(store.resolve(&built[1].id).unwrap().id, built[1].id);
}

#[test]
fn tag_moves_and_adds_tags() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open_store(tmp.path());
    let a = import_one(&store, tmp.path(), "a", &["app:1"]);
    let b = import_one(&store, tmp.path(), "b", &["app:2"]);

    store.tag("app:1", "docker.io/library/app:stable").unwrap();
    store.tag(&hex_of(&a)[..6], "registry.local/app").unwrap();
    let r = store.resolve("app:stable").unwrap();
    assert_eq!(r.id, a);
    assert_eq!(
        r.repo_tags,
        vec![
            "app:1".to_owned(),
            "app:stable".to_owned(),
            "registry.local/app:latest".to_owned()
        ]
    );

    // Moving a tag takes it from the other image.
    store.tag("app:2", "app:stable").unwrap();
    assert_eq!(store.resolve("app:stable").unwrap().id, b);
    assert!(
        !store
            .resolve(&a)
            .unwrap()
            .repo_tags
            .contains(&"app:stable".to_owned())
    );

    let err = store.tag("app:9", "x:1").unwrap_err();
    assert!(
        matches!(&err, ImageError::NotFound { reference } if reference == "app:9"),
        "{err}"
    );
    let err = store.tag("app:1", "Bad Name").unwrap_err();
    assert!(
        matches!(&err, ImageError::InvalidReference { reference, .. } if reference == "Bad Name"),
        "{err}"
    );
    let repos: serde_json::Value =
        serde_json::from_slice(&fs::read(store.root().join("repositories.json")).unwrap()).unwrap();
    assert_eq!(repos["docker.io/library/app:stable"], json!(b));
}

#[test]
fn remove_untags_before_it_deletes() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open_store(tmp.path());
    let id = import_one(&store, tmp.path(), "x", &["x:1", "x:2"]);

    let report = store.remove("x:1", &InUse::default(), false).unwrap();
    assert_eq!(report.untagged, vec!["x:1".to_owned()]);
    assert!(report.deleted.is_empty());
    assert_eq!(
        store.resolve("x:2").unwrap().repo_tags,
        vec!["x:2".to_owned()]
    );

    let report = store
        .remove("docker.io/library/x:2", &InUse::default(), false)
        .unwrap();
    assert_eq!(report.untagged, vec!["x:2".to_owned()]);
    assert_eq!(report.deleted[0], id);
    assert!(report.deleted.contains(&sha(&simple_layer("x"))));
    assert!(report.deleted.contains(&sha(&simple_layer("base"))));
    assert!(store.list().unwrap().is_empty());
    assert!(matches!(
        store.resolve(&id),
        Err(ImageError::NotFound { .. })
    ));
    let blobs = fs::read_dir(store.root().join("blobs/sha256"))
        .unwrap()
        .count();
    let layers = fs::read_dir(store.root().join("layers")).unwrap().count();
    assert_eq!(
        (blobs, layers),
        (0, 0),
        "nothing left once the last image is gone"
    );
}

#[test]
fn remove_by_id_drops_all_tags() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open_store(tmp.path());
    let id = import_one(&store, tmp.path(), "y", &["y:1", "y:2"]);
    let report = store
        .remove(&hex_of(&id)[..8], &InUse::default(), false)
        .unwrap();
    assert_eq!(report.untagged, vec!["y:1".to_owned(), "y:2".to_owned()]);
    assert_eq!(report.deleted[0], id);
    assert!(store.list().unwrap().is_empty());
}

#[test]
fn shared_layer_survives_until_the_last_user_goes() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open_store(tmp.path());
    let a = import_one(&store, tmp.path(), "a", &["a:1"]);
    let b = import_one(&store, tmp.path(), "b", &["b:1"]);
    let base = simple_layer("base");

    let report = store.remove("a:1", &InUse::default(), false).unwrap();
    assert_eq!(report.deleted, vec![a.clone(), sha(&simple_layer("a"))]);
    assert!(layer_exists(&store, &base), "b still uses the base layer");
    assert!(!layer_exists(&store, &simple_layer("a")));
    let rb = store.resolve("b:1").unwrap();
    for dir in store.layer_dirs(&rb) {
        assert!(dir.is_dir(), "{}", dir.display());
    }
    // b's blobs are all still there.
    let manifest = rb.manifest.clone().unwrap();
    assert!(
        store
            .root()
            .join("blobs/sha256")
            .join(hex_of(&manifest))
            .is_file()
    );
    assert!(store.root().join("blobs/sha256").join(hex_of(&b)).is_file());
    assert!(!store.root().join("blobs/sha256").join(hex_of(&a)).exists());

    store.remove("b:1", &InUse::default(), false).unwrap();
    assert!(!layer_exists(&store, &base));
}

#[test]
fn in_use_images_are_refused_unless_forced_and_in_use_layers_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open_store(tmp.path());
    let id = import_one(&store, tmp.path(), "web", &["web:1"]);
    let top = sha(&simple_layer("web"));
    let mut in_use = InUse::default();
    in_use.images.insert(id.clone());
    in_use.layers.insert(top.clone());
    let before = snapshot(store.root());

    let err = store.remove("web:1", &in_use, false).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(&err, ImageError::InUse { id: i, .. } if *i == id),
        "{err}"
    );
    assert!(
        msg.contains("web:1") && msg.contains(&id) && msg.contains("used by a container"),
        "{msg}"
    );
    assert_eq!(
        snapshot(store.root()),
        before,
        "a refused removal changes nothing"
    );

    let report = store.remove("web:1", &in_use, true).unwrap();
    assert_eq!(report.deleted, vec![id.clone(), sha(&simple_layer("base"))]);
    assert!(
        layer_exists(&store, &simple_layer("web")),
        "a layer in use stays"
    );
    assert!(matches!(
        store.resolve("web:1"),
        Err(ImageError::NotFound { .. })
    ));

    // Once no container uses it, the next removal collects it.
    import_one(&store, tmp.path(), "other", &["other:1"]);
    let report = store.remove("other:1", &InUse::default(), false).unwrap();
    assert!(report.deleted.contains(&top), "{report:?}");
}

#[test]
fn removing_a_missing_image_is_not_found() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open_store(tmp.path());
    match store.remove("ghost:1", &InUse::default(), false) {
        Err(ImageError::NotFound { reference }) => assert_eq!(reference, "ghost:1"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn concurrent_imports_and_removals_are_safe() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("store");
    ImageStore::open(&root).unwrap();
    let mut sources = Vec::new();
    for i in 0..4 {
        let spec = ImageSpec::new(
            &[&format!("c{i}:1")],
            vec![
                LayerSpec::gzip(simple_layer("shared")),
                LayerSpec::plain(simple_layer(&format!("own{i}"))),
            ],
        );
        let dir = tmp.path().join(format!("c{i}"));
        write_docker25(&dir, &[spec]);
        sources.push(tar_dir(&dir, &tmp.path().join(format!("c{i}.tar")), false));
    }
    std::thread::scope(|s| {
        for (i, src) in sources.iter().enumerate() {
            let root = root.clone();
            s.spawn(move || {
                // A separate ImageStore per thread: the flock is per open file, as between processes.
                let store = ImageStore::open(&root).unwrap();
                store.import(src).unwrap();
                if i % 2 == 0 {
                    store
                        .remove(&format!("c{i}:1"), &InUse::default(), false)
                        .unwrap();
                }
            });
        }
    });
    let store = ImageStore::open(&root).unwrap();
    let mut tags: Vec<String> = store
        .list()
        .unwrap()
        .into_iter()
        .flat_map(|r| r.repo_tags)
        .collect();
    tags.sort();
    assert_eq!(tags, vec!["c1:1".to_owned(), "c3:1".to_owned()]);
    for r in store.list().unwrap() {
        for dir in store.layer_dirs(&r) {
            assert!(dir.join("data").is_dir(), "{} intact", dir.display());
        }
    }
    assert_eq!(
        fs::read_dir(root.join("layers")).unwrap().count(),
        3,
        "shared + own1 + own3"
    );
    assert_eq!(fs::read_dir(root.join("tmp")).unwrap().count(), 0);
}

#[test]
fn a_corrupt_record_stops_garbage_collection_but_not_the_removal() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open_store(tmp.path());
    let a = import_one(&store, tmp.path(), "a", &["a:1"]);
    import_one(&store, tmp.path(), "b", &["b:1"]);
    let corrupt = store
        .root()
        .join("images")
        .join(format!("{}.json", "c".repeat(64)));
    fs::write(&corrupt, b"{not json").unwrap();

    let report = store.remove("a:1", &InUse::default(), false).unwrap();
    assert_eq!(
        report.deleted,
        vec![a],
        "only the record: layers are kept when in doubt"
    );
    assert!(layer_exists(&store, &simple_layer("a")));
    let err = store.list().unwrap_err();
    assert!(
        err.to_string().contains(&corrupt.display().to_string()),
        "{err}"
    );
}
