//! `ScaleService` and `WatchEvents` on three in-process members over mutual TLS: a scale sent
//! to a follower is forwarded and makes a new version; a watcher on a follower sees the
//! service created, scaled and removed in order; filters; refusals.

use std::time::Duration;

use berth_proto::v1::{self, EventAction, EventKind};
use tonic::Code;

use super::control_tests::{
    admin, apply_request, assert_code, client, spec, start_member, wait_for_leader,
};
use crate::pki::{ClusterCa, Role};
use crate::test_support::initialize;

/// The next event of `stream`, within a few seconds.
async fn next(stream: &mut tonic::Streaming<v1::Event>) -> v1::Event {
    tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("an event in time")
        .expect("no stream error")
        .expect("the stream goes on")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scale_makes_a_new_version_and_watchers_see_every_change_in_order() {
    let ca = ClusterCa::generate("events").unwrap();
    let mut members = Vec::new();
    for id in 1..=3 {
        members.push(start_member(&ca, id).await);
    }
    initialize(&members).await;
    let leader = wait_for_leader(&members).await;
    let follower = members.iter().find(|m| m.id != leader).unwrap();
    let mut c = admin(&ca, follower);

    // Watchers on a follower: everything, and only the tasks of "web".
    let mut all = c
        .watch_events(v1::WatchEventsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let mut web_tasks = c
        .watch_events(v1::WatchEventsRequest {
            kinds: vec![EventKind::Task.into()],
            service: "web".into(),
        })
        .await
        .unwrap()
        .into_inner();

    let created = c
        .apply_service(apply_request(spec("web", "nginx:1"), Some(0)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.outcome, "created");

    let scaled = c
        .scale_service(v1::ScaleServiceRequest {
            name: "web".into(),
            replicas: 5,
            expected_version: Some(1),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(scaled.outcome, "updated");
    let service = scaled.service.unwrap();
    assert_eq!(service.version, 2);
    assert_eq!(service.spec.as_ref().unwrap().replicas, 5);
    assert_eq!(
        service.spec.unwrap().image,
        "nginx:1",
        "only replicas change"
    );

    // A scale to the same count changes nothing; a stale version, a global service, an
    // unknown service and too many replicas are refused.
    let same = c
        .scale_service(v1::ScaleServiceRequest {
            name: "web".into(),
            replicas: 5,
            expected_version: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(same.outcome, "unchanged");
    let stale = c
        .scale_service(v1::ScaleServiceRequest {
            name: "web".into(),
            replicas: 3,
            expected_version: Some(1),
        })
        .await;
    assert_code(stale, Code::FailedPrecondition, &["version 2, not 1"]);
    let global = v1::ServiceSpec {
        global: true,
        replicas: 0,
        ..spec("agent", "agent:1")
    };
    c.apply_service(apply_request(global, None)).await.unwrap();
    let refused = c
        .scale_service(v1::ScaleServiceRequest {
            name: "agent".into(),
            replicas: 2,
            expected_version: None,
        })
        .await;
    assert_code(
        refused,
        Code::InvalidArgument,
        &["global", "cannot be scaled"],
    );
    let unknown = c
        .scale_service(v1::ScaleServiceRequest {
            name: "nope".into(),
            replicas: 2,
            expected_version: None,
        })
        .await;
    assert_code(unknown, Code::NotFound, &["nope"]);
    let huge = c
        .scale_service(v1::ScaleServiceRequest {
            name: "web".into(),
            replicas: 1_000_000,
            expected_version: None,
        })
        .await;
    assert_code(huge, Code::InvalidArgument, &["replicas"]);

    c.remove_service(v1::RemoveServiceRequest {
        name: "web".into(),
        expected_version: Some(2),
    })
    .await
    .unwrap();

    // The full stream: web created (v1), web updated (v2, 5 replicas), agent created, web
    // removed — in log order.
    let e = next(&mut all).await;
    assert_eq!(
        (e.kind(), e.action(), e.name.as_str()),
        (EventKind::Service, EventAction::Created, "web")
    );
    let Some(v1::event::Object::Service(s)) = &e.object else {
        panic!("{e:?}")
    };
    assert_eq!(s.version, 1);
    let first_index = e.index;
    let e = next(&mut all).await;
    assert_eq!(
        (e.kind(), e.action(), e.name.as_str()),
        (EventKind::Service, EventAction::Updated, "web")
    );
    let Some(v1::event::Object::Service(s)) = &e.object else {
        panic!("{e:?}")
    };
    assert_eq!((s.version, s.spec.as_ref().unwrap().replicas), (2, 5));
    assert!(e.index > first_index);
    let e = next(&mut all).await;
    assert_eq!(
        (e.action(), e.name.as_str()),
        (EventAction::Created, "agent")
    );
    let e = next(&mut all).await;
    assert_eq!((e.action(), e.name.as_str()), (EventAction::Removed, "web"));
    assert!(e.object.is_none());

    // A task of web written straight into the store reaches the filtered watcher; a task of
    // another service does not.
    let leader_member = members.iter().find(|m| m.id == leader).unwrap();
    for (id, service) in [("t-other", "agent"), ("t-web", "web")] {
        let task = crate::state::Task {
            id: id.into(),
            service: service.into(),
            slot: 1,
            spec_version: 1,
            node: None,
            desired: crate::state::DesiredState::Running,
            observed: crate::state::ObservedState::Pending,
            address: None,
            exit_code: None,
            reason: None,
            created_at: 0,
            updated_at: 0,
            health: None,
        };
        let key = crate::state::keys::task(id);
        let op = crate::raft::Op::Put {
            value: serde_json::to_vec(&task).unwrap(),
            key,
            expect: crate::raft::Expect::Absent,
        };
        crate::api::store::write(&leader_member.raft, op)
            .await
            .unwrap();
    }
    let e = next(&mut web_tasks).await;
    assert_eq!(
        (e.kind(), e.action(), e.name.as_str()),
        (EventKind::Task, EventAction::Created, "t-web")
    );

    // Agents may not watch; an unspecified kind is refused.
    let mut agent = client(&ca, Role::Agent, "n1", follower.addr);
    let refused = agent.watch_events(v1::WatchEventsRequest::default()).await;
    assert_code(refused, Code::PermissionDenied, &[]);
    let bad = c
        .watch_events(v1::WatchEventsRequest {
            kinds: vec![0],
            service: String::new(),
        })
        .await;
    assert_code(bad, Code::InvalidArgument, &["not an event kind"]);

    for m in &mut members {
        m.stop().await;
    }
}
