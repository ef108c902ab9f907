//! `ApplyServices`: several services in one call through a follower, each answered on its
//! own; a malformed call refused as a whole.

use berth_proto::v1;
use tonic::Code;

use super::control_tests::{admin, apply_request, spec, start_cluster};
use crate::pki::ClusterCa;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn several_services_in_one_call_each_with_its_own_answer() {
    let ca = ClusterCa::generate("test").unwrap();
    let (members, leader) = start_cluster(&ca).await;
    let follower = members.iter().find(|m| m.id != leader).unwrap();
    let mut client = admin(&ca, follower);

    let request = v1::ApplyServicesRequest {
        services: vec![
            apply_request(spec("web", "nginx:1"), None),
            apply_request(spec("Bad_Name", "nginx"), None),
            apply_request(spec("api", "api:1"), Some(7)),
            apply_request(spec("db", "redis:7"), None),
        ],
    };
    let answer = client
        .apply_services(request.clone())
        .await
        .unwrap()
        .into_inner();
    let outcome = |i: usize| answer.results[i].result.clone().unwrap();
    assert_eq!(answer.results.len(), 4);
    match outcome(0) {
        v1::apply_service_result::Result::Applied(a) => assert_eq!(a.outcome, "created"),
        other => panic!("{other:?}"),
    }
    match outcome(1) {
        v1::apply_service_result::Result::Failure(f) => {
            assert_eq!(f.code, Code::InvalidArgument as i32);
            assert!(f.message.contains("Bad_Name"), "{}", f.message);
        }
        other => panic!("{other:?}"),
    }
    match outcome(2) {
        v1::apply_service_result::Result::Failure(f) => {
            assert_eq!(f.code, Code::FailedPrecondition as i32, "{}", f.message);
        }
        other => panic!("{other:?}"),
    }
    match outcome(3) {
        v1::apply_service_result::Result::Applied(a) => {
            assert_eq!(a.service.unwrap().spec.unwrap().image, "redis:7");
        }
        other => panic!("{other:?}"),
    }
    // The same call again: the applied ones are unchanged.
    let again = client.apply_services(request).await.unwrap().into_inner();
    match again.results[0].result.clone().unwrap() {
        v1::apply_service_result::Result::Applied(a) => assert_eq!(a.outcome, "unchanged"),
        other => panic!("{other:?}"),
    }
    let listed = client
        .list_services(v1::ListServicesRequest { stale: false })
        .await
        .unwrap()
        .into_inner();
    let names: Vec<&str> = listed
        .services
        .iter()
        .map(|s| s.spec.as_ref().unwrap().name.as_str())
        .collect();
    assert_eq!(names, ["db", "web"]);

    // A name twice, or too many services: refused as a whole, nothing applied.
    let twice = v1::ApplyServicesRequest {
        services: vec![
            apply_request(spec("x", "a:1"), None),
            apply_request(spec("x", "a:2"), None),
        ],
    };
    let status = client.apply_services(twice).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("\"x\" is applied twice"),
        "{status:?}"
    );
    let many = v1::ApplyServicesRequest {
        services: (0..=crate::api::control::MAX_BATCH)
            .map(|i| apply_request(spec(&format!("s{i}"), "a:1"), None))
            .collect(),
    };
    let status = client.apply_services(many).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
}
