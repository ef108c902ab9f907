//! Tests of the cluster PKI. TLS tests run real handshakes over 127.0.0.1.

mod ca;
mod csr;
mod identity;
mod join;
mod tls;
mod token;

use std::net::{IpAddr, Ipv4Addr};

use super::{ClusterCa, DEFAULT_LEAF_VALIDITY, Identity, IssuedCert, Role, SubjectName};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn test_ca(name: &str) -> ClusterCa {
    ClusterCa::generate(name).expect("generate CA")
}

/// A certificate for `role`/`id`; controllers and agents are valid for 127.0.0.1.
fn issue(ca: &ClusterCa, role: Role, id: &str) -> IssuedCert {
    let names = match role {
        Role::Admin => vec![],
        Role::Controller | Role::Agent => vec![
            SubjectName::Ip(LOCALHOST),
            SubjectName::Dns("localhost".into()),
        ],
    };
    ca.issue(
        &Identity::new(role, id).expect("valid id"),
        &names,
        DEFAULT_LEAF_VALIDITY,
    )
    .expect("issue certificate")
}

/// The DER of the first certificate in a PEM string.
fn der_of(pem: &str) -> Vec<u8> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(pem.as_bytes())
        .expect("PEM certificate")
        .to_vec()
}
