//! Certificates issued for a certificate signing request: the key stays with the node.

use std::time::Duration;

use rcgen::{CertificateParams, KeyPair, PKCS_ECDSA_P384_SHA384, PKCS_ED25519};

use super::super::{Identity, PkiError, Role, SubjectName, generate_csr, peer_identity};
use super::{LOCALHOST, der_of, test_ca};

fn agent() -> Identity {
    Identity::new(Role::Agent, "n1").unwrap()
}

#[test]
fn a_csr_gets_a_certificate_for_its_own_key_and_the_cas_identity() {
    let ca = test_ca("prod");
    let (csr, key_pem) = generate_csr().unwrap();
    let cert = ca
        .issue_for_csr(
            &agent(),
            &[SubjectName::Ip(LOCALHOST)],
            Duration::from_secs(3600),
            &csr,
        )
        .unwrap();
    let der = der_of(&cert);
    assert_eq!(peer_identity(&der).unwrap(), agent());
    let (_, x509) = x509_parser::parse_x509_certificate(&der).unwrap();
    let key = KeyPair::from_pem(&key_pem).unwrap();
    assert_eq!(
        x509.public_key().subject_public_key.data.as_ref(),
        key.public_key_raw()
    );
    assert!(!x509.is_ca());
}

#[test]
fn bad_csrs_are_refused_with_the_reason() {
    let ca = test_ca("prod");
    let issue = |pem: &str| {
        ca.issue_for_csr(&agent(), &[], Duration::from_secs(60), pem)
            .unwrap_err()
    };
    let reason = |e: PkiError| match e {
        PkiError::InvalidCsr { reason } => reason,
        other => panic!("not a CSR error: {other:?}"),
    };
    assert!(reason(issue("")).contains("empty"));
    assert!(reason(issue("hello")).contains("PKCS#10"));
    assert!(reason(issue(&"x".repeat(20_000))).contains("limit"));
    // A certificate is not a CSR.
    assert!(reason(issue(ca.cert_pem())).contains("PKCS#10"));
    // A tampered request does not verify.
    let (csr, _) = generate_csr().unwrap();
    let mut lines: Vec<String> = csr.lines().map(str::to_owned).collect();
    let body = &mut lines[2];
    let flipped = if body.starts_with('A') { "B" } else { "A" };
    body.replace_range(0..1, flipped);
    let tampered = lines.join("\n");
    let e = reason(issue(&tampered));
    assert!(e.contains("signature") || e.contains("PKCS#10"), "{e}");
    // Other key types are refused.
    for alg in [&PKCS_ED25519, &PKCS_ECDSA_P384_SHA384] {
        let key = KeyPair::generate_for(alg).unwrap();
        let csr = CertificateParams::default()
            .serialize_request(&key)
            .unwrap()
            .pem()
            .unwrap();
        assert!(reason(issue(&csr)).contains("P-256"), "{alg:?}");
    }
}
