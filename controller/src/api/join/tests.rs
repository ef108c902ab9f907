//! Unit tests of the join checks: request fields, tokens, controller ids.

use berth_proto::v1::{JoinClusterRequest, JoinRole};

use super::check::{check_controller_id, check_request, verify_token};
use super::error::JoinError;
use crate::pki::{ClusterCa, JoinToken, Role, SubjectName};

fn request(token: &JoinToken, role: JoinRole) -> JoinClusterRequest {
    JoinClusterRequest {
        token: token.to_string(),
        role: role.into(),
        csr_pem: "-----BEGIN CERTIFICATE REQUEST-----".into(),
        name: "node-1".into(),
        hostnames: vec!["node-1.example".into()],
        advertise: "10.0.0.5:7443".into(),
        controller_id: 0,
    }
}

fn token(role: Role) -> JoinToken {
    let ca = ClusterCa::generate("test").unwrap();
    JoinToken::generate(role, ca.fingerprint()).unwrap()
}

#[test]
fn a_good_request_names_its_hosts_once() {
    let t = token(Role::Agent);
    let mut r = request(&t, JoinRole::Agent);
    r.hostnames.push("10.0.0.5".into());
    let c = check_request(&r).unwrap();
    assert_eq!(c.role, Role::Agent);
    assert_eq!(
        c.names,
        vec![
            SubjectName::Dns("node-1.example".into()),
            SubjectName::Ip("10.0.0.5".parse().unwrap())
        ]
    );
    // An agent need not be reachable.
    r.advertise.clear();
    assert!(check_request(&r).is_ok());
}

#[test]
fn bad_requests_name_the_field() {
    let t = token(Role::Controller);
    type Change = Box<dyn Fn(&mut JoinClusterRequest)>;
    let cases: Vec<(Change, &str)> = vec![
        (Box::new(|r| r.role = 0), "role"),
        (Box::new(|r| r.token = "BERTH-2-x".into()), "version"),
        (Box::new(|r| r.token.clear()), "empty"),
        (Box::new(|r| r.csr_pem.clear()), "csr_pem"),
        (Box::new(|r| r.advertise.clear()), "advertise"),
        (Box::new(|r| r.advertise = "host".into()), "host:port"),
        (Box::new(|r| r.advertise = "h:0".into()), "port"),
        (
            Box::new(|r| r.hostnames = vec!["bad name".into()]),
            "hostnames",
        ),
        (Box::new(|r| r.hostnames = vec!["a".into(); 17]), "limit"),
        (Box::new(|r| r.controller_id = 0), "controller_id"),
    ];
    for (change, want) in cases {
        let mut r = request(&t, JoinRole::Controller);
        r.controller_id = 2;
        change(&mut r);
        let e = check_request(&r).unwrap_err();
        assert!(
            matches!(e, JoinError::Invalid { .. } | JoinError::MalformedToken(_)),
            "{want}: {e:?}"
        );
        assert!(e.to_string().contains(want), "{want}: {e}");
    }
    let mut r = request(&token(Role::Agent), JoinRole::Agent);
    r.name = "no/slashes".into();
    assert!(check_request(&r).unwrap_err().to_string().contains("name"));
}

#[test]
fn tokens_are_checked_against_the_stored_one_by_role_ca_and_secret() {
    let ca = ClusterCa::generate("test").unwrap();
    let agent = JoinToken::generate(Role::Agent, ca.fingerprint()).unwrap();
    let stored = agent.stored();
    verify_token(Some(&stored), &agent, Role::Agent).unwrap();

    let e = verify_token(None, &agent, Role::Agent).unwrap_err();
    assert!(matches!(e, JoinError::NoToken { role: Role::Agent }), "{e}");

    let controller = JoinToken::generate(Role::Controller, ca.fingerprint()).unwrap();
    let e = verify_token(Some(&stored), &controller, Role::Agent).unwrap_err();
    assert!(matches!(e, JoinError::WrongRole(_)), "{e}");
    assert!(e.to_string().contains("controller join token"), "{e}");

    let forged = JoinToken::generate(Role::Agent, ca.fingerprint()).unwrap();
    let e = verify_token(Some(&stored), &forged, Role::Agent).unwrap_err();
    assert!(matches!(e, JoinError::Unauthenticated(_)), "{e}");
    assert!(e.to_string().contains("secret is not valid"), "{e}");

    let other = ClusterCa::generate("test").unwrap();
    let elsewhere = JoinToken::generate(Role::Agent, other.fingerprint()).unwrap();
    let e = verify_token(Some(&stored), &elsewhere, Role::Agent).unwrap_err();
    assert!(matches!(e, JoinError::Unauthenticated(_)), "{e}");
    assert!(e.to_string().contains("pins CA fingerprint"), "{e}");

    let codes = [
        (
            JoinError::WrongRole(crate::pki::TokenError::BadSecretValue),
            tonic::Code::PermissionDenied,
        ),
        (
            JoinError::Unauthenticated(crate::pki::TokenError::BadSecretValue),
            tonic::Code::Unauthenticated,
        ),
        (
            JoinError::NoToken { role: Role::Agent },
            tonic::Code::Unavailable,
        ),
    ];
    for (e, code) in codes {
        assert_eq!(tonic::Status::from(e).code(), code);
    }
}

#[test]
fn a_controller_id_is_refused_only_at_another_address() {
    let members = [(1, "10.0.0.1:7443"), (2, "10.0.0.2:7443")];
    check_controller_id(3, "10.0.0.3:7443", members.into_iter()).unwrap();
    check_controller_id(2, "10.0.0.2:7443", members.into_iter()).unwrap();
    let e = check_controller_id(2, "10.0.0.9:7443", members.into_iter()).unwrap_err();
    assert!(matches!(e, JoinError::IdTaken { id: 2, .. }), "{e}");
    assert!(e.to_string().contains("10.0.0.2:7443"), "{e}");
}
