use std::time::{Duration, SystemTime, UNIX_EPOCH};

use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

use super::super::{CA_VALIDITY, ClusterCa, Identity, PkiError, Role, SubjectName, peer_identity};
use super::{LOCALHOST, der_of, issue, test_ca};

fn parse(der: &[u8]) -> X509Certificate<'_> {
    x509_parser::parse_x509_certificate(der).unwrap().1
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[test]
fn ca_certificate_layout() {
    let ca = test_ca("prod");
    let cert = parse(ca.cert_der());
    let bc = cert.basic_constraints().unwrap().unwrap().value;
    assert!(bc.ca);
    assert_eq!(bc.path_len_constraint, Some(0));
    let ku = cert.key_usage().unwrap().unwrap().value;
    assert!(ku.key_cert_sign() && ku.crl_sign());
    assert_eq!(
        cert.subject().to_string(),
        "O=berth, OU=cluster CA, CN=prod"
    );
    assert_eq!(cert.subject().as_raw(), cert.issuer().as_raw());
    let validity = cert.validity();
    let lifetime = validity.not_after.timestamp() - now();
    assert!(
        (lifetime - CA_VALIDITY.as_secs() as i64).abs() < 60,
        "{lifetime}"
    );
    assert!(validity.not_before.timestamp() <= now());
    assert_eq!(ca.fingerprint().to_string().len(), 64);
}

#[test]
fn controller_certificate_layout() {
    let ca = test_ca("prod");
    let issued = ca
        .issue(
            &Identity::new(Role::Controller, "ctl-1").unwrap(),
            &[
                SubjectName::parse("ctl-1.berth.internal"),
                SubjectName::parse("10.0.0.1"),
            ],
            Duration::from_secs(3600),
        )
        .unwrap();
    let der = der_of(&issued.cert_pem);
    let cert = parse(&der);
    assert_eq!(
        cert.subject().to_string(),
        "O=berth, OU=controller, CN=ctl-1"
    );
    assert_eq!(
        cert.issuer().as_raw(),
        parse(ca.cert_der()).subject().as_raw()
    );
    assert!(!cert.is_ca());
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && eku.client_auth);
    let san = cert.subject_alternative_name().unwrap().unwrap().value;
    let names: Vec<String> = san
        .general_names
        .iter()
        .map(|name| match name {
            GeneralName::URI(u) => format!("uri:{u}"),
            GeneralName::DNSName(d) => format!("dns:{d}"),
            GeneralName::IPAddress(ip) => format!("ip:{ip:?}"),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        names,
        [
            "uri:berth://controller/ctl-1",
            "dns:ctl-1.berth.internal",
            "ip:[10, 0, 0, 1]"
        ]
    );
    let lifetime = cert.validity().not_after.timestamp() - now();
    assert!((lifetime - 3600).abs() < 60, "{lifetime}");
    assert_eq!(
        peer_identity(&der).unwrap(),
        Identity::new(Role::Controller, "ctl-1").unwrap()
    );
    assert!(issued.key_pem.contains("PRIVATE KEY"));
    assert!(!format!("{issued:?}").contains("PRIVATE KEY"));
}

#[test]
fn admin_certificates_are_client_only() {
    let ca = test_ca("prod");
    let cert_der = der_of(&issue(&ca, Role::Admin, "alice").cert_pem);
    let cert = parse(&cert_der);
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.client_auth && !eku.server_auth);
    let err = ca
        .issue(
            &Identity::new(Role::Admin, "alice").unwrap(),
            &[SubjectName::Ip(LOCALHOST)],
            Duration::from_secs(60),
        )
        .unwrap_err();
    assert!(matches!(err, PkiError::AdminWithNames), "{err:?}");
}

#[test]
fn leaf_validity_never_outlives_the_ca() {
    let ca = test_ca("prod");
    let issued = ca
        .issue(
            &Identity::new(Role::Agent, "n1").unwrap(),
            &[],
            CA_VALIDITY * 3,
        )
        .unwrap();
    let der = der_of(&issued.cert_pem);
    assert_eq!(
        parse(&der).validity().not_after,
        parse(ca.cert_der()).validity().not_after
    );
}

#[test]
fn bad_names_and_cluster_names_are_refused() {
    let ca = test_ca("prod");
    let agent = Identity::new(Role::Agent, "n1").unwrap();
    for bad in ["", "a..example", "sp ace.example", "é.example"] {
        let err = ca
            .issue(
                &agent,
                &[SubjectName::Dns(bad.into())],
                Duration::from_secs(60),
            )
            .unwrap_err();
        assert!(err.to_string().contains("DNS name"), "{bad}: {err}");
    }
    assert!(ClusterCa::generate("").is_err());
    assert!(ClusterCa::generate(&"x".repeat(65)).is_err());
    assert!(ClusterCa::generate("a\nb").is_err());
}

#[test]
fn pem_round_trip_keeps_the_ca() {
    let ca = test_ca("prod");
    let (cert_pem, key_pem) = ca.to_pem();
    let again = ClusterCa::from_pem(&cert_pem, &key_pem).unwrap();
    assert_eq!(again.fingerprint(), ca.fingerprint());
    assert_eq!(again.cert_der(), ca.cert_der());
    // Certificates from the reloaded CA name it exactly as issuer and key identifier.
    let reloaded = parse(ca.cert_der());
    let leaf_der = der_of(&issue(&again, Role::Agent, "n1").cert_pem);
    let leaf = parse(&leaf_der);
    assert_eq!(leaf.issuer().as_raw(), reloaded.subject().as_raw());
    assert!(!format!("{again:?}").contains("PRIVATE"));
}

#[test]
fn from_pem_refuses_bad_input() {
    let ca = test_ca("prod");
    let other = test_ca("other");
    let (cert_pem, key_pem) = ca.to_pem();
    let (_, other_key) = other.to_pem();

    let err = ClusterCa::from_pem(&cert_pem, &other_key).unwrap_err();
    assert!(err.to_string().contains("does not match"), "{err}");

    let err = ClusterCa::from_pem("garbage", &key_pem).unwrap_err();
    assert!(err.to_string().contains("CA certificate PEM"), "{err}");

    let err = ClusterCa::from_pem(&cert_pem, "garbage").unwrap_err();
    assert!(err.to_string().contains("CA private key"), "{err}");

    let leaf = issue(&ca, Role::Agent, "n1");
    let err = ClusterCa::from_pem(&leaf.cert_pem, &leaf.key_pem).unwrap_err();
    assert!(err.to_string().contains("not a CA"), "{err}");
}
