//! TLS: a registry with a certificate from a custom CA is reached with that CA and refused
//! without it; plain HTTP only for a registry marked insecure.

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};

use super::super::super::ImageStore;
use super::super::super::tests::fixtures::{ImageSpec, LayerSpec};
use super::super::{RegistryConfig, RegistryError};
use super::images::{import, small_layer};
use super::server::{Options, Registry, available};

/// A CA (PEM) and a certificate and key for 127.0.0.1 it signed.
fn ca_and_server_cert() -> (String, String, String) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.subject_alt_names = vec![SanType::IpAddress("127.0.0.1".parse().unwrap())];
    let cert = params.signed_by(&key, &issuer).unwrap();
    (ca.pem(), cert.pem(), key.serialize_pem())
}

fn tls_error(e: super::super::super::ImageError) -> String {
    let msg = e.to_string();
    match e {
        super::super::super::ImageError::Registry(e) if matches!(*e, RegistryError::Tls { .. }) => {
            msg
        }
        _ => panic!("expected a TLS error, got {msg}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_ca_is_trusted_only_when_given() {
    if !available("a_custom_ca_is_trusted_only_when_given") {
        return;
    }
    let (ca, cert, key) = ca_and_server_cert();
    let reg = Registry::start(Options {
        tls: Some((cert, key)),
        ..Options::default()
    });
    let tmp = tempfile::tempdir().unwrap();
    let spec = ImageSpec::new(&["test/s:v1"], vec![LayerSpec::gzip(small_layer("s1"))]);
    let built = spec.build();
    let src = ImageStore::open(&tmp.path().join("src")).unwrap();
    import(&src, tmp.path(), &[spec]);
    let target = format!("{}/secure/app:v1", reg.host);
    let with_ca = RegistryConfig {
        ca_pem: Some(ca),
        ..RegistryConfig::default()
    };
    src.push("test/s:v1", &target, &with_ca).await.unwrap();

    let dst = ImageStore::open(&tmp.path().join("dst")).unwrap();
    let msg = tls_error(
        dst.pull(&target, &RegistryConfig::default(), &|_| {})
            .await
            .unwrap_err(),
    );
    assert!(
        msg.contains(&reg.host) && msg.to_lowercase().contains("certificate"),
        "{msg}"
    );
    let record = dst.pull(&target, &with_ca, &|_| {}).await.unwrap();
    assert_eq!(record.id, built.id);

    let bad = RegistryConfig {
        ca_pem: Some("not a certificate".to_owned()),
        ..RegistryConfig::default()
    };
    let err = dst.pull(&target, &bad, &|_| {}).await.unwrap_err();
    assert!(err.to_string().contains("no PEM certificate"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_only_for_a_registry_marked_insecure() {
    if !available("plain_http_only_for_a_registry_marked_insecure") {
        return;
    }
    let reg = Registry::start(Options::default());
    let tmp = tempfile::tempdir().unwrap();
    let spec = ImageSpec::new(&["test/h:v1"], vec![LayerSpec::gzip(small_layer("h1"))]);
    let src = ImageStore::open(&tmp.path().join("src")).unwrap();
    import(&src, tmp.path(), &[spec]);
    let target = format!("{}/plain/app:v1", reg.host);
    let msg = tls_error(
        src.push("test/h:v1", &target, &RegistryConfig::default())
            .await
            .unwrap_err(),
    );
    assert!(
        msg.contains("insecure"),
        "the error says how to allow HTTP: {msg}"
    );
    let insecure = RegistryConfig {
        insecure: true,
        ..RegistryConfig::default()
    };
    src.push("test/h:v1", &target, &insecure).await.unwrap();
    let msg = tls_error(
        src.pull(&target, &RegistryConfig::default(), &|_| {})
            .await
            .unwrap_err(),
    );
    assert!(msg.contains("insecure"), "{msg}");
}
