//! Authentication: htpasswd Basic against docker-registry, the Bearer token flow against the
//! fake registry.

use std::process::Command;

use serde_json::json;

use super::super::super::ImageStore;
use super::super::super::tests::fixtures::{ImageSpec, LayerSpec};
use super::super::{RegistryConfig, RegistryError};
use super::fake::{Content, Fake};
use super::images::{import, small_layer};
use super::server::{Options, Registry, available};

fn config(user: Option<(&str, &str)>) -> RegistryConfig {
    RegistryConfig {
        insecure: true,
        username: user.map(|(u, _)| u.to_owned()),
        password: user.map(|(_, p)| p.to_owned()),
        ..RegistryConfig::default()
    }
}

fn registry_error(e: super::super::super::ImageError) -> RegistryError {
    match e {
        super::super::super::ImageError::Registry(e) => *e,
        other => panic!("expected a registry error, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn htpasswd_basic_auth_takes_the_right_password_only() {
    let test = "htpasswd_basic_auth_takes_the_right_password_only";
    if !available(test) {
        return;
    }
    // bcrypt, as docker-registry requires (apache2-utils).
    let Ok(out) = Command::new("htpasswd")
        .args(["-Bbn", "alice", "s3cret"])
        .output()
    else {
        eprintln!("\n*** SKIPPED: {test}: needs htpasswd (apt-get install apache2-utils) ***\n");
        return;
    };
    assert!(out.status.success(), "htpasswd failed");
    let reg = Registry::start(Options {
        htpasswd: Some(String::from_utf8(out.stdout).unwrap()),
        ..Options::default()
    });
    let tmp = tempfile::tempdir().unwrap();
    let spec = ImageSpec::new(&["test/p:v1"], vec![LayerSpec::gzip(small_layer("p1"))]);
    let built = spec.build();
    let src = ImageStore::open(&tmp.path().join("src")).unwrap();
    import(&src, tmp.path(), &[spec]);
    let target = format!("{}/private/app:v1", reg.host);
    let good = config(Some(("alice", "s3cret")));

    let err = registry_error(
        src.push("test/p:v1", &target, &config(None))
            .await
            .unwrap_err(),
    );
    let msg = err.to_string();
    assert!(
        matches!(err, RegistryError::Unauthorized { status: 401, .. })
            && msg.contains("no credentials")
            && msg.contains(&reg.host),
        "{msg}"
    );
    src.push("test/p:v1", &target, &good).await.unwrap();

    let dst = ImageStore::open(&tmp.path().join("dst")).unwrap();
    let bad = config(Some(("alice", "wrong")));
    let err = registry_error(dst.pull(&target, &bad, &|_| {}).await.unwrap_err());
    let msg = err.to_string();
    assert!(
        matches!(err, RegistryError::Unauthorized { status: 401, .. })
            && msg.contains("\"alice\"")
            && msg.contains("not accepted")
            && msg.contains("private/app"),
        "{msg}"
    );
    assert!(dst.list().unwrap().is_empty());
    let record = dst.pull(&target, &good, &|_| {}).await.unwrap();
    assert_eq!(record.id, built.id);
}

/// An image, an index naming it for this host and a foreign platform, served by the fake.
fn fake_content(credentials: Option<(&str, &str)>) -> (Content, ImageSpec) {
    let spec = ImageSpec::new(
        &["test/t:v1"],
        vec![
            LayerSpec::gzip(small_layer("t1")),
            LayerSpec::gzip(small_layer("t2")),
        ],
    );
    let b = spec.build();
    let mut content = Content {
        token_credentials: credentials.map(|(u, p)| (u.to_owned(), p.to_owned())),
        redirect_blobs: true,
        ..Content::default()
    };
    let oci_manifest = "application/vnd.oci.image.manifest.v1+json".to_owned();
    let other_arch = if crate::image::config::oci_arch() == "arm64" {
        "amd64"
    } else {
        "arm64"
    };
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": oci_manifest, "digest": format!("sha256:{}", "0".repeat(64)), "size": 10,
             "platform": {"os": "linux", "architecture": other_arch}},
            {"mediaType": oci_manifest, "digest": b.manifest_digest, "size": b.manifest.len(),
             "platform": {"os": "linux", "architecture": crate::image::config::oci_arch()}},
        ],
    }))
    .unwrap();
    content.manifests.insert(
        "multi".to_owned(),
        ("application/vnd.oci.image.index.v1+json".to_owned(), index),
    );
    content.manifests.insert(
        b.manifest_digest.clone(),
        (oci_manifest.clone(), b.manifest.clone()),
    );
    content
        .manifests
        .insert("v1".to_owned(), (oci_manifest, b.manifest.clone()));
    content.blobs.insert(b.id.clone(), b.config.clone());
    for l in &b.layers {
        content.blobs.insert(l.digest.clone(), l.blob.clone());
    }
    (content, spec)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_tokens_from_the_token_service_redirects_and_an_index() {
    let (content, spec) = fake_content(Some(("bob", "pw")));
    let built = spec.build();
    let fake = Fake::start(content);
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::open(&tmp.path().join("store")).unwrap();

    // The index leads to this host's platform; blobs come through a redirect.
    let reference = format!("{}/team/t:multi", fake.host);
    let record = store
        .pull(&reference, &config(Some(("bob", "pw"))), &|_| {})
        .await
        .unwrap();
    assert_eq!(record.id, built.id);
    assert_eq!(
        record.manifest.as_deref(),
        Some(built.manifest_digest.as_str())
    );
    assert_eq!(
        fake.tokens_issued(),
        1,
        "one token, cached for the pull's scope: {:?}",
        fake.requests()
    );
    for l in &built.layers {
        assert_eq!(fake.count("GET", &format!("/storage/{}", l.digest)), 1);
    }
    let unauthenticated = fake
        .requests()
        .iter()
        .filter(|r| r.starts_with("GET /v2/") && r.ends_with("auth=none"))
        .count();
    assert_eq!(
        unauthenticated, 1,
        "only the first request goes without the token"
    );

    // Wrong credentials: the token service refuses them, and the error says so.
    let store2 = ImageStore::open(&tmp.path().join("store2")).unwrap();
    let err = registry_error(
        store2
            .pull(&reference, &config(Some(("bob", "nope"))), &|_| {})
            .await
            .unwrap_err(),
    );
    let msg = err.to_string();
    assert!(
        matches!(err, RegistryError::Unauthorized { .. })
            && msg.contains("token service")
            && msg.contains("\"bob\"")
            && msg.contains("bad credentials"),
        "{msg}"
    );

    // A digest that does not match what comes back is refused.
    let wrong = format!("{}/team/t@sha256:{}", fake.host, "1".repeat(64));
    let err = store2
        .pull(&wrong, &config(Some(("bob", "pw"))), &|_| {})
        .await
        .unwrap_err();
    assert!(err.to_string().contains("MANIFEST_UNKNOWN"), "{err}");
    assert!(store2.list().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_without_this_platform_is_refused_by_name() {
    let (mut content, _) = fake_content(None);
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": format!("sha256:{}", "0".repeat(64)), "size": 10,
            "platform": {"os": "linux", "architecture": "s390x"}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": format!("sha256:{}", "1".repeat(64)), "size": 10,
            "platform": {"os": "windows", "architecture": "amd64"}}],
    }))
    .unwrap();
    content.manifests.insert(
        "foreign".to_owned(),
        (
            "application/vnd.docker.distribution.manifest.list.v2+json".to_owned(),
            index,
        ),
    );
    let fake = Fake::start(content);
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::open(&tmp.path().join("store")).unwrap();
    let err = store
        .pull(
            &format!("{}/team/t:foreign", fake.host),
            &config(None),
            &|_| {},
        )
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("linux/s390x, windows/amd64")
            && msg.contains("team/t")
            && msg.contains("foreign"),
        "{msg}"
    );
}
