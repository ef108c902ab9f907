//! The controller's gRPC server, started in-process on a Unix socket and called through
//! the generated client.

use std::time::Duration;

use berth_controller::server::{ServeError, Services, UnixEndpoint};
use berth_proto::v1::Empty;
use berth_proto::v1::info_client::InfoClient;
use tokio::sync::oneshot;
use tonic::transport::Endpoint;

const DEADLINE: Duration = Duration::from_secs(10);

#[tokio::test]
async fn get_version_answers_with_this_build() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let path = dir.path().join("controller.sock");
    let endpoint = UnixEndpoint::bind(&path).expect("the socket binds");
    assert_eq!(endpoint.path(), path);

    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(endpoint.serve(Services::default(), async {
        // A dropped sender stops the server too.
        let _ = stopped.await;
    }));

    let channel = Endpoint::from_shared(format!("unix://{}", path.display()))
        .expect("a valid unix: URI")
        .connect_timeout(DEADLINE)
        .timeout(DEADLINE)
        .connect()
        .await
        .expect("the client connects");
    let mut client = InfoClient::new(channel);
    let version = client
        .get_version(Empty {})
        .await
        .expect("GetVersion succeeds")
        .into_inner();

    assert_eq!(version.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(version.api_version, "v1");
    assert_eq!(version, berth_proto::version_info());

    drop(client);
    stop.send(()).expect("the server is still running");
    tokio::time::timeout(DEADLINE, server)
        .await
        .expect("the server stops after the shutdown signal")
        .expect("the server task did not panic")
        .expect("the server stopped cleanly");
    assert!(!path.exists(), "the socket file is removed on shutdown");
}

#[test]
fn binding_over_an_existing_file_fails_and_leaves_it_alone() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let path = dir.path().join("controller.sock");
    std::fs::write(&path, b"not a socket").expect("write");

    let err = UnixEndpoint::bind(&path).expect_err("the path is taken");
    assert!(matches!(&err, ServeError::Listen { path: p, .. } if p == &path));
    assert_eq!(
        err.to_string(),
        format!("cannot listen on the Unix socket {}", path.display())
    );
    assert_eq!(std::fs::read(&path).expect("still there"), b"not a socket");
}

#[test]
fn an_endpoint_dropped_without_serving_removes_its_socket() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let path = dir.path().join("controller.sock");
    let endpoint = UnixEndpoint::bind(&path).expect("the socket binds");
    assert!(path.exists());
    drop(endpoint);
    assert!(!path.exists());
}

#[test]
fn the_socket_is_private_to_its_owner() {
    use std::os::unix::fs::PermissionsExt;

    let dir = tempfile::tempdir().expect("a temporary folder");
    let path = dir.path().join("controller.sock");
    let _endpoint = UnixEndpoint::bind(&path).expect("the socket binds");
    let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}
