use std::time::Duration;

use berth_proto::v1::{
    AttachDown, AttachUp, ImageList, NodeImageList, attach_down, attach_up, node_request,
};
use futures::StreamExt;

use super::{Relay, RelayError};

fn list() -> node_request::Op {
    node_request::Op::ImageList(NodeImageList {})
}

fn up(frames: Vec<AttachUp>) -> super::UpStream {
    Box::pin(futures::stream::iter(frames.into_iter().map(Ok)))
}

#[tokio::test]
async fn a_request_reaches_its_node_and_both_directions_are_connected() {
    let relay = Relay::default();
    let mut node = relay.connect("n1", "s1");
    assert!(relay.is_connected("n1"));
    let answering = {
        let relay = relay.clone();
        tokio::spawn(async move {
            let req = node.requests.recv().await.unwrap();
            assert!(matches!(req.op, Some(node_request::Op::ImageList(_))));
            let frames = vec![AttachUp {
                frame: Some(attach_up::Frame::Images(ImageList { images: vec![] })),
            }];
            let mut down = relay.attach("n1", &req.request_id, up(frames)).unwrap();
            down.recv().await
        })
    };
    let mut attached = relay.open("n1", list()).await.unwrap();
    let first = attached.up.next().await.unwrap().unwrap();
    assert!(matches!(first.frame, Some(attach_up::Frame::Images(_))));
    attached
        .down
        .send(AttachDown {
            frame: Some(attach_down::Frame::StdinEnd(true)),
        })
        .await
        .unwrap();
    let got = answering.await.unwrap().unwrap();
    assert_eq!(got.frame, Some(attach_down::Frame::StdinEnd(true)));
    assert_eq!(relay.pending(), 0);
}

#[tokio::test]
async fn a_node_without_a_stream_is_named_as_not_connected() {
    let relay = Relay::default();
    let e = relay.open("n9", list()).await.unwrap_err();
    assert_eq!(e, RelayError::NotConnected { node: "n9".into() });
    assert!(e.to_string().contains("n9"), "{e}");
}

#[tokio::test]
async fn a_node_that_never_attaches_times_out_and_leaves_nothing_pending() {
    let relay = Relay::with_open_timeout(Duration::from_millis(50));
    let _node = relay.connect("n1", "s1");
    let e = relay.open("n1", list()).await.unwrap_err();
    assert!(matches!(e, RelayError::Timeout { .. }), "{e}");
    assert_eq!(relay.pending(), 0);
}

#[tokio::test]
async fn another_node_cannot_attach_to_a_request() {
    let relay = Relay::default();
    let mut n1 = relay.connect("n1", "s1");
    let _n2 = relay.connect("n2", "s2");
    let opening = {
        let relay = relay.clone();
        tokio::spawn(async move { relay.open("n1", list()).await.map(|_| ()) })
    };
    let req = n1.requests.recv().await.unwrap();
    let e = relay.attach("n2", &req.request_id, up(vec![])).unwrap_err();
    assert!(matches!(e, RelayError::UnknownRequest { .. }));
    // The rightful node still can.
    let _down = relay.attach("n1", &req.request_id, up(vec![])).unwrap();
    opening.await.unwrap().unwrap();
    assert!(matches!(
        relay.attach("n1", &req.request_id, up(vec![])),
        Err(RelayError::UnknownRequest { .. })
    ));
}

#[tokio::test]
async fn a_caller_that_goes_away_leaves_nothing_pending() {
    let relay = Relay::default();
    let mut node = relay.connect("n1", "s1");
    let opening = {
        let relay = relay.clone();
        tokio::spawn(async move { relay.open("n1", list()).await.map(|_| ()) })
    };
    let req = node.requests.recv().await.unwrap();
    assert_eq!(relay.pending(), 1);
    opening.abort();
    let _ = opening.await;
    assert_eq!(relay.pending(), 0);
    assert!(relay.attach("n1", &req.request_id, up(vec![])).is_err());
}

#[tokio::test]
async fn an_old_session_does_not_disconnect_a_newer_one() {
    let relay = Relay::default();
    let old = relay.connect("n1", "s1");
    let _new = relay.connect("n1", "s2");
    drop(old);
    relay.disconnect("n1", "s1");
    assert!(relay.is_connected("n1"));
    relay.disconnect("n1", "s2");
    assert!(!relay.is_connected("n1"));
}
