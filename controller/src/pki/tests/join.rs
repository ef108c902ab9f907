//! The join handshake: a node with a token but no certificate.

use super::super::{
    JoinToken, Role, client_config, join_client_config, join_server_config, server_config,
    verify_ca_fingerprint,
};
use super::tls::{handshake, id};
use super::{issue, test_ca};

#[tokio::test]
async fn joining_node_trusts_the_pinned_ca() {
    let ca = test_ca("prod");
    let server = issue(&ca, Role::Controller, "ctl-1");
    let token = JoinToken::generate(Role::Agent, ca.fingerprint()).unwrap();
    let out = handshake(
        join_server_config(ca.cert_pem(), &server).unwrap(),
        join_client_config(&token).unwrap(),
    )
    .await;
    assert_eq!(
        out.server.unwrap(),
        None,
        "the joining node has no certificate"
    );
    assert_eq!(out.client.unwrap(), id(Role::Controller, "ctl-1"));
    // The joining node keeps the CA from the server's chain.
    let ca_der = out.server_chain.last().unwrap();
    verify_ca_fingerprint(&token, ca_der).unwrap();
    assert_eq!(ca_der, &ca.cert_der().to_vec());
}

#[tokio::test]
async fn joining_node_refuses_a_server_of_another_ca() {
    let ca = test_ca("prod");
    let impostor_ca = test_ca("prod");
    let impostor = issue(&impostor_ca, Role::Controller, "ctl-1");
    let token = JoinToken::generate(Role::Agent, ca.fingerprint()).unwrap();
    let out = handshake(
        join_server_config(impostor_ca.cert_pem(), &impostor).unwrap(),
        join_client_config(&token).unwrap(),
    )
    .await;
    let err = out.client.unwrap_err();
    assert!(err.contains("CaMismatch"), "{err}");
    assert!(out.server.is_err());
}

#[tokio::test]
async fn server_must_chain_to_the_pinned_ca() {
    // A server presenting the real CA in its chain, but a leaf from another CA.
    let ca = test_ca("prod");
    let other = test_ca("other");
    let leaf = issue(&other, Role::Controller, "ctl-1");
    let token = JoinToken::generate(Role::Agent, ca.fingerprint()).unwrap();
    let out = handshake(
        join_server_config(ca.cert_pem(), &leaf).unwrap(),
        join_client_config(&token).unwrap(),
    )
    .await;
    let err = out.client.unwrap_err();
    assert!(err.contains("UnknownIssuer"), "{err}");
}

#[tokio::test]
async fn join_listener_still_checks_client_certificates() {
    let ca = test_ca("prod");
    let server = issue(&ca, Role::Controller, "ctl-1");
    let intruder = issue(&test_ca("other"), Role::Agent, "node-1");
    let out = handshake(
        join_server_config(ca.cert_pem(), &server).unwrap(),
        client_config(ca.cert_pem(), &intruder).unwrap(),
    )
    .await;
    assert!(out.server.unwrap_err().contains("UnknownIssuer"));
}

#[tokio::test]
async fn main_listener_refuses_a_joining_node() {
    let ca = test_ca("prod");
    let server = issue(&ca, Role::Controller, "ctl-1");
    let token = JoinToken::generate(Role::Agent, ca.fingerprint()).unwrap();
    let out = handshake(
        server_config(ca.cert_pem(), &server).unwrap(),
        join_client_config(&token).unwrap(),
    )
    .await;
    let err = out.server.unwrap_err();
    assert!(err.contains("peer sent no certificates"), "{err}");
    assert!(out.client.is_err());
}
