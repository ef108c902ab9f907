use rcgen::{CertificateParams, KeyPair, SanType};

use super::super::{Identity, PkiError, Role, authorize, peer_identity};

/// A self-signed certificate carrying the given SAN URIs.
fn cert_with_uris(uris: &[&str]) -> Vec<u8> {
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    for uri in uris {
        params
            .subject_alt_names
            .push(SanType::URI((*uri).try_into().unwrap()));
    }
    let key = KeyPair::generate().unwrap();
    params.self_signed(&key).unwrap().der().to_vec()
}

#[test]
fn identity_uri_round_trip() {
    let id = Identity::new(Role::Agent, "node-7.rack_2").unwrap();
    assert_eq!(id.uri(), "berth://agent/node-7.rack_2");
    assert_eq!(Identity::from_uri(&id.uri()).unwrap(), id);
}

#[test]
fn bad_ids_are_refused() {
    for (id, reason) in [
        ("", "empty"),
        ("has space", "only ASCII"),
        ("a/b", "only ASCII"),
        ("é", "only ASCII"),
        (&"x".repeat(129), "longer than 128"),
    ] {
        let err = Identity::new(Role::Agent, id).unwrap_err();
        assert!(matches!(err, PkiError::InvalidId { .. }), "{id}: {err:?}");
        assert!(err.to_string().contains(reason), "{id}: {err}");
    }
}

#[test]
fn peer_identity_reads_the_san_uri() {
    let der = cert_with_uris(&["spiffe://other/thing", "berth://controller/ctl-1"]);
    let id = peer_identity(&der).unwrap();
    assert_eq!(id, Identity::new(Role::Controller, "ctl-1").unwrap());
}

#[test]
fn peer_identity_errors() {
    let err = peer_identity(&cert_with_uris(&[])).unwrap_err();
    assert!(matches!(err, PkiError::NoIdentity { found: 0 }), "{err:?}");

    let two = cert_with_uris(&["berth://agent/a", "berth://agent/b"]);
    let err = peer_identity(&two).unwrap_err();
    assert!(matches!(err, PkiError::NoIdentity { found: 2 }), "{err:?}");

    let err = peer_identity(&cert_with_uris(&["berth://root/x"])).unwrap_err();
    assert!(err.to_string().contains("unknown role `root`"), "{err}");

    let err = peer_identity(&cert_with_uris(&["berth://agent"])).unwrap_err();
    assert!(matches!(err, PkiError::BadIdentityUri { .. }), "{err:?}");

    let err = peer_identity(&cert_with_uris(&["berth://agent/a/b"])).unwrap_err();
    assert!(matches!(err, PkiError::InvalidId { .. }), "{err:?}");

    let err = peer_identity(b"not a certificate").unwrap_err();
    assert!(matches!(err, PkiError::InvalidInput { .. }), "{err:?}");
}

#[test]
fn authorize_checks_the_role() {
    let agent = Identity::new(Role::Agent, "n1").unwrap();
    authorize(&agent, &[Role::Controller, Role::Agent]).unwrap();
    let err = authorize(&agent, &[Role::Admin, Role::Controller]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "agent `n1` is not allowed here (allowed: admin, controller)"
    );
    let err = authorize(&agent, &[]).unwrap_err();
    assert!(err.to_string().contains("allowed: nobody"), "{err}");
}

#[test]
fn role_serde_and_parse() {
    assert_eq!(
        serde_json::to_string(&Role::Controller).unwrap(),
        "\"controller\""
    );
    assert_eq!("admin".parse::<Role>().unwrap(), Role::Admin);
    assert!("Agent".parse::<Role>().is_err());
}
